#!/usr/bin/env bash
# test.sh - the whole test suite, on a fresh machine too (installs what it needs on first use).
#
# Usage: scripts/test.sh [--no-autobahn] [--only STEP[,STEP...]] [--skip STEP[,STEP...]] [--list]
# Steps, in order (each fails fast and names itself):
#   setup            scripts/setup.sh: interop peers (Node ws, Python websockets), Autobahn
#   peers            tests/interop/selftest.sh: the peers checked against each other
#   fmt              cargo fmt --all --check
#   layering         zapsocket-proto must not depend on tokio (cargo tree)
#   clippy           cargo clippy --workspace --all-targets -- -D warnings
#   test             cargo nextest run --workspace, the realtime and Redis tests again with
#                    the hub on the reactor (ZAP_HUB_HOST=reactor), cargo test --workspace --doc
#                    (cargo test --workspace without nextest), with the interop env below
#   fuzz             scripts/fuzz.sh --fresh all: every target of fuzz/ from its committed corpus
#                    (fuzz/corpus) for a bounded time, on stable Rust (cargo fuzz build
#                    --sanitizer none; installs cargo-fuzz when missing); and rustfmt on fuzz/,
#                    which is outside the workspace. docs/FUZZING.md
#   autobahn-server  scripts/autobahn.sh server quick  (`zap serve --deflate`, shipped defaults)
#   autobahn-reactor scripts/autobahn.sh reactor quick (the reactor server, example reactor_server)
#   autobahn-client  scripts/autobahn.sh client quick  (the default client; skipped until the
#                    example autobahn_client exists)
#   js               node --test on js/test (when js/test exists), then again against
#                    `zap serve --reactor` (ZAP_SERVE_ARGS), but for h2
# --only / --skip take step names, comma separated or repeated; `autobahn` means every
# autobahn step. --no-autobahn = --skip autobahn (and no Autobahn install).
# The test step sees ZAPSOCKET_INTEROP=1, ZAPSOCKET_INTEROP_DIR, ZAPSOCKET_NODE,
# ZAPSOCKET_NODE_MODULES and ZAPSOCKET_PYTHON (scripts/interop-env.sh).
# Env: ZAPSOCKET_REQUIRE_AUTOBAHN=1 fails (instead of skipping) when the Autobahn example is
# missing; ZAPSOCKET_NO_NEXTEST=1 uses cargo test even when nextest is installed;
# ZAPSOCKET_TEST_TIMEOUT (seconds, default 1800) bounds the test step;
# ZAPSOCKET_FUZZ_SECONDS (default 180) is the fuzz step's fuzzing time, shared by the
# targets (0 skips the step). With CI set (CI=true, as .ci/run runs it): CARGO_INCREMENTAL=0 and
# CARGO_PROFILE_DEV_DEBUG=line-tables-only unless they are set (a third of the disk of a fresh build).
# Quiet steps keep their output in target/test-logs/ and print it when they fail.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_STEPS=(setup peers fmt layering clippy test fuzz autobahn-server autobahn-reactor autobahn-client js)
ONLY=()
SKIP=()
NO_AUTOBAHN=0

add_steps() { # add_steps ARRAY_NAME "a,b"
  local -n into="$1"
  local item items=()
  IFS=, read -r -a items <<< "$2"
  for item in "${items[@]}"; do
    case "$item" in
      autobahn) into+=(autobahn-server autobahn-reactor autobahn-client) ;;
      *) [[ " ${ALL_STEPS[*]} " == *" $item "* ]] || die "unknown step '$item' (steps: ${ALL_STEPS[*]})"
         into+=("$item") ;;
    esac
  done
}

while [ $# -gt 0 ]; do
  case "$1" in
    --no-autobahn) NO_AUTOBAHN=1; add_steps SKIP autobahn ;;
    --only) [ $# -ge 2 ] || die "--only needs a step"; add_steps ONLY "$2"; shift ;;
    --only=*) add_steps ONLY "${1#--only=}" ;;
    --skip) [ $# -ge 2 ] || die "--skip needs a step"; add_steps SKIP "$2"; shift ;;
    --skip=*) add_steps SKIP "${1#--skip=}" ;;
    --list) printf '%s\n' "${ALL_STEPS[@]}"; exit 0 ;;
    -h|--help) usage_of "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

selected() { # selected STEP: is STEP to run?
  local s
  for s in "${SKIP[@]+"${SKIP[@]}"}"; do [ "$s" = "$1" ] && return 1; done
  [ "${#ONLY[@]}" -eq 0 ] && return 0
  for s in "${ONLY[@]}"; do [ "$s" = "$1" ] && return 0; done
  return 1
}

