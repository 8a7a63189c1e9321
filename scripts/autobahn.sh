#!/usr/bin/env bash
# autobahn.sh - run the Autobahn|Testsuite against zapsocket as shipped and diff with the expected results.
#
# Usage: scripts/autobahn.sh {server|reactor|client} [quick|all|core|compression|perf] [--no-deflate] [--update] [-v]
#   server   builds `zap` (release, the CLI users run) and starts `zap serve --port PORT --deflate`
#            on a free port, with every other setting at its default (64 MiB messages,
#            heartbeat on), then runs ../shared/conformance/server-suite.sh against it
#   reactor  the same against the reactor server (`zapsocket::reactor`):
#            `--example reactor_server PORT --deflate`, its defaults otherwise
#   client   builds `--example autobahn_client` (release: the default client, offering
#            permessage-deflate) and runs it as the driver of ../shared/conformance/client-suite.sh
#   profile  default quick (337 cases, ~2 min); all = 517 cases (~30 min; scripts/autobahn-full.sh)
#   --no-deflate  the server without `--deflate`, the client offering no compression: 12.*/13.*
#            are UNIMPLEMENTED, everything else must still pass (report and expected file
#            are named ROLE-nodeflate-PROFILE)
#   --update rewrite autobahn/expected/ROLE-PROFILE.json from this run's report
#   -v       stream the harness output (default: only its summary)
# Report: target/autobahn/ROLE-PROFILE/ (index.html, index.json, summary.txt, harness.log,
# and server.log for the server). The run fails when a case differs from
# autobahn/expected/ROLE-PROFILE.json, when a selected case is missing, or (whatever the
# expected file says) when a case in 1.*-10.* is not OK/INFORMATIONAL (scripts/autobahn_diff.py).
# Env: AUTOBAHN_TIMEOUT (seconds for the harness; default 900, 3600 for all/compression),
#      ZAPSOCKET_CONFORMANCE (harness folder, default ../shared/conformance).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROLE=""
PROFILE=quick
UPDATE=0
VERBOSE=0
DEFLATE=1
while [ $# -gt 0 ]; do
  case "$1" in
    server|reactor|client) [ -z "$ROLE" ] || die "one role only"; ROLE="$1" ;;
    quick|all|core|compression|perf) PROFILE="$1" ;;
    --update) UPDATE=1 ;;
    --no-deflate) DEFLATE=0 ;;
    -v|--verbose) VERBOSE=1 ;;
    -h|--help) usage_of "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done
[ -n "$ROLE" ] || { usage_of "$0" >&2; exit 2; }
need_conformance

case "$PROFILE" in all|compression) TIMEOUT="${AUTOBAHN_TIMEOUT:-3600}" ;; *) TIMEOUT="${AUTOBAHN_TIMEOUT:-900}" ;; esac
NAME="$ROLE-$PROFILE"
[ "$DEFLATE" = 1 ] || NAME="$ROLE-nodeflate-$PROFILE"
OUT="$ROOT/target/autobahn/$NAME"
EXPECTED="autobahn/expected/$NAME.json"
mkdir -p "$OUT"
HARNESS_LOG="$OUT/harness.log"

SERVER_PID=""
cleanup() { stop_pid "$SERVER_PID"; SERVER_PID=""; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# run_harness CMD...: run a suite script, its output streamed (-v) or kept in harness.log,
# then its summary; sets HARNESS_RC (0 ok, 1 failing/missing cases, 2+ harness error).
HARNESS_RC=0
run_harness() {
  HARNESS_RC=0
  if [ "$VERBOSE" = 1 ]; then
    "$@" 2>&1 | tee "$HARNESS_LOG" || HARNESS_RC=${PIPESTATUS[0]}
  else
    "$@" > "$HARNESS_LOG" 2>&1 || HARNESS_RC=$?
    if [ -f "$OUT/summary.txt" ]; then cat "$OUT/summary.txt"; fi
  fi
  if [ "$HARNESS_RC" -ge 2 ]; then
    [ "$VERBOSE" = 1 ] || tail -n 30 "$HARNESS_LOG" >&2
    log "autobahn: the harness failed (exit $HARNESS_RC; see ${HARNESS_LOG#"$ROOT"/})"
  fi
}

run_server_suite() {
  local exe port args
  port="$(free_port)" || die "no free port"
  if [ "$ROLE" = reactor ]; then
    exe="$(build_example reactor_server)" || die "could not build example reactor_server"
    args=("$port")
  else
    exe="$(build_bin zapsocket-cli zap)" || die "could not build zap"
    args=(serve --port "$port")
  fi
  [ "$DEFLATE" = 1 ] && args+=(--deflate)
  log "autobahn: ${exe##*/} ${args[*]}"
  RUST_BACKTRACE=1 "$exe" "${args[@]}" > "$OUT/server.log" 2>&1 &
  SERVER_PID=$!
  if ! wait_port "$port" 30 "$SERVER_PID"; then
    tail -n 30 "$OUT/server.log" >&2
    die "${exe##*/} did not listen on 127.0.0.1:$port within 30 s (log: ${OUT#"$ROOT"/}/server.log)"
  fi
  run_harness bash "$CONFORMANCE/server-suite.sh" -o "$OUT" -c "$PROFILE" -t "$TIMEOUT" \
    -a zapsocket "ws://127.0.0.1:$port"
  if ! kill -0 "$SERVER_PID" 2> /dev/null; then
    local status=0
    wait "$SERVER_PID" || status=$?
    SERVER_PID=""
    log "autobahn: ${exe##*/} exited during the run (status $status); last lines of its log:"
    tail -n 30 "$OUT/server.log" >&2
    HARNESS_RC=2
  fi
}

run_client_suite() {
  local exe
  has_example autobahn_client || die "the workspace has no example autobahn_client (see autobahn/README.md)"
  exe="$(build_example autobahn_client)" || die "could not build example autobahn_client"
  export AUTOBAHN_DEFLATE="$DEFLATE"
  run_harness bash "$CONFORMANCE/client-suite.sh" -o "$OUT" -c "$PROFILE" \
    -t "$TIMEOUT" -a zapsocket-client "$(printf '%q' "$exe")"
}

log "autobahn: $NAME -> ${OUT#"$ROOT"/}"
if [ "$ROLE" = client ]; then run_client_suite; else run_server_suite; fi
cleanup

# The harness exits 1 for FAILED or missing cases: the expected file decides about those.
diff_args=("$OUT" "$EXPECTED" --agent "$([ "$ROLE" = client ] && echo zapsocket-client || echo zapsocket)")
[ "$UPDATE" = 1 ] && diff_args+=(--update)
diff_rc=0
"$HOST_PYTHON" scripts/autobahn_diff.py "${diff_args[@]}" || diff_rc=$?
if [ "$diff_rc" = 1 ] && [ "$UPDATE" = 0 ] && [ "$HARNESS_RC" -lt 2 ]; then
  log "autobahn: to accept these results (policy violations need a code fix instead), review"
  log "  target/autobahn/$NAME/index.html, run 'scripts/autobahn.sh $ROLE $PROFILE$([ "$DEFLATE" = 1 ] || echo ' --no-deflate') --update'"
  log "  and commit $EXPECTED"
fi
if [ "$HARNESS_RC" -ge 2 ]; then exit 1; fi
[ "$diff_rc" = 0 ] || exit 1
