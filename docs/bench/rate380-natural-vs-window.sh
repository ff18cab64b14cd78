#!/usr/bin/env bash
# A/B at everyday load: natural batching (default) vs the old fixed 2 ms window
# (batch_window_us=2000, 12 commits in flight), and Node, alternating.
set -u
cd /work/main
B=target/release/confab-bench
OUT=/tmp/bench/rate380.jsonl
start_confab() { # $1 label, extra env in $2
  env DATABASE_URL=postgres://postgres@127.0.0.1:5432/confab_bench_$1 \
    CONFAB_BIND=127.0.0.1:18181 CONFAB_ADMIN_TOKEN=bench-admin-token \
    CONFAB_JWT_SECRET=bench-secret-0123456789-0123456789-abcdef \
    CONFAB_RATE_LIMIT_PER_SECOND=1000000 CONFAB_RATE_LIMIT_BURST=1000000 \
    RUST_LOG=warn $2 target/release/confab > /tmp/bench/confab-$1.log 2>&1 &
  PID=$!
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18181/readyz >/dev/null && break; sleep 0.2; done
}
run_bench() { # $1 label $2 url $3 pid $4 token
  $B fanout --threads 10 --members 50 --rate 380 --duration 20 --url $2 --admin-token $4 \
     --server-pid $3 --json-out $OUT > /tmp/bench/$1.json 2>/tmp/bench/$1.err
  echo "$1 rc=$?"
}
for round in 1 2; do
  start_confab natural ""
  run_bench natural-$round http://127.0.0.1:18181 $PID bench-admin-token
  kill $PID; wait $PID 2>/dev/null
  start_confab window "CONFAB_BATCH_WINDOW_US=2000 CONFAB_COMMITS_IN_FLIGHT=12"
  run_bench window-$round http://127.0.0.1:18181 $PID bench-admin-token
  kill $PID; wait $PID 2>/dev/null
  (cd /work/shared/peers/node-chat && PORT=18090 DATABASE_URL=postgres://postgres@127.0.0.1:5432/nodechat_bench \
     JWT_SECRET=bench-secret ADMIN_TOKEN=bench-admin-token RATE_LIMIT_PER_SEC=0 node server.js > /tmp/bench/node.log 2>&1) &
  sleep 0.5
  NPID=$(pgrep -f 'node server.js' | head -1)
  for _ in $(seq 1 100); do curl -sf http://127.0.0.1:18090/healthz >/dev/null && break; sleep 0.2; done
  run_bench node-$round http://127.0.0.1:18090 $NPID bench-admin-token
  pkill -f 'node server.js'; sleep 0.5
done