say() { printf '%s\n' "$*"; }
# Steps run in subshells: a skipped step notes itself in this file.
SKIP_NOTES="$LOG_DIR/skipped-steps.txt"
mkdir -p "$LOG_DIR"
: > "$SKIP_NOTES"
skip_step() { printf '%s\n' "$CURRENT" >> "$SKIP_NOTES"; say "   skipped: $*"; }

# ---- steps -------------------------------------------------------------------------------

step_setup() {
  local args=()
  [ "$NO_AUTOBAHN" = 1 ] && args+=(--no-autobahn)
  scripts/setup.sh "${args[@]+"${args[@]}"}"
}

# Steps that spawn the peers need them installed even when `setup` was not selected.
ensure_peers() {
  . scripts/interop-env.sh 2> /dev/null
  if [ "${ZAPSOCKET_INTEROP:-}" != 1 ]; then
    scripts/setup.sh --no-autobahn
    . scripts/interop-env.sh
  fi
  [ "${ZAPSOCKET_INTEROP:-}" = 1 ] || die "interop peers are not installed (scripts/setup.sh)"
}

step_peers() {
  ensure_peers
  quietly peers tests/interop/selftest.sh
  tail -n 1 "$LOG_DIR/peers.log"
}

step_fmt() {
  quietly fmt cargo fmt --all --check -- --color never || { log "run: cargo fmt --all"; return 1; }
}

