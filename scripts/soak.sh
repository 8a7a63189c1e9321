#!/usr/bin/env bash
# soak.sh - churn many connections against `zap serve` for a long time, then check that it
# gave back what it took: memory (RSS) within 10% of its baseline, the same open file
# descriptors, the same tasks alive, no connection left. Not part of CI (it takes ~15 min).
#
# Usage: scripts/soak.sh [--connections N] [--seconds S] [--hold-ms MIN-MAX] [--settle S] [--zap PATH]
#   --connections  slots kept busy at once, half on the echo path (/echo), half on the
#                  realtime hub (/ws): default 10000
#   --seconds      how long the churn lasts: default 600
#   --hold-ms      how long each connection stays after its exchange: default 2000-8000
#   --settle       seconds to wait after a churn before measuring, so that sessions kept
#                  for resumption (2 minutes) expire: default 150
#   --zap          a `zap` binary to soak (say, built with another allocator) instead of
#                  this tree's release build
# Each slot connects, exchanges a few messages (each answer checked), stays, then ends
# the connection, half the time with a close handshake and half the time by dropping TCP
# without a close frame, and starts again (`examples/churn.rs`).
# Phases: a 30 s warm-up churn, settle, baseline; the churn, settle, final.
# Output: target/soak/ (samples.csv every 10 s, server.log, churn-*.log, summary.txt).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

CONNECTIONS=10000
ZAP=""
SECONDS_=600
HOLD=2000-8000
SETTLE=150
while [ $# -gt 0 ]; do
  case "$1" in
    --connections) CONNECTIONS="$2"; shift ;;
    --seconds) SECONDS_="$2"; shift ;;
    --hold-ms) HOLD="$2"; shift ;;
    --settle) SETTLE="$2"; shift ;;
    --zap) ZAP="$2"; shift ;;
    -h|--help) usage_of "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

OUT="$ROOT/target/soak"
mkdir -p "$OUT"
if [ -z "${ZAP:-}" ]; then ZAP="$(build_bin zapsocket-cli zap)" || die "could not build zap"; fi
[ -x "$ZAP" ] || die "no zap binary at $ZAP"
CHURN="$(build_example churn)" || die "could not build the churn example"
# Each side needs a descriptor per connection, and some to spare.
ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((CONNECTIONS + 1000)) ] || die "ulimit -n $(ulimit -n) is too low for $CONNECTIONS connections"

