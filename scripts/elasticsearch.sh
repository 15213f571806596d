#!/usr/bin/env bash
# Run a local single-node Elasticsearch for tests and local use, from the minimal
# distribution on Maven Central (org.elasticsearch.distribution.integ-test-zip).
#
#   scripts/elasticsearch.sh start    # prints CITED_ES_URL=http://127.0.0.1:PORT
#   scripts/elasticsearch.sh stop
#   scripts/elasticsearch.sh status
#
# The zip is cached outside the clone (CITED_CACHE, default ~/.cache/cited) and its
# SHA-512 is checked against the value pinned below. The node listens on a free loopback
# port, with a small heap and security off; its data lives in a run folder that `stop`
# removes (CITED_ES_KEEP=1 keeps it). Exit status is non-zero whenever the node is not up.
set -euo pipefail

ES_VERSION="${CITED_ES_VERSION:-8.19.21}"
# sha512 of elasticsearch-8.19.21.zip, as published next to it on Maven Central.
ES_SHA512_8_19_21="cf6b0a93860d329937ae7f913ec5073b0c726c77639764b93fc83a304aa1dd9d4defcfa2849948eea3b0b47c2065f994908603939fc2a4774c9c4d868c5ec1dd"
ES_HEAP="${CITED_ES_HEAP:-512m}"
CACHE="${CITED_CACHE:-$HOME/.cache/cited}/elasticsearch"
MAVEN="${CITED_MAVEN_URL:-https://repo1.maven.org/maven2}"
ZIP="$CACHE/elasticsearch-$ES_VERSION.zip"
# Elasticsearch refuses to run as root. As root (as in CI), the node runs as a system user
# `cited-es`, from a folder it owns; the downloaded zip stays in the cache.
ES_USER=""
if [[ "$(id -u)" == "0" ]]; then
  ES_USER="${CITED_ES_USER:-cited-es}"
  NODE_ROOT="${CITED_ES_NODE_ROOT:-/var/lib/cited-es}"
else
  NODE_ROOT="$CACHE"
fi
HOME_DIR="$NODE_ROOT/elasticsearch-$ES_VERSION"
RUN_DIR="${CITED_ES_RUN_DIR:-$NODE_ROOT/run}"

log() { echo "elasticsearch.sh: $*" >&2; }
die() { log "$*"; exit 1; }

fetch() {
  mkdir -p "$CACHE" "$NODE_ROOT"
  local url="$MAVEN/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION/elasticsearch-$ES_VERSION.zip"
  local want
  if [[ "$ES_VERSION" == "8.19.21" ]]; then
    want="$ES_SHA512_8_19_21"
  else
    # Another version: trust the checksum published beside the zip (still verified).
    want="$(curl -fsSL "$url.sha512" | cut -d' ' -f1)" || die "cannot fetch $url.sha512"
  fi
  if [[ ! -f "$ZIP" ]]; then
    log "downloading $url"
    curl -fsSL --retry 3 -o "$ZIP.part" "$url" || die "download failed: $url"
    mv "$ZIP.part" "$ZIP"
  fi
  local got
  got="$(sha512sum "$ZIP" | cut -d' ' -f1)"
  if [[ "$got" != "$want" ]]; then
    rm -f "$ZIP"
    die "checksum mismatch for $ZIP (removed; run again to re-download)"
  fi
  if [[ ! -x "$HOME_DIR/bin/elasticsearch" ]]; then
    log "unpacking $ZIP"
    rm -rf "$HOME_DIR.tmp" && mkdir -p "$HOME_DIR.tmp"
    unzip -q "$ZIP" -d "$HOME_DIR.tmp"
    rm -rf "$HOME_DIR" && mv "$HOME_DIR.tmp/elasticsearch-$ES_VERSION" "$HOME_DIR" && rm -rf "$HOME_DIR.tmp"
  fi
}

ensure_user() {
  [[ -n "$ES_USER" ]] || return 0
  if ! id -u "$ES_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER" || die "cannot create user $ES_USER"
  fi
  chown -R "$ES_USER:" "$NODE_ROOT"
}

as_node_user() {
  if [[ -n "$ES_USER" ]]; then runuser -u "$ES_USER" -- "$@"; else "$@"; fi
}

java_major() {  # java_major /path/to/jdk -> 17
  "$1/bin/java" -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1
}