step_layering() {
  local meta tree
  meta="$(cargo metadata --no-deps --format-version 1)"
  if ! grep -q '"name":"zapsocket-proto"' <<< "$meta"; then
    skip_step "no zapsocket-proto package"; return 0
  fi
  tree="$(cargo tree -q -p zapsocket-proto -e normal,build --target all --prefix none --format '{p}')"
  if grep -qE '^tokio ' <<< "$tree"; then
    log "zapsocket-proto depends on tokio (it must stay sans-IO); the path:"
    cargo tree -q -p zapsocket-proto -e normal,build --target all -i tokio >&2 || true
    return 1
  fi
  say "   zapsocket-proto: $(sort -u <<< "${tree// (\*)/}" | grep -c .) crates in its dependency tree, no tokio"
}

step_clippy() {
  quietly clippy cargo clippy --workspace --all-targets -- -D warnings
}

step_test() {
  ensure_peers
  export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
  # A hung test must not eat CI's whole budget: stop the run (and its children) after a bound.
  local limit=(timeout -k 30 "${ZAPSOCKET_TEST_TIMEOUT:-1800}")
  local rc=0
  if [ "${ZAPSOCKET_NO_NEXTEST:-0}" != 1 ] && cargo nextest --version > /dev/null 2>&1; then
    "${limit[@]}" cargo nextest run --workspace --cargo-quiet --status-level slow --no-tests warn || rc=$?
    if [ "$rc" = 0 ]; then
      say "   the realtime and Redis tests again, with the hub on the reactor (ZAP_HUB_HOST=reactor):"
      ZAP_HUB_HOST=reactor "${limit[@]}" cargo nextest run -p zapsocket-realtime -p zapsocket-redis \
        --cargo-quiet --status-level slow || rc=$?
    fi
    if [ "$rc" = 0 ]; then
      say "   doctests (nextest skips them):"
      "${limit[@]}" cargo test --workspace --doc -q || rc=$?
    fi
  else
    "${limit[@]}" cargo test --workspace -q || rc=$?
    if [ "$rc" = 0 ]; then
      ZAP_HUB_HOST=reactor "${limit[@]}" cargo test -p zapsocket-realtime -p zapsocket-redis -q || rc=$?
    fi
  fi
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    log "tests still running after ${ZAPSOCKET_TEST_TIMEOUT:-1800}s: stopped (ZAPSOCKET_TEST_TIMEOUT)"
  fi
  return "$rc"
}

step_fuzz() {
  local total="${ZAPSOCKET_FUZZ_SECONDS:-180}" count
  if [ ! -f fuzz/Cargo.toml ]; then skip_step "no fuzz/Cargo.toml"; return 0; fi
  [[ "$total" =~ ^[0-9]+$ ]] || die "ZAPSOCKET_FUZZ_SECONDS must be a number of seconds, got '$total'"
  if [ "$total" = 0 ]; then skip_step "ZAPSOCKET_FUZZ_SECONDS=0"; return 0; fi
  # fuzz/ is outside the workspace: `cargo fmt --all` does not see it.
  quietly fuzz-fmt cargo fmt --manifest-path fuzz/Cargo.toml --check -- --color never ||
    { log "run: cargo fmt --manifest-path fuzz/Cargo.toml"; return 1; }
  count="$(scripts/fuzz.sh --list | grep -c .)"
  # The fuzzing time split between the targets; what fuzz.sh prints on a finding (the input,
  # how to reproduce it) is shown with the rest of its log.
  quietly fuzz scripts/fuzz.sh --fresh all $(((total + count - 1) / count)) || return 1
  grep -E '^   ' "$LOG_DIR/fuzz.log"
}

autobahn_step() { # autobahn_step ROLE
  if [ "$1" = client ] && ! has_example autobahn_client; then
    [ "${ZAPSOCKET_REQUIRE_AUTOBAHN:-0}" = 1 ] && die "no example autobahn_client (ZAPSOCKET_REQUIRE_AUTOBAHN=1)"
    skip_step "no example autobahn_client in the workspace yet"
    return 0
  fi
  scripts/autobahn.sh "$1" quick
}
step_autobahn-server() { autobahn_step server; }
step_autobahn-reactor() { autobahn_step reactor; }
step_autobahn-client() { autobahn_step client; }

step_js() {
  if [ ! -d js/test ]; then skip_step "no js/test"; return 0; fi
  command -v node > /dev/null || die "node is needed for the js tests (scripts/setup.sh)"
  # Every script under a test/ folder is a test file to node --test; listing them works
  # on every Node version (a folder argument does not on Node >= 21).
  local files=()
  mapfile -t files < <(find js/test -type f \( -name '*.js' -o -name '*.mjs' -o -name '*.cjs' \) | sort)
  if [ "${#files[@]}" -eq 0 ]; then skip_step "js/test holds no test files"; return 0; fi
  node --test "${files[@]}"
  # Again against `zap serve --reactor`, but for what it lacks (HTTP/2).
  local reactor=()
  mapfile -t reactor < <(printf '%s\n' "${files[@]}" | grep -vE '/h2\.test\.')
  say "   again against zap serve --reactor (${#reactor[@]} files):"
  ZAP_SERVE_ARGS=--reactor node --test "${reactor[@]}"
}

# ---- runner ------------------------------------------------------------------------------

run=()
for s in "${ALL_STEPS[@]}"; do selected "$s" && run+=("$s"); done
[ "${#run[@]}" -gt 0 ] || die "no step selected"

# A one-off build (CI, a fresh clone) gains nothing from incremental state and full
# debuginfo, and they are most of its disk: target/debug took 12 GB with them, 3.3 GB without
# (and the test step 179 s instead of 321 s).
# Backtraces keep their file and line. Set either variable to keep cargo's default.
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
  export CARGO_PROFILE_DEV_DEBUG="${CARGO_PROFILE_DEV_DEBUG:-line-tables-only}"
fi
# A full disk fails a build with an error far from its cause: say how much room there is.
mkdir -p "$ROOT/target"
free_mb="$(df -Pm "$ROOT/target" | awk 'NR == 2 { print $4 }')"
say "test.sh: ${free_mb} MB free for target/ (a run from a fresh clone writes about 5 GB there)"
[ "${free_mb:-0}" -ge 3000 ] || log "test.sh: warning: little disk left; a build may fail with 'No space left on device'"

t_all=$(date +%s)
timings=()
i=0
for CURRENT in "${run[@]}"; do
  i=$((i + 1))
  say "==> [$i/${#run[@]}] $CURRENT"
  t0=$(date +%s)
  # not `( ... ) || rc=$?`: bash ignores set -e inside anything on the left of ||
  set +e
  ( set -e; "step_$CURRENT" )
  rc=$?
  set -e
  secs=$(( $(date +%s) - t0 ))
  if [ "$rc" != 0 ]; then
    passed="nothing"
    [ "${#timings[@]}" -eq 0 ] || passed="$(printf '%s, ' "${timings[@]}")"
    say "test.sh: FAILED at step '$CURRENT' (exit $rc, after ${secs}s); passed before it: ${passed%, }"
    say "test.sh: rerun that step alone with: scripts/test.sh --only $CURRENT"
    exit 1
  fi
  if grep -qx "$CURRENT" "$SKIP_NOTES"; then timings+=("$CURRENT skipped"); else timings+=("$CURRENT ${secs}s"); fi
done
summary="$(printf '%s, ' "${timings[@]}")"
say "test.sh: ok: ${#run[@]} steps in $(( $(date +%s) - t_all ))s (${summary%, })"
