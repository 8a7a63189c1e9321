# scripts/lib.sh - shell helpers sourced by the scripts in this folder (not run on its own).
# Sets ROOT (the repo root) and cds there, so every script works from any cwd.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1

# The Autobahn harness lives beside the repo (../shared/conformance) unless told otherwise.
CONFORMANCE="${ZAPSOCKET_CONFORMANCE:-$ROOT/../shared/conformance}"
# Logs of steps that are quiet on success (shown when they fail).
LOG_DIR="$ROOT/target/test-logs"
HOST_PYTHON="${ZAPSOCKET_HOST_PYTHON:-python3}"

log() { printf '%s\n' "$*" >&2; }
die() { printf '%s: error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# Print the comment block at the top of a script (its usage text).
usage_of() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$1"; }

# quietly LOGNAME CMD...: run CMD with its output in $LOG_DIR/LOGNAME.log; show the log if it fails.
quietly() {
  local name="$1"; shift
  mkdir -p "$LOG_DIR"
  local file="$LOG_DIR/$name.log"
  local rc=0
  "$@" > "$file" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] && return 0
  log "---- $name failed (exit $rc) ----"
  tail -n "${ZAPSOCKET_LOG_LINES:-200}" "$file" >&2
  log "---- full log: ${file#"$ROOT"/} ----"
  return "$rc"
}

need_conformance() {
  [ -f "$CONFORMANCE/server-suite.sh" ] && return 0
  die "Autobahn harness not found at $CONFORMANCE (expected ../shared/conformance beside the repo; or set ZAPSOCKET_CONFORMANCE)"
}

# has_example NAME: true when some workspace package declares the example target NAME.
has_example() {
  local meta
  meta="$(cargo metadata --no-deps --format-version 1)" || die "cargo metadata failed (is Cargo.toml valid?)"
  "$HOST_PYTHON" -c '
import json, sys
name = sys.argv[1]
meta = json.load(sys.stdin)
sys.exit(0 if any(name == t["name"] and "example" in t["kind"]
                  for p in meta["packages"] for t in p["targets"]) else 1)' "$1" <<< "$meta"
}

# build_example NAME: cargo build --release --example NAME; prints the executable's path.
build_example() { build_artifact example "$1" --example "$1"; }

# build_bin PACKAGE NAME: cargo build --release -p PACKAGE --bin NAME; prints its path.
build_bin() { build_artifact bin "$2" -p "$1" --bin "$2"; }

# build_artifact KIND NAME CARGO_ARGS...: a release build; prints the executable of target
# NAME of kind KIND (example, bin) from cargo's JSON messages.
build_artifact() {
  local kind="$1" name="$2" json
  shift 2
  mkdir -p "$LOG_DIR"
  json="$LOG_DIR/build-$name.json"
  # shellcheck disable=SC2016 # $1 and $@ are the inner sh's arguments
  quietly "build-$name" sh -c 'out="$1"; shift; cargo build --release "$@" --message-format=json-render-diagnostics > "$out"' \
    sh "$json" "$@" || die "cargo build --release $* failed"
  "$HOST_PYTHON" -c '
import json, sys
kind, name, exe = sys.argv[1], sys.argv[2], None
for line in open(sys.argv[3], encoding="utf-8"):
    if not line.startswith("{"):
        continue
    msg = json.loads(line)
    if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == name \
            and kind in msg["target"]["kind"] and msg.get("executable"):
        exe = msg["executable"]
if not exe:
    sys.exit("no executable for %s %s in cargo output" % (kind, name))
print(exe)' "$kind" "$name" "$json"
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  "$HOST_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_port PORT SECS PID: wait until 127.0.0.1:PORT accepts TCP; fail early if PID exits.
wait_port() {
  local port="$1" secs="$2" pid="$3" i=0
  while [ "$i" -lt $((secs * 10)) ]; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1; i=$((i + 1))
  done
  return 1
}

# stop_pid PID: SIGTERM, up to 5 s to exit, then SIGKILL.
stop_pid() {
  local pid="$1" i=0
  [ -n "$pid" ] || return 0
  kill "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
