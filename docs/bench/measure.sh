#!/usr/bin/env bash
# The measurements behind docs/BENCHMARKS.md, in one go: starts a release
# confab on its own database with bench limits, runs each scenario (short
# runs; the machine is shared), appends every JSON line to $OUT, and plots.
# Usage: docs/bench/measure.sh [out.jsonl]   (REPEAT=3 by default)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-docs/bench/results.jsonl}
REPEAT=${REPEAT:-3}
PORT=${PORT:-18181}
export CONFAB_BENCH_URL=http://127.0.0.1:$PORT
export CONFAB_ADMIN_TOKEN=bench-admin-token
export DATABASE_URL=postgres://postgres@127.0.0.1:5432/confab_bench

cargo build --release -p confab -p confab-bench
ulimit -n 65536 2>/dev/null || true  # the bench and the server raise their own too

# The server under test: bench-sized rate limits, everything else default.
CONFAB_BIND=127.0.0.1:$PORT \
CONFAB_JWT_SECRET=bench-secret-0123456789-0123456789-abcdef \
CONFAB_RATE_LIMIT_PER_SECOND=1000000 CONFAB_RATE_LIMIT_BURST=1000000 \
CONFAB_WORKERS=${WORKERS:-0} RUST_LOG=warn \
  target/release/confab > /tmp/confab-bench-server.log 2>&1 &
SERVER=$!
trap 'kill $SERVER' EXIT
until curl -sf "$CONFAB_BENCH_URL/healthz" > /dev/null; do sleep 0.2; done

bench() { target/release/confab-bench "$@" --server-pid "$SERVER" --json-out "$OUT" > /dev/null; }

# First, on the fresh process: RSS per idle session means nothing once
# earlier runs have grown the allocator's heap.
bench connections --sessions 10000 --hold 2

for _ in $(seq "$REPEAT"); do
  # Durable sends against ceiling-db: many 2-member threads, sent as fast
  # as a 512-message in-flight window allows.
  bench fanout --threads 50 --members 2 --rate 0 --window 512 --duration 10 --with-ceilings
  # Fan-out against ceiling-ws, 10 threads of 50.
  bench fanout --threads 10 --members 50 --rate 0 --window 256 --duration 10 --with-ceilings
done
# Highest sustained rate at 10x50 (delivery p99 <= 50 ms, nothing lost).
bench ramp --threads 10 --members 50 --start-rate 200 --factor 1.4 --step-duration 5 --p99-bound-ms 50
HALF=$(tail -n 1 "$OUT" | python3 -c 'import json,sys; print(json.load(sys.stdin)["extra"]["highest_sustained_msgs_per_s"] / 2)')
for _ in $(seq "$REPEAT"); do
  bench fanout --threads 10 --members 50 --rate "$HALF" --duration 10
  # A 1000-member thread at 20 messages per second.
  bench fanout --threads 1 --members 1000 --rate 20 --duration 15
  bench receipts --pairs 50 --duration 10
  bench storm --clients 1000 --members 10 --backlog 20
done
target/release/confab-bench plot --input "$OUT" --out-dir docs/bench
