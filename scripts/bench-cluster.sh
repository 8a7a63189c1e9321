#!/usr/bin/env bash
# bench-cluster.sh - many nodes against one, in one run: a room of MEMBERS spread over
# three `zap serve --redis` nodes on one redis-server, a publisher on every node; and the
# same room on one `zap serve` alone (no Redis), with the same three publishers. Runs
# alternate, ROUNDS rounds. The driver (crates/zapsocket-redis/examples/cluster_bench.rs)
# reports deliveries/s, publish-to-delivery p50/p99, the CPU of every server process
# (the nodes, and Redis) per delivery, and Redis's commands and bytes per publish.
# Then the failure timings, from real processes (crates/zapsocket-cli/tests/cluster.rs):
# SIGKILL of a node until its client resumed on another node, and a Redis restart until
# delivery across nodes resumed. Loopback only; each run is bounded (120 s per message).
#
#   scripts/bench-cluster.sh                        # ROUNDS=3 MEMBERS=1000 MESSAGES=100 WINDOW=16
#   ROUNDS=5 MEMBERS=300 scripts/bench-cluster.sh
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ROUNDS=${ROUNDS:-3}
MEMBERS=${MEMBERS:-1000}
MESSAGES=${MESSAGES:-100}
WINDOW=${WINDOW:-16}
PORT=${PORT:-28320}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${OUT:-$TARGET/bench-cluster.jsonl}
mkdir -p "$LOG_DIR"

cargo build --release -q -p zapsocket-cli --bin zap
cargo build --release -q -p zapsocket-redis --example cluster_bench
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
command -v redis-server > /dev/null || die "redis-server is missing: scripts/setup.sh installs it"

pids=()
trap 'for p in "${pids[@]+"${pids[@]}"}"; do kill "$p" 2>/dev/null || true; done' EXIT
redis_port=$((PORT + 9))
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no > "$LOG_DIR/bench-redis.log" 2>&1 &
redis_pid=$!
pids+=("$redis_pid")
for _ in $(seq 50); do redis-cli -p "$redis_port" ping > /dev/null 2>&1 && break; sleep 0.1; done

start_node() { # start_node PORT ARGS... -> pid in $node_pid
  local port="$1" log="$LOG_DIR/bench-node-$1.log"; shift
  "$TARGET/release/zap" serve --port "$port" --ping-interval 0 "$@" > "$log" 2>&1 &
  node_pid=$!
  pids+=("$node_pid")
  for _ in $(seq 100); do grep -q "listening on" "$log" && break; sleep 0.1; done
  grep -q "listening on" "$log" || { cat "$log"; die "zap serve on $port did not start"; }
}
cluster_urls=() cluster_pids=()
for i in 0 1 2; do
  start_node $((PORT + i)) --redis "redis://127.0.0.1:$redis_port" --node-id "bench-$i"
  cluster_urls+=("ws://127.0.0.1:$((PORT + i))")
  cluster_pids+=("$node_pid")
done
start_node $((PORT + 5))
single_url="ws://127.0.0.1:$((PORT + 5))"
single_pid=$node_pid

join() { local IFS=,; echo "$*"; }
: > "$OUT"
for round in $(seq "$ROUNDS"); do
  "$TARGET/release/examples/cluster_bench" "$(join "${cluster_urls[@]}")" "$(join "${cluster_pids[@]}" "$redis_pid")" \
    "$MEMBERS" "$MESSAGES" "$WINDOW" "redis://127.0.0.1:$redis_port" | sed 's/^{/{"setup":"3 nodes + redis",/' | tee -a "$OUT"
  "$TARGET/release/examples/cluster_bench" "$(join "$single_url" "$single_url" "$single_url")" "$single_pid" \
    "$MEMBERS" "$MESSAGES" "$WINDOW" | sed 's/^{/{"setup":"1 node",/' | tee -a "$OUT"
  echo "round $round done" >&2
done

python3 - "$OUT" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
cols = ["deliveries_per_s", "p50_us", "p99_us", "cpu_us_per_delivery"]
print(f"\n{'setup':>16} {'deliveries/s':>13} {'p50 us':>8} {'p99 us':>8} {'CPU us/delivery':>16} {'runs':>5}")
medians = {}
for setup in ("3 nodes + redis", "1 node"):
    rs = [r for r in runs if r["setup"] == setup and r["errors"] == 0]
    if not rs:
        continue
    m = {c: statistics.median(r[c] for r in rs) for c in cols}
    medians[setup] = m
    print(f"{setup:>16} {m['deliveries_per_s']:>13,.0f} {m['p50_us']:>8,.0f} {m['p99_us']:>8,.0f} {m['cpu_us_per_delivery']:>16.3f} {len(rs):>5}")
if len(medians) == 2:
    a, b = medians["3 nodes + redis"], medians["1 node"]
    print(f"{'ratio':>16} {a['deliveries_per_s']/b['deliveries_per_s']:>12.2f}x {a['p50_us']/b['p50_us']:>7.2f}x {a['p99_us']/b['p99_us']:>7.2f}x {a['cpu_us_per_delivery']/b['cpu_us_per_delivery']:>15.2f}x")
rs = [r for r in runs if r["setup"] == "3 nodes + redis"]
if rs:
    print("\nRedis per publish (medians):", ", ".join(
        f"{k[6:-12].replace('_', ' ')} {statistics.median(r[k] for r in rs):.2f}"
        for k in ("redis_round_trips_per_publish", "redis_commands_per_publish",
                  "redis_bytes_in_per_publish", "redis_bytes_out_per_publish")))
PY

log "failure timings (real processes, default lease and timeouts):"
cargo test -q -p zapsocket-cli --test cluster -- --nocapture --test-threads 1 2>&1 | grep -E "SIGKILL of a node|Redis restarted" || die "the failure timings did not run"
