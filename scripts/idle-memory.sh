#!/usr/bin/env bash
# Memory per idle connection of `zap serve`, for an echo connection (/) and a realtime
# session (/ws): N connections opened with `zap bench connect`, held idle, and the
# server's RSS (from zap bench) and jemalloc's own figures (from /metrics: bytes in live
# allocations, pages the allocator holds) read before and after. Each path is measured
# twice: after HOLD_SHORT seconds and after HOLD_LONG (past jemalloc's 10 s decay, when
# what the connections' starts freed has gone back to the system). Loopback only.
#
#   scripts/idle-memory.sh                  # N=10000, HOLD_SHORT=4, HOLD_LONG=25
#   N=2000 HOLD_LONG=12 scripts/idle-memory.sh
#   ZAP_BIN=/path/to/zap scripts/idle-memory.sh   # another build (no cargo build), side by side
#   SERVE_ARGS=--reactor scripts/idle-memory.sh    # zap serve on the reactor
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10000}
HOLD_SHORT=${HOLD_SHORT:-4}
HOLD_LONG=${HOLD_LONG:-25}
PORT=${PORT:-28330}
TARGET=${CARGO_TARGET_DIR:-target}
ZAP="${ZAP_BIN:-$TARGET/release/zap}"

[ -n "${ZAP_BIN:-}" ] || cargo build --release -q -p zapsocket-cli --bin zap
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

metrics() {
    curl -s "http://127.0.0.1:$1/metrics" |
        awk '/^zapsocket_allocator_(allocated|resident)_bytes/ {printf "%s ", $2}'
}

# measure PATH HOLD [bench args]: one server, one run; prints one line.
measure() {
    local path=$1 hold=$2 port=$PORT
    shift 2
    PORT=$((PORT + 1))
    local log
    log=$(mktemp)
    # shellcheck disable=SC2086 # SERVE_ARGS is a list of words
    taskset -c 1 "$ZAP" serve --port "$port" ${SERVE_ARGS:-} >"$log" 2>&1 &
    local server=$!
    for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
    local before after fds
    before=$(metrics "$port")
    fds=$(ls "/proc/$server/fd" | wc -l)
    taskset -c 0 "$ZAP" bench connect "ws://127.0.0.1:$port$path" -c "$N" --hold "$hold" \
        --server-pid "$server" --json -q "$@" >"$log.json" &
    local bench=$!
    # The hold starts once every connection is open (the server holds a descriptor for
    # each); the allocator's figures are read just before zap bench reads the RSS.
    while [ "$(ls "/proc/$server/fd" | wc -l)" -lt "$((fds + N))" ]; do
        kill -0 "$bench" 2>/dev/null || break
        sleep 0.05
    done
    sleep "$(python3 -c "print(max(0.0, $hold - 0.3))")"
    after=$(metrics "$port")
    wait "$bench" || { cat "$log.json"; kill "$server"; exit 1; }
    kill "$server"
    wait "$server" 2>/dev/null || true
    python3 - "$path" "$hold" "$N" "$before" "$after" "$log.json" <<'PY'
import json, sys
path, hold, n, before, after, report = sys.argv[1:]
n = int(n)
b = [float(x) for x in before.split()]
a = [float(x) for x in after.split()]
rss = json.load(open(report))["server_bytes_per_connection"]
print(f"{path:>4} held {hold:>3} s: RSS {rss:7,.0f} B  allocated {(a[0]-b[0])/n:7,.0f} B  "
      f"resident {(a[1]-b[1])/n:7,.0f} B  per connection")
PY
    rm -f "$log" "$log.json"
}

for hold in "$HOLD_SHORT" "$HOLD_LONG"; do
    measure / "$hold"
    measure /ws "$hold" --protocol zapsocket.v1
done