pick_jdk() {
  local need=17
  [[ "${ES_VERSION%%.*}" -ge 9 ]] && need=21
  if [[ -n "${ES_JAVA_HOME:-}" ]]; then echo "$ES_JAVA_HOME"; return; fi
  local jdk major
  for jdk in /usr/lib/jvm/*/; do
    jdk="${jdk%/}"
    [[ -x "$jdk/bin/java" && ! -L "$jdk" ]] || continue
    major="$(java_major "$jdk")"
    if [[ -n "$major" && "$major" -ge "$need" ]]; then echo "$jdk"; return; fi
  done
  die "no JDK >= $need in /usr/lib/jvm (Elasticsearch $ES_VERSION needs Java $need+); set ES_JAVA_HOME"
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

url_of_run() { [[ -f "$RUN_DIR/url" ]] && cat "$RUN_DIR/url"; }

healthy() {  # healthy URL
  curl -fsS "$1/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null 2>&1
}

start() {
  if [[ -f "$RUN_DIR/pid" ]] && kill -0 "$(cat "$RUN_DIR/pid")" 2>/dev/null; then
    local url; url="$(url_of_run)"
    if healthy "$url"; then echo "CITED_ES_URL=$url"; return; fi
  fi
  fetch
  local jdk port
  jdk="$(pick_jdk)"
  port="${CITED_ES_PORT:-$(free_port)}"
  rm -rf "$RUN_DIR" && mkdir -p "$RUN_DIR/data" "$RUN_DIR/logs" "$RUN_DIR/tmp"
  cp -r "$HOME_DIR/config" "$RUN_DIR/config"
  ensure_user
  log "starting Elasticsearch $ES_VERSION on 127.0.0.1:$port with $(basename "$jdk"), heap $ES_HEAP"
  ES_JAVA_HOME="$jdk" ES_PATH_CONF="$RUN_DIR/config" ES_TMPDIR="$RUN_DIR/tmp" \
  ES_JAVA_OPTS="-Xms$ES_HEAP -Xmx$ES_HEAP ${CITED_ES_JAVA_OPTS:-}" \
    as_node_user "$HOME_DIR/bin/elasticsearch" -d -p "$RUN_DIR/pid" \
      -Ecluster.name=cited-test -Enode.name=cited-node \
      -Enetwork.host=127.0.0.1 -Ehttp.port="$port" -Etransport.port=0 \
      -Ediscovery.type=single-node -Expack.security.enabled=false \
      -Epath.data="$RUN_DIR/data" -Epath.logs="$RUN_DIR/logs" \
      -Ecluster.routing.allocation.disk.threshold_enabled=false \
      >"$RUN_DIR/stdout.log" 2>&1 || { tail -n 40 "$RUN_DIR/stdout.log" >&2; die "the node did not start"; }
  local url="http://127.0.0.1:$port"
  echo "$url" >"$RUN_DIR/url"
  local deadline=$((SECONDS + ${CITED_ES_START_TIMEOUT:-180}))
  until healthy "$url"; do
    if ! kill -0 "$(cat "$RUN_DIR/pid" 2>/dev/null || echo 0)" 2>/dev/null; then
      tail -n 40 "$RUN_DIR/logs/cited-test.log" "$RUN_DIR/stdout.log" >&2 2>/dev/null || true
      die "the node exited during start-up (logs in $RUN_DIR/logs)"
    fi
    if (( SECONDS > deadline )); then
      stop >/dev/null 2>&1 || true
      die "the node was not healthy within ${CITED_ES_START_TIMEOUT:-180}s"
    fi
    sleep 1
  done
  log "healthy at $url"
  echo "CITED_ES_URL=$url"
}

stop() {
  if [[ -f "$RUN_DIR/pid" ]]; then
    local pid; pid="$(cat "$RUN_DIR/pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid"
      for _ in $(seq 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && { log "node $pid did not stop on TERM; killing"; kill -9 "$pid"; }
      log "stopped (pid $pid)"
    fi
  fi
  [[ "${CITED_ES_KEEP:-0}" == "1" ]] || rm -rf "$RUN_DIR"
}

status() {
  local url; url="$(url_of_run || true)"
  if [[ -n "$url" ]] && healthy "$url"; then echo "CITED_ES_URL=$url"; else echo "not running" >&2; exit 1; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  fetch) fetch ;;
  *) echo "usage: $0 start|stop|status|fetch" >&2; exit 2 ;;
esac
