#!/usr/bin/env bash
# Create or update the Python environment, cached outside the clone, and print its path.
#
# Why outside: torch alone is several GB; CI clones afresh each run but keeps the cache.
# The venv lives in $CITED_CACHE/venv-pyX.Y; pip runs again only when the dependency lists in
# pyproject.toml change (their hash is stamped in the venv). The project itself is
# installed editable each time, cheaply, so `cited` points at this checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${CITED_CACHE:-$HOME/.cache/cited}"
PY="${PYTHON:-python3}"
pyver="$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
VENV="${CITED_VENV:-$CACHE/venv-py$pyver}"
key="$("$PY" - <<'PY'
import hashlib, json, tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(hashlib.sha256(json.dumps([p["dependencies"], p.get("optional-dependencies", {})], sort_keys=True).encode()).hexdigest()[:16])
PY
)"
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "venv.sh: creating $VENV" >&2
  "$PY" -m venv "$VENV"
fi
if [[ "$(cat "$VENV/.cited-deps" 2>/dev/null)" != "$key" ]]; then
  echo "venv.sh: installing dependencies into $VENV (this takes minutes the first time)" >&2
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  find_links=()
  [[ -d "$CACHE/wheels" ]] && find_links=(--find-links "$CACHE/wheels")
  "$VENV/bin/python" -m pip install -q "${find_links[@]}" -e ".[test]" >&2
  echo "$key" >"$VENV/.cited-deps"
fi
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e . >&2 2>/dev/null \
  || "$VENV/bin/python" -m pip install -q --no-deps -e . >&2
echo "$VENV"
