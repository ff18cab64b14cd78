#!/usr/bin/env bash
# Three confab nodes, HAProxy in front, on this box: the compose layout as
# plain processes. Needs Postgres on 5432 and NATS on 4222 (apt packages
# postgresql, nats-server, haproxy) and a built binary (cargo build --release -p confab).
# Clients use http://127.0.0.1:18090 and ws://127.0.0.1:18090/ws.
# Stops everything it started on Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CONFAB_BIN:-target/release/confab}
logs=${LOG_DIR:-$(mktemp -d)}
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/confab_cluster}
export CONFAB_NATS_URL=${CONFAB_NATS_URL:-nats://127.0.0.1:4222}
export CONFAB_SUBJECT_PREFIX=${CONFAB_SUBJECT_PREFIX:-confab}
# Shared by every node, so a token minted through one works on all.
export CONFAB_JWT_SECRET=${CONFAB_JWT_SECRET:-local-cluster-secret-0123456789abcdef}
export CONFAB_ADMIN_TOKEN=${CONFAB_ADMIN_TOKEN:-local-admin}

pids=()
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
# The first node creates and migrates the database before the others start.
for n in 1 2 3; do
    CONFAB_BIND=127.0.0.1:1808$n CONFAB_NODE_ID=confab$n "$bin" >"$logs/confab$n.log" 2>&1 &
    pids+=($!)
    until curl -sf http://127.0.0.1:1808$n/healthz >/dev/null; do sleep 0.2; done
done
haproxy -f deploy/haproxy-local.cfg >"$logs/haproxy.log" 2>&1 &
pids+=($!)
echo "cluster up: http://127.0.0.1:18090 (logs in $logs)"
wait
