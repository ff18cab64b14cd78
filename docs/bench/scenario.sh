#!/usr/bin/env bash
# scenario.sh LABEL BINARY "ENV" SCENARIO [ARGS]: one run of any confab-bench
# scenario on a fresh server and database; the JSON line goes to
# /tmp/bench/s-LABEL.json and is appended to /tmp/bench/s.jsonl.
set -u
mkdir -p /tmp/bench
cd "$(dirname "$0")/../.."
LABEL=$1; BIN=$2; EXTRA=$3; shift 3
DB=confab_q_$(date +%s%N)
env DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB CONFAB_BIND=127.0.0.1:18181 CONFAB_ADMIN_TOKEN=bench-admin-token \
  CONFAB_JWT_SECRET=bench-secret-0123456789-0123456789-abcdef CONFAB_RATE_LIMIT_PER_SECOND=1000000 CONFAB_RATE_LIMIT_BURST=1000000 \
  RUST_LOG=warn $EXTRA $BIN > /tmp/bench/s-$LABEL.log 2>&1 &
PID=$!
for _ in $(seq 1 150); do curl -sf http://127.0.0.1:18181/readyz >/dev/null && break; sleep 0.2; done
target/release/confab-bench "$@" --url http://127.0.0.1:18181 --admin-token bench-admin-token --server-pid $PID \
  --json-out /tmp/bench/s.jsonl > /tmp/bench/s-$LABEL.json 2>/tmp/bench/s-$LABEL.err
echo "$LABEL rc=$?"
kill $PID; wait $PID 2>/dev/null
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
