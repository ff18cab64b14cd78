#!/usr/bin/env bash
# quick-380.sh LABEL BINARY "ENV..." [fanout args]: one fanout run (default
# 10 x 50 at 380 msg/s, 15 s) on a fresh server and database; prints the
# latency and CPU summary and the group-commit metrics, keeps the JSON in
# /tmp/bench/q-LABEL.json and the /metrics scrape in /tmp/bench/q-LABEL.metrics.
# PERF=1 also records a 5 s perf profile of the server into /tmp/bench.
set -u
mkdir -p /tmp/bench
cd "$(dirname "$0")/../.."
LABEL=$1; BIN=$2; EXTRA=$3; shift 3
ARGS=${*:-"--threads 10 --members 50 --rate 380 --duration 15"}
DB=confab_q_$(date +%s%N)
env DATABASE_URL=postgres://postgres@127.0.0.1:5432/$DB CONFAB_BIND=127.0.0.1:18181 CONFAB_ADMIN_TOKEN=bench-admin-token \
  CONFAB_JWT_SECRET=bench-secret-0123456789-0123456789-abcdef CONFAB_RATE_LIMIT_PER_SECOND=1000000 CONFAB_RATE_LIMIT_BURST=1000000 \
  RUST_LOG=warn $EXTRA $BIN > /tmp/bench/q-$LABEL.log 2>&1 &
PID=$!
for _ in $(seq 1 150); do curl -sf http://127.0.0.1:18181/readyz >/dev/null && break; sleep 0.2; done
if [ -n "${PERF:-}" ]; then (sleep 8; perf record -e cpu-clock -F 999 -g -p $PID -o /tmp/bench/perf-$LABEL.data -- sleep 5 >/dev/null 2>&1) & fi
target/release/confab-bench fanout $ARGS --url http://127.0.0.1:18181 --admin-token bench-admin-token --server-pid $PID \
  --json-out /tmp/bench/quick.jsonl > /tmp/bench/q-$LABEL.json 2>/tmp/bench/q-$LABEL.err
echo "$LABEL rc=$?"
python3 - "$LABEL" <<'PY'
import json,sys
l=open('/tmp/bench/q-%s.json'%sys.argv[1]).read().strip().splitlines()[-1]
d=json.loads(l)
def g(*k):
    x=d
    for kk in k:
        if isinstance(x,dict) and kk in x: x=x[kk]
        else: return None
    return x
print(sys.argv[1], json.dumps({k:v for k,v in d.items() if k in ('latency','cpu','throughput','counts')})[:1500])
PY
curl -s http://127.0.0.1:18181/metrics > /tmp/bench/q-$LABEL.metrics
grep -E "^confab_(commit_batch|persistence)" /tmp/bench/q-$LABEL.metrics | grep -E "_sum|_count" 
kill $PID; wait $PID 2>/dev/null
psql -q -h 127.0.0.1 -U postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null
