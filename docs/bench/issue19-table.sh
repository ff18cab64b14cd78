#!/usr/bin/env bash
# Issue 19's table: confab builds and the Node peer side by side, in one run,
# alternating, on fresh databases. Usage:
#   docs/bench/issue19-table.sh LABEL=path/to/confab[@VAR=value] [...]
# e.g. before=/tmp/bench/confab-77c6297 after=target/release/confab \
#      after-2=target/release/confab@CONFAB_COMMITS_IN_FLIGHT=2
# Env: ROUNDS (2), OUT (/tmp/bench/issue19.jsonl), RAMP (1: also ramp each
# server to its highest rate with delivery p99 <= 200 ms), OTHERS (1: the
# last LABEL alone through the issue's other scenarios), TABLE (1: the
# per-round fanout and connect runs), RECEIPTS (0: 1 adds a receipts run
# per server and round, Node included), NODE_DIR.
set -u
cd "$(dirname "$0")/../.."
B=${BENCH:-target/release/confab-bench}
OUT=${OUT:-/tmp/bench/issue19.jsonl}
ROUNDS=${ROUNDS:-2}
RAMP=${RAMP:-1}
NODE_DIR=${NODE_DIR:-../shared/peers/node-chat}
[ -d "$NODE_DIR" ] || NODE_DIR=/work/shared/peers/node-chat
if [ ! -d "$NODE_DIR/node_modules" ]; then # the shared copy is read-only
  rm -rf /tmp/bench/node-chat && cp -r "$NODE_DIR" /tmp/bench/node-chat && chmod -R u+w /tmp/bench/node-chat
  NODE_DIR=/tmp/bench/node-chat; (cd "$NODE_DIR" && npm ci --silent) || exit 1
fi
LOGS=/tmp/bench/logs; mkdir -p "$LOGS"
TOKEN=bench-admin-token
PORT=18181; NODE_PORT=18090
RUN=$(date +%s)
N=0

start_confab() { # $1 binary[@VAR=value]; sets PID and URL
  local bin=${1%%@*} extra=
  [ "$bin" != "$1" ] && extra=${1#*@}
  N=$((N + 1))
  DBURL=postgres://postgres@127.0.0.1:5432/confab_i19_${RUN}_$N
  env DATABASE_URL=$DBURL \
    CONFAB_BIND=127.0.0.1:$PORT CONFAB_ADMIN_TOKEN=$TOKEN \
    CONFAB_JWT_SECRET=bench-secret-0123456789-0123456789-abcdef \
    CONFAB_RATE_LIMIT_PER_SECOND=1000000 CONFAB_RATE_LIMIT_BURST=1000000 \
    RUST_LOG=warn $extra "$bin" > "$LOGS/confab-$N.log" 2>&1 &
  PID=$!; URL=http://127.0.0.1:$PORT
  for _ in $(seq 1 150); do curl -sf $URL/readyz >/dev/null && return; sleep 0.2; done
  echo "confab did not start: $LOGS/confab-$N.log" >&2
}
start_node() {
  N=$((N + 1))
  (cd "$NODE_DIR" && exec env PORT=$NODE_PORT \
     DATABASE_URL=postgres://postgres@127.0.0.1:5432/nodechat_i19_${RUN}_$N \
     JWT_SECRET=bench-secret ADMIN_TOKEN=$TOKEN RATE_LIMIT_PER_SEC=0 node server.js \
     > "$LOGS/node-$N.log" 2>&1) &
  PID=$!; URL=http://127.0.0.1:$NODE_PORT; DBURL=
  for _ in $(seq 1 150); do curl -sf $URL/healthz >/dev/null && return; sleep 0.2; done
  echo "node did not start: $LOGS/node-$N.log" >&2
}
stop() { kill "$PID" 2>/dev/null; wait "$PID" 2>/dev/null; sleep 0.5; }
bench() { # $1 label, rest: scenario args
  local label=$1; shift
  "$B" "$@" --url "$URL" --admin-token $TOKEN --server-pid "$PID" --json-out "$OUT" \
    --database-url "${DBURL:-}" \
    > "$LOGS/$label.json" 2> "$LOGS/$label.err"
  echo "$label rc=$? $(tail -c 300 "$LOGS/$label.err" | tr '\n' ' ' | cut -c1-200)"
}
each() { # $1 what: runs "$@" once per server
  local what=$1; shift
  for spec in "${SERVERS[@]}" node=node; do
    local label=${spec%%=*} bin=${spec#*=}
    if [ "$bin" = node ]; then start_node; else start_confab "$bin"; fi
    bench "$what-$label-$round" "$@"
    stop
  done
}
SERVERS=("$@")
for round in $(seq 1 "$ROUNDS"); do
  if [ "${TABLE:-1}" = 1 ]; then
    each rate380 fanout --threads 10 --members 50 --rate 380 --duration 20
    each connect5000 connections --sessions 5000 --members 10 --hold 2
  fi
  if [ "${RECEIPTS:-0}" = 1 ]; then
    each receipts receipts --pairs 50 --duration 10
  fi
done
if [ "$RAMP" = 1 ]; then
  round=1
  each ramp200 ramp --threads 10 --members 50 --start-rate 300 --factor 1.4 \
    --step-duration 10 --p99-bound-ms 200
fi
if [ "${OTHERS:-1}" = 1 ]; then
  last=${SERVERS[${#SERVERS[@]}-1]}; label=${last%%=*}; bin=${last#*=}
  one() { start_confab "$bin"; bench "$1-$label" "${@:2}"; stop; }
  one thread1000 fanout --threads 1 --members 1000 --rate 20 --duration 20
  one storm storm --clients 1000 --members 10 --backlog 20
  one durable fanout --threads 50 --members 2 --rate 0 --window 512 --duration 10 --with-ceilings
  one receipts receipts --pairs 50 --duration 10
  # The floor under any ack: one durable single-row commit at a time.
  one commit-floor ceiling-db --threads 10 --pool-size 1 --batch 1 --duration 10
fi
