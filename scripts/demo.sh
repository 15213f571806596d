#!/usr/bin/env bash
# `make demo`: set up, crawl the local documentation corpus into the embedded store, and
# serve the search page.
#
#   scripts/demo.sh                       # Debian FAQ in 10 languages, then http://127.0.0.1:8000/
#   CITED_DEMO_URLS="http://h/a http://h/b" scripts/demo.sh   # crawl these URLs instead
#
# The corpus (/usr/share, installed by scripts/system-deps.sh) is served on a fixed
# loopback port (CITED_DEMO_CORPUS_PORT, default 8765) so the links stored in the index
# keep working on the next run. The crawl is skipped when the store already holds these
# seeds (CITED_DEMO_RECRAWL=1 crawls again; the crawler only refetches what changed).
# CITED_DEMO_SERVE=0 stops after the crawl (used by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "demo.sh: $*" >&2; }

# CITED_DEMO_SETUP=0 skips the setup and uses the `cited` and `python` already on PATH.
if [[ "${CITED_DEMO_SETUP:-1}" != "0" ]]; then
  scripts/system-deps.sh
  VENV="$(scripts/venv.sh)"
  export PATH="$VENV/bin:$PATH"
fi
# This checkout's code, whichever `cited` is installed.
cited() { python -m search.cli "$@"; }
export CITED_STORE="${CITED_STORE:-local}"
# The corpus is on loopback, which the crawler refuses unless told otherwise.
export CITED_ALLOW_PRIVATE=1
DATA_DIR="${CITED_DATA_DIR:-${XDG_DATA_HOME:-$HOME/.local/share}/cited}"
export CITED_DATA_DIR="$DATA_DIR"
mkdir -p "$DATA_DIR"

CORPUS_ROOT="${CITED_CORPUS_ROOT:-/usr/share}"
CORPUS_PORT="${CITED_DEMO_CORPUS_PORT:-8765}"
CORPUS="http://127.0.0.1:$CORPUS_PORT"

corpus_pid=""
cleanup() { if [[ -n "$corpus_pid" ]]; then kill "$corpus_pid" 2>/dev/null || true; wait "$corpus_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM

if curl -fsS -o /dev/null "$CORPUS/doc/debian/FAQ/index.en.html" 2>/dev/null; then
  log "corpus already served at $CORPUS"
else
  log "serving $CORPUS_ROOT at $CORPUS"
  python -m http.server --bind 127.0.0.1 --directory "$CORPUS_ROOT" "$CORPUS_PORT" >/dev/null 2>&1 &
  corpus_pid=$!
  for _ in $(seq 50); do
    curl -fsS -o /dev/null "$CORPUS/doc/debian/FAQ/index.en.html" 2>/dev/null && break
    kill -0 "$corpus_pid" 2>/dev/null || { log "the corpus server did not start (port $CORPUS_PORT busy?)"; exit 1; }
    sleep 0.2
  done
fi

if [[ -n "${CITED_DEMO_URLS:-}" ]]; then
  read -r -a URLS <<<"$CITED_DEMO_URLS"
else
  URLS=("$CORPUS/doc/debian/FAQ/index.en.html")
  for lang in de fr it ja ko nl pt ru zh-cn; do
    URLS+=("$CORPUS/doc/debian/FAQ/$lang/index.$lang.html")
  done
fi

stamp="$DATA_DIR/demo-seeds.txt"
passages="$(cited status --json 2>/dev/null | python -c 'import json,sys; print(json.load(sys.stdin)["passages"])' 2>/dev/null || echo 0)"
if [[ "${CITED_DEMO_RECRAWL:-0}" != "1" && "$passages" -gt 0 && -f "$stamp" && "$(cat "$stamp")" == "${URLS[*]}" ]]; then
  log "the store in $DATA_DIR already holds these seeds ($passages passages); skipping the crawl"
else
  log "crawling ${#URLS[@]} seed URL(s) into $DATA_DIR"
  # The corpus server is ours and on loopback: no politeness delay is needed.
  cited crawl "${URLS[@]}" --scope prefix --rate "${CITED_DEMO_RATE:-0}" --max-pages "${CITED_DEMO_MAX_PAGES:-2000}" --json
  echo "${URLS[*]}" >"$stamp"
fi

if [[ "${CITED_DEMO_SERVE:-1}" == "0" ]]; then
  exit 0
fi
log "open http://${CITED_HOST:-127.0.0.1}:${CITED_PORT:-8000}/ (Ctrl-C stops)"
cited serve
