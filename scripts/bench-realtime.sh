#!/usr/bin/env bash
# The realtime layer against the raw path, in one run: `zap serve` (pinned to core 1)
# relays an event to a room of N members on /ws, and the same payload size through
# /broadcast to N clients; the driver (crates/zapsocket-realtime/examples/room_bench.rs,
# pinned to core 0) reports deliveries/s and the server's CPU µs per delivery.
# Paths alternate, ROUNDS rounds; prints every run and the medians. Loopback only;
# each run is bounded (120 s per message at most, in practice seconds).
#
#   scripts/bench-realtime.sh                 # ROUNDS=3, N=1000 (M=200) and N=10000 (M=50)
#   ROUNDS=5 WINDOW=1 scripts/bench-realtime.sh
#   SERVE_ARGS=--reactor scripts/bench-realtime.sh   # zap serve on the reactor
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
WINDOW=${WINDOW:-16}
PORT=${PORT:-28310}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET/bench-realtime.jsonl}

cargo build --release -q -p zapsocket-cli --bin zap
cargo build --release -q -p zapsocket-realtime --example room_bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

log=$(mktemp)
# shellcheck disable=SC2086 # SERVE_ARGS is a list of words
taskset -c 1 "$TARGET/release/zap" serve --port "$PORT" --ping-interval 0 ${SERVE_ARGS:-} >"$log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
grep -q "listening on" "$log" || { cat "$log"; exit 1; }

: >"$OUT"
for round in $(seq "$ROUNDS"); do
    for spec in 1000:200 10000:50; do
        members=${spec%:*} messages=${spec#*:}
        for mode in raw realtime; do
            taskset -c 0 "$TARGET/release/examples/room_bench" "ws://127.0.0.1:$PORT" "$server" \
                "$mode" "$members" "$messages" "$WINDOW" | tee -a "$OUT"
        done
    done
    echo "round $round done" >&2
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(f"\n{'members':>8} {'path':>9} {'deliveries/s':>13} {'CPU us/delivery':>16} {'runs':>5}")
for members in sorted({r["members"] for r in runs}):
    cpu = {}
    for mode in ("raw", "realtime"):
        rs = [r for r in runs if r["members"] == members and r["mode"] == mode and r["errors"] == 0]
        if not rs:
            continue
        d = statistics.median(r["deliveries_per_s"] for r in rs)
        cpu[mode] = statistics.median(r["server_cpu_us_per_delivery"] for r in rs)
        print(f"{members:>8} {mode:>9} {d:>13,.0f} {cpu[mode]:>16.3f} {len(rs):>5}")
    if len(cpu) == 2:
        print(f"{members:>8} {'ratio':>9} {'':>13} {cpu['realtime'] / cpu['raw']:>15.2f}x")
PY
