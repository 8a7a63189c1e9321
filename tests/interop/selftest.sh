#!/usr/bin/env bash
# selftest.sh - check the interop peers against each other, before zapsocket relies on them.
#
# Usage: tests/interop/selftest.sh        (after scripts/setup.sh)
# For each echo server (Node ws, Python websockets; with and without permessage-deflate):
# both echo clients run their scripted sequence against it, then a client sends
# "close-me" and must get close 4001 "server bye", and the server's stdout must log
# {"close":4000,"reason":"bye"} per scripted client and 4001 for the close-me one.
# Prints one line per check and a closing `peers: N passed, N failed`.
set -euo pipefail
DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$DIR"
. ../../scripts/interop-env.sh
[ "${ZAPSOCKET_INTEROP:-}" = 1 ] || { echo "selftest: peers not installed: run scripts/setup.sh" >&2; exit 1; }
NODE="$ZAPSOCKET_NODE"
PY="$ZAPSOCKET_PYTHON"
TMP="$(mktemp -d)"
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2> /dev/null || true; wait "$SERVER_PID" 2> /dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

passed=0
failed=0
check() { # check NAME CMD...: run CMD quietly, count and print the outcome
  local name="$1"; shift
  if "$@" > "$TMP/out" 2>&1; then
    passed=$((passed + 1)); echo "  ok    $name"
  else
    failed=$((failed + 1)); echo "  FAIL  $name"; sed 's/^/        /' "$TMP/out"
  fi
}

# A foreign client for the close-me rule (Python websockets).
close_me() {
  "$PY" - "$1" <<'EOF'
import asyncio, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main(url):
    async with connect(url, open_timeout=5, close_timeout=5) as ws:
        await ws.send("close-me")
        try:
            await asyncio.wait_for(ws.recv(), 5)
            sys.exit("got a message instead of the close")
        except ConnectionClosed:
            pass
        got = ws.protocol.close_rcvd
        if got is None or (int(got.code), got.reason) != (4001, "server bye"):
            sys.exit(f"wanted close 4001 'server bye', got {got}")

asyncio.run(main(sys.argv[1]))
EOF
}

# The server log must hold exactly the expected close lines, in any order.
server_log_ok() {
  local want got
  want="$(printf '%s\n' '{"close":4000,"reason":"bye"}' '{"close":4000,"reason":"bye"}' \
    '{"close":4000,"reason":"bye"}' '{"close":4000,"reason":"bye"}' '{"close":4001,"reason":"server bye"}' | sort)"
  got="$(grep '^{' "$TMP/server.out" | sort)"
  [ "$want" = "$got" ] || { echo "server log:"; cat "$TMP/server.out"; echo "wanted:"; echo "$want"; return 1; }
}

run_server() { # run_server LABEL CMD...
  local label="$1"; shift
  : > "$TMP/server.out"
  "$@" >> "$TMP/server.out" 2> "$TMP/server.err" &
  SERVER_PID=$!
  local i=0 port=""
  while [ -z "$port" ] && [ $i -lt 100 ]; do
    port="$(awk '/^listening /{print $2; exit}' "$TMP/server.out")"
    [ -n "$port" ] || { kill -0 "$SERVER_PID" 2> /dev/null || break; sleep 0.1; i=$((i + 1)); }
  done
  echo "$label"
  if [ -z "$port" ]; then
    failed=$((failed + 1)); echo "  FAIL  server did not print 'listening PORT'"; cat "$TMP/server.err"
  else
    local url="ws://127.0.0.1:$port/echo"
    check "node client"                        "$NODE" node/echo_client.mjs "$url"
    check "node client --no-compression"       "$NODE" node/echo_client.mjs --no-compression "$url"
    check "python client"                      "$PY" python/echo_client.py "$url"
    check "python client --no-compression"     "$PY" python/echo_client.py --no-compression "$url"
    check "close-me -> 4001 \"server bye\""    close_me "$url"
    sleep 0.2 # the server logs the close after its handshake ends
    check "server logged every close"          server_log_ok
  fi
  kill "$SERVER_PID" 2> /dev/null || true
  local rc=0
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  check "server exits 0 on SIGTERM" test "$rc" = 0
}

run_server "node echo_server.mjs"                      "$NODE" node/echo_server.mjs 0
run_server "node echo_server.mjs --no-compression"     "$NODE" node/echo_server.mjs --no-compression 0
run_server "python echo_server.py"                     "$PY" python/echo_server.py 0
run_server "python echo_server.py --no-compression"    "$PY" python/echo_server.py --no-compression 0

echo "peers: $passed passed, $failed failed"
[ "$failed" = 0 ]
