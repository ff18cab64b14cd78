#!/usr/bin/env bash
# The search measurements in docs/BENCHMARKS.md ("Search"):
#  1. what the search index costs durable sends: the 50 x 2 fan-out against
#     a server built without it ($BASE_BIN, e.g. from main) and one with it
#     (target/release/confab), alternating, each run on a fresh database;
#  2. search latency over a seeded history (default 1,000,000 messages in
#     1,000 threads of one company), on the server with the index.
# Usage: BASE_BIN=/path/to/confab-from-main docs/bench/search.sh [out.jsonl]
#        (REPEAT=3, MESSAGES=1000000, THREADS=1000; SKIP_FANOUT=1 or
#        SKIP_SEARCH=1 to run one half)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-docs/bench/search.jsonl}
REPEAT=${REPEAT:-3}
PORT=${PORT:-18183}
BASE_BIN=${BASE_BIN:?the confab binary to compare against (built from main)}
NEW_BIN=${NEW_BIN:-target/release/confab}
BENCH=${BENCH:-target/release/confab-bench}
export CONFAB_BENCH_URL=http://127.0.0.1:$PORT
export CONFAB_ADMIN_TOKEN=bench-admin-token

# Starts $1 on a fresh database $2; sets SERVER.
serve() {
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $2" postgres
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/$2 CONFAB_BIND=127.0.0.1:$PORT \
  CONFAB_JWT_SECRET=bench-secret-0123456789-0123456789-abcdef \
  CONFAB_RATE_LIMIT_PER_SECOND=1000000 CONFAB_RATE_LIMIT_BURST=1000000 \
  CONFAB_DB_REQUEST_TIMEOUT_MS=${REQUEST_TIMEOUT_MS:-5000} RUST_LOG=warn "$1" > "/tmp/$2.log" 2>&1 &
  SERVER=$!
  until curl -sf "$CONFAB_BENCH_URL/healthz" > /dev/null; do sleep 0.2; done
}
stop() { kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; }

if [ -z "${SKIP_FANOUT:-}" ]; then
  for round in $(seq "$REPEAT"); do
    for variant in base new; do
      bin=$BASE_BIN; [ "$variant" = new ] && bin=$NEW_BIN
      serve "$bin" "search_fanout_$variant"
      "$BENCH" fanout --threads 50 --members 2 --rate 0 --window 512 --duration 10 \
        --server-pid "$SERVER" --json-out "$OUT" > /dev/null
      # Which binary each line came from.
      python3 - "$OUT" "$variant" "$round" <<'PY'
import json, sys
path, variant, round_ = sys.argv[1:]
lines = open(path).read().splitlines()
last = json.loads(lines[-1]); last["params"]["variant"] = variant; last["params"]["round"] = int(round_)
lines[-1] = json.dumps(last)
open(path, "w").write("\n".join(lines) + "\n")
PY
      stop
    done
  done
fi

if [ -z "${SKIP_SEARCH:-}" ]; then
  # A slow query is measured, not cut off at the default 5 s.
  REQUEST_TIMEOUT_MS=60000 serve "$NEW_BIN" search_history
  "$BENCH" search --messages "${MESSAGES:-1000000}" --threads "${THREADS:-1000}" --repeat 30 \
    --database-url postgres://postgres@127.0.0.1:5432/search_history \
    --server-pid "$SERVER" --json-out "$OUT" > /dev/null
  stop
fi