PORT="$(free_port)"
SERVER_PID=""
cleanup() { stop_pid "$SERVER_PID"; SERVER_PID=""; }
trap cleanup EXIT
trap 'exit 130' INT TERM
"$ZAP" serve --port "$PORT" > "$OUT/server.log" 2>&1 &
SERVER_PID=$!
wait_port "$PORT" 30 "$SERVER_PID" || die "zap serve did not start (see $OUT/server.log)"

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$SERVER_PID/status"; }
fds() { find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 | wc -l; }
metric() { curl -fsS "http://127.0.0.1:$PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'; }
sample() { # sample PHASE
  printf '%s,%s,%s,%s,%s,%s,%s,%s,%s\n' "$(date +%s)" "$1" "$(rss_kib)" "$(fds)" "$(metric zapsocket_runtime_alive_tasks)" \
    "$(metric zapsocket_connections)" "$(metric zapsocket_incoming_budget_used_bytes)" \
    "$(metric zapsocket_allocator_allocated_bytes)" "$(metric zapsocket_allocator_resident_bytes)" >> "$OUT/samples.csv"
}
# heap and allocator_resident: jemalloc's allocated and resident bytes (empty with another allocator)
echo "time,phase,rss_kib,fds,tasks,hub_connections,budget_used,heap,allocator_resident" > "$OUT/samples.csv"

churn() { # churn PHASE SECONDS: both paths at once, half the slots each; fails on a wrong answer
  local half=$((CONNECTIONS / 2)) rc=0 p1 p2
  "$CHURN" "ws://127.0.0.1:$PORT/echo" --mode echo --connections "$half" --seconds "$2" --hold-ms "$HOLD" \
    > "$OUT/churn-$1-echo.log" 2>&1 &
  p1=$!
  "$CHURN" "ws://127.0.0.1:$PORT/ws" --mode realtime --connections "$half" --seconds "$2" --hold-ms "$HOLD" \
    > "$OUT/churn-$1-realtime.log" 2>&1 &
  p2=$!
  while kill -0 "$p1" 2> /dev/null || kill -0 "$p2" 2> /dev/null; do
    sample "$1"
    sleep 10
  done
  wait "$p1" || rc=1
  wait "$p2" || rc=1
  log "soak: $1 echo:     $(tail -n 1 "$OUT/churn-$1-echo.log")"
  log "soak: $1 realtime: $(tail -n 1 "$OUT/churn-$1-realtime.log")"
  [ "$rc" = 0 ] || die "a churn reported wrong answers (see $OUT/churn-$1-*.log)"
}

settle() { # settle PHASE
  local t=0
  while [ "$t" -lt "$SETTLE" ]; do sample "$1"; sleep 10; t=$((t + 10)); done
}

log "soak: zap serve (pid $SERVER_PID) on port $PORT; $CONNECTIONS slots, ${SECONDS_}s, hold $HOLD ms, settle ${SETTLE}s"
sample start
churn warmup 30
settle warmup-settle
read -r base_rss base_fds base_tasks <<< "$(rss_kib) $(fds) $(metric zapsocket_runtime_alive_tasks)"
base_heap="$(metric zapsocket_allocator_allocated_bytes)"
log "soak: baseline: RSS $((base_rss / 1024)) MiB, $base_fds fds, $base_tasks tasks"
churn churn "$SECONDS_"
peak_rss="$(awk -F, 'NR > 1 && $2 == "churn" && $3 > m { m = $3 } END { print m + 0 }' "$OUT/samples.csv")"
settle final-settle
read -r end_rss end_fds end_tasks end_conns <<< \
  "$(rss_kib) $(fds) $(metric zapsocket_runtime_alive_tasks) $(metric zapsocket_connections)"
end_heap="$(metric zapsocket_allocator_allocated_bytes)"
cycles="$(grep -h 'done in' "$OUT"/churn-churn-*.log | grep -o 'cycles [0-9]*' | awk '{ s += $2 } END { print s }')"

{
  echo "soak: $CONNECTIONS slots for ${SECONDS_}s (hold $HOLD ms): $cycles connections churned"
  echo "  RSS: baseline $((base_rss / 1024)) MiB, peak during churn $((peak_rss / 1024)) MiB, after $((end_rss / 1024)) MiB"
  [ -z "$base_heap" ] || echo "  heap (jemalloc's allocated bytes): baseline $((base_heap / 1024)) KiB, after $((end_heap / 1024)) KiB"
  echo "  fds: baseline $base_fds, after $end_fds; tasks: baseline $base_tasks, after $end_tasks; hub connections after: $end_conns"
} | tee "$OUT/summary.txt"

failed=0
if [ "$end_rss" -gt $((base_rss * 110 / 100)) ]; then log "soak: FAILED: RSS $end_rss KiB is over 110% of $base_rss KiB"; failed=1; fi
if [ "$end_fds" -gt "$base_fds" ]; then log "soak: FAILED: $end_fds fds open, $base_fds at the baseline"; failed=1; fi
if [ "$end_tasks" -gt "$base_tasks" ]; then log "soak: FAILED: $end_tasks tasks alive, $base_tasks at the baseline"; failed=1; fi
if [ "$end_conns" != 0 ]; then log "soak: FAILED: the hub still counts $end_conns connections"; failed=1; fi
[ "$failed" = 0 ] && echo "soak: ok"
exit "$failed"
