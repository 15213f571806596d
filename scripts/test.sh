#!/usr/bin/env bash
# The test command of the README (`make test`): set up everything the tests need on this
# machine, start Elasticsearch unless CITED_ES_URL points at a running cluster, run pytest.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/system-deps.sh
VENV="$(scripts/venv.sh)"
export PATH="$VENV/bin:$PATH"
started_es=0
cleanup() { [[ $started_es == 1 ]] && scripts/elasticsearch.sh stop || true; }
trap cleanup EXIT
if [[ -z "${CITED_ES_URL:-}" ]]; then
  line="$(scripts/elasticsearch.sh start)"
  export "${line?}"
  started_es=1
fi
# The Elasticsearch tests must run: fail, never skip, when the node is unreachable.
export CITED_REQUIRE_ES=1
echo "test.sh: Elasticsearch at $CITED_ES_URL" >&2
mkdir -p artifacts
python -m pytest "$@"
