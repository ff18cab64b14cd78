#!/usr/bin/env bash
# What replies, mentions, reactions and rev cost a send: the 10 x 50 fan-out
# on the commit before the messages merge (0b05530^1) and on the merge itself
# (0b05530), alternating, at 380 msg/s and at full speed. Built with
#   git worktree add --detach /work/wt/bench-before 0b05530^1   (+ cargo build --release)
#   git worktree add --detach /work/wt/bench-after 0b05530      (+ cargo build --release)
set -u
B=/work/wt/bench-before/target/release/confab-bench
OUT=${OUT:-/tmp/bench/messages-rev-cost.jsonl}
start_confab() { # $1 label, $2 binary
  env DATABASE_URL=postgres://postgres@127.0.0.1:5432/confab_bench_$1 \
    CONFAB_BIND=127.0.0.1:18181 CONFAB_ADMIN_TOKEN=bench-admin-token \
    CONFAB_JWT_SECRET=bench-secret-0123456789-0123456789-abcdef \
    CONFAB_RATE_LIMIT_PER_SECOND=1000000 CONFAB_RATE_LIMIT_BURST=1000000 \
    RUST_LOG=warn $2 > /tmp/bench/confab-$1.log 2>&1 &
  PID=$!
  for _ in $(seq 1 150); do curl -sf http://127.0.0.1:18181/readyz >/dev/null && break; sleep 0.2; done
}
run_bench() { # $1 label, then extra bench arguments
  local label=$1; shift
  $B fanout --threads 10 --members 50 --duration 15 --url http://127.0.0.1:18181 \
     --admin-token bench-admin-token --server-pid $PID --json-out $OUT "$@" \
     > /tmp/bench/$label.json 2>/tmp/bench/$label.err
  echo "$label rc=$?"
}
for round in 1 2; do
  for side in before after; do
    bin=/work/wt/bench-before/target/release/confab
    [ $side = after ] && bin=/work/wt/bench-before/target-after/release/confab
    start_confab $side $bin
    run_bench $side-rate380-$round --rate 380
    run_bench $side-full-$round
    kill $PID; wait $PID 2>/dev/null
  done
done
