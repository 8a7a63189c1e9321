#!/usr/bin/env bash
# cluster.sh - many nodes, one realtime server, on this machine: a redis-server and
# N `zap serve --redis` nodes, each on its own port, until Ctrl-C (which stops them all).
#
# Usage: scripts/cluster.sh [NODES]          (default 3)
# Env:   PORT=8081        first node's port (the others follow: 8082, 8083, ...)
#        REDIS_PORT=6390  the redis-server's port (started here, no persistence)
#        REDIS_URL=...    use this Redis instead of starting one
#        PROFILE=release  the cargo profile to build zap with (dev is faster to build)
# Open http://127.0.0.1:8081/ and http://127.0.0.1:8082/ in two tabs: each page says
# which node it is on; join the same room in both and chat across nodes. Kill a node
# (its pid is printed) and watch its members leave the others' presence within ~6 s;
# a client that reconnects to another node resumes its session there.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES="${1:-3}"
PORT="${PORT:-8081}"
REDIS_PORT="${REDIS_PORT:-6390}"
PROFILE="${PROFILE:-release}"
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "NODES must be a number (got '$NODES')"

cd "$ROOT"
mkdir -p "$LOG_DIR"
log "building zap ($PROFILE)"
cargo build -q --profile "$PROFILE" -p zapsocket-cli --bin zap
dir="$PROFILE"; [ "$PROFILE" = dev ] && dir=debug
ZAP="${CARGO_TARGET_DIR:-$ROOT/target}/$dir/zap"

pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]+"${pids[@]}"}"; do kill "$pid" 2> /dev/null || true; done
  wait 2> /dev/null || true
}
trap stop INT TERM EXIT

if [ -z "${REDIS_URL:-}" ]; then
  command -v redis-server > /dev/null || die "redis-server is missing: scripts/setup.sh installs it"
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no > "$LOG_DIR/cluster-redis.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping > /dev/null 2>&1 && break; sleep 0.1; done
  REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
  log "redis-server on $REDIS_URL (pid ${pids[0]})"
fi

for i in $(seq "$NODES"); do
  port=$((PORT + i - 1))
  "$ZAP" serve --port "$port" --redis "$REDIS_URL" --node-id "node-$i" > "$LOG_DIR/cluster-node-$i.log" 2>&1 &
  pids+=("$!")
  for _ in $(seq 100); do grep -q "listening on" "$LOG_DIR/cluster-node-$i.log" && break; sleep 0.1; done
  grep -q "listening on" "$LOG_DIR/cluster-node-$i.log" || { cat "$LOG_DIR/cluster-node-$i.log"; die "node-$i did not start"; }
  log "node-$i: http://127.0.0.1:$port/ (realtime ws://127.0.0.1:$port/ws, pid $!, log ${LOG_DIR#"$ROOT"/}/cluster-node-$i.log)"
done
log "$NODES nodes on $REDIS_URL; Ctrl-C stops them"
wait
