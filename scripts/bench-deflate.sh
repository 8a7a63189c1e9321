#!/usr/bin/env bash
# bench-deflate.sh - permessage-deflate: zapsocket (`zap serve --deflate`) beside Node `ws`
# (perMessageDeflate on, ../shared/bench/peers/node-ws), driven by the same client
# (crates/zapsocket/examples/deflate_bench.rs). Loopback only; every run is bounded.
#
#   scripts/bench-deflate.sh                       # ROUNDS=3
#   ROUNDS=1 SIZE=4096 CONNS=16 SECS=3 IDLE=1000 scripts/bench-deflate.sh
#
# Per round and server: echo of SIZE-byte messages (json: compressible, random: not), the
# client offering deflate (on) or not (off), CONNS connections for SECS seconds, with the
# server's CPU µs per message; then IDLE idle connections (each echoed one 4 KiB JSON
# message) and the server's RSS per connection: deflate offered (on), offered with
# client_no_context_takeover (alone: the server may drop its decompressor between
# messages), and not offered (off). The server runs
# on core 1, the client on core 0. JSON lines go to $OUT; a table of medians is printed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SIZE=${SIZE:-16384}
CONNS=${CONNS:-32}
SECS=${SECS:-5}
IDLE=${IDLE:-2000}
PORT=${PORT:-28410}
TARGET=${CARGO_TARGET_DIR:-target}
OUT=${OUT:-$TARGET/bench-deflate.jsonl}
NODE_WS=${NODE_WS:-../shared/bench/peers/node-ws}

cargo build --release -q -p zapsocket-cli --bin zap
cargo build --release -q -p zapsocket --example deflate_bench
[ -f "$NODE_WS/node_modules/ws/package.json" ] || (cd "$NODE_WS" && npm ci --no-audit --no-fund --loglevel=error)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
DRIVER="$TARGET/release/examples/deflate_bench"

server=""
log=$(mktemp)
stop() { if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi; server=""; }
trap 'stop; rm -f "$log"' EXIT

start() { # start zap|ws
  stop
  : >"$log"
  case "$1" in
    zap) taskset -c 1 "$TARGET/release/zap" serve --port "$PORT" --deflate --ping-interval 0 >"$log" 2>&1 & ;;
    ws) NODE_PATH="$NODE_WS/node_modules" taskset -c 1 node scripts/bench-deflate-ws-server.cjs "$PORT" >"$log" 2>&1 & ;;
  esac
  server=$!
  for _ in $(seq 100); do grep -q "listening on" "$log" && return 0; sleep 0.1; done
  cat "$log"; exit 1
}

url() { case "$1" in zap) echo "ws://127.0.0.1:$PORT/echo" ;; ws) echo "ws://127.0.0.1:$PORT/" ;; esac; }

: >"$OUT"
for round in $(seq "$ROUNDS"); do
  for name in zap ws; do
    for payload in json random; do
      for offer in on off; do
        start "$name"
        taskset -c 0 "$DRIVER" echo "$(url $name)" "$SIZE" "$payload" "$offer" "$CONNS" "$SECS" "$server" \
          | sed "s/^{/{\"server\":\"$name\",/" | tee -a "$OUT"
      done
    done
    for offer in on alone off; do
      start "$name"   # a fresh server: its RSS holds nothing but these connections
      sleep 0.5
      taskset -c 0 "$DRIVER" idle "$(url $name)" "$IDLE" "$offer" "$server" \
        | sed "s/^{/{\"server\":\"$name\",/" | tee -a "$OUT"
    done
  done
  echo "round $round of $ROUNDS done" >&2
done
stop

python3 - "$OUT" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
def med(xs): return statistics.median(xs) if xs else float('nan')
print("\necho: median msgs/s, server CPU µs/msg (client offers deflate: on/off)")
print(f"{'server':6} {'payload':8} {'offer':5} {'agreed':8} {'msgs/s':>8} {'MB/s':>7} {'cpu µs/msg':>10}")
for s in ('zap', 'ws'):
    for p in ('json', 'random'):
        for o in ('on', 'off'):
            rs = [r for r in rows if r['mode'] == 'echo' and r['server'] == s and r['payload'] == p and r['offer'] == o]
            if not rs: continue
            agreed = 'yes' if rs[0]['agreed'] else 'no'
            cpu = [r['server_cpu_us_per_msg'] for r in rs if r['server_cpu_us_per_msg'] is not None]
            print(f"{s:6} {p:8} {o:5} {agreed:8} {med([r['msgs_per_s'] for r in rs]):8.0f} {med([r['mb_per_s'] for r in rs]):7.1f} {med(cpu):10.1f}")
print("\nidle: median server RSS per connection (KiB)")
for s in ('zap', 'ws'):
    for o in ('on', 'alone', 'off'):
        rs = [r for r in rows if r['mode'] == 'idle' and r['server'] == s and r['offer'] == o]
        if rs:
            print(f"{s:6} offer {o:5} ({rs[0]['agreed'] or 'none'}): {med([r['bytes_per_conn'] for r in rs]) / 1024:.1f} KiB over {rs[0]['conns']} connections")
PY
