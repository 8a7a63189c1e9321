#!/usr/bin/env bash
# fuzz.sh - coverage-guided fuzzing of the targets in fuzz/, on stable Rust (docs/FUZZING.md).
#
# Usage: scripts/fuzz.sh [--fresh] TARGET|all [SECONDS]
#        scripts/fuzz.sh --list
#   TARGET   a target of fuzz/fuzz_targets (--list names them), or `all` (one after another)
#   SECONDS  how long to fuzz each target (default 300)
#   --fresh  start from the committed seeds alone, in target/fuzz/fresh/TARGET (wiped first);
#            without it, runs go on from the corpus earlier runs grew in target/fuzz/corpus/TARGET
#            (the seeds of fuzz/corpus/TARGET are copied in; fuzz/corpus itself is never written)
# Installs cargo-fuzz (pinned below) when missing, builds every target once with
# `cargo fuzz build --sanitizer none` (coverage instrumentation only: no nightly flag), then
# runs each target's libFuzzer binary, reading fuzz/regressions/TARGET too. Prints per target:
# executions, coverage at the start and the end (libFuzzer's cov = edges, ft = features),
# corpus size, and each finding with its input and how to reproduce it. Exit 1 on a finding.
# Logs: target/fuzz/logs/ (build.log, TARGET.log); crashing inputs: fuzz/artifacts/TARGET/.
# Env: ZAPSOCKET_FUZZ_ARGS (extra libFuzzer flags, e.g. "-max_len=8192").
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# The cargo-fuzz installed when missing (`cargo install --locked`).
CARGO_FUZZ_VERSION=0.13.2
WORK="$ROOT/target/fuzz"
LOGS="$WORK/logs"
BUILD_DIR="$ROOT/fuzz/target"

targets() { find fuzz/fuzz_targets -maxdepth 1 -name '*.rs' -printf '%f\n' | sed 's/\.rs$//' | sort; }

FRESH=0
ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --fresh) FRESH=1 ;;
    --list) targets; exit 0 ;;
    -h|--help) usage_of "$0"; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
[ "${#ARGS[@]}" -ge 1 ] && [ "${#ARGS[@]}" -le 2 ] || die "usage: scripts/fuzz.sh [--fresh] TARGET|all [SECONDS] (see --help)"
SECONDS_EACH="${ARGS[1]:-300}"
[[ "$SECONDS_EACH" =~ ^[1-9][0-9]*$ ]] || die "SECONDS must be a positive integer, got '$SECONDS_EACH'"
if [ "${ARGS[0]}" = all ]; then
  mapfile -t RUN < <(targets)
else
  targets | grep -qx "${ARGS[0]}" || die "no target '${ARGS[0]}' (targets: $(targets | tr '\n' ' '))"
  RUN=("${ARGS[0]}")
fi
mkdir -p "$LOGS"

# cargo-fuzz: installed when missing; another version already there is used as it is.
if ! cargo fuzz --version > /dev/null 2>&1; then
  log "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION (cargo install --locked, about a minute)"
  cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" > "$LOGS/install.log" 2>&1 || {
    tail -n 30 "$LOGS/install.log" >&2
    die "cargo install --locked cargo-fuzz --version $CARGO_FUZZ_VERSION failed (log: ${LOGS#"$ROOT"/}/install.log)"
  }
fi

# Every target in one build: instrumented (sancov), release with debug assertions and
# overflow checks, `--cfg fuzzing`. Its own target dir: the workspace's stays untouched.
t0=$(date +%s)
if ! cargo fuzz build --sanitizer none --target-dir "$BUILD_DIR" > "$LOGS/build.log" 2>&1; then
  tail -n 60 "$LOGS/build.log" >&2
  die "cargo fuzz build --sanitizer none failed (log: ${LOGS#"$ROOT"/}/build.log)"
fi
HOST="$(rustc -vV | sed -n 's/^host: //p')"
BIN_DIR="$BUILD_DIR/$HOST/release"
log "fuzz.sh: built $(targets | wc -l) targets in $(( $(date +%s) - t0 ))s; fuzzing ${#RUN[@]} for ${SECONDS_EACH}s each"

# field LOGLINE NAME: the number after "NAME: " in a libFuzzer status line ("?" if none).
field() {
  local n
  n="$(sed -n "s/.* $2: \([0-9]*\).*/\1/p" <<< "$1")"
  echo "${n:-?}"
}
# final_stat LOG NAME: a final stat (stat::NAME).
final_stat() { sed -n "s/^stat::$2: *\([0-9]*\)/\1/p" "$1" | tail -n 1; }
# corp LOGLINE: the corpus size (units) in a status line ("?" if none).
corp() {
  local n
  n="$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<< "$1")"
  echo "${n:-?}"
}

FINDINGS=()
fuzz_one() { # fuzz_one TARGET: runs it, prints its line; a finding is added to FINDINGS
  local t="$1" corpus seeds="fuzz/corpus/$1" artifacts="fuzz/artifacts/$1" tlog="$LOGS/$1.log"
  local extra=() dirs=() rc=0
  if [ "$FRESH" = 1 ]; then
    corpus="$WORK/fresh/$t"
    rm -rf "$corpus"
  else
    corpus="$WORK/corpus/$t"
  fi
  mkdir -p "$corpus" "$artifacts"
  # Seeds in (never overwriting what a run grew); libFuzzer writes new inputs to the first
  # folder only, so the committed seeds and regressions are read, not changed.
  local seed
  for seed in "$seeds"/*; do
    if [ -f "$seed" ] && [ ! -e "$corpus/${seed##*/}" ]; then cp "$seed" "$corpus/"; fi
  done
  dirs+=("$corpus")
  if [ -d "fuzz/regressions/$t" ]; then dirs+=("fuzz/regressions/$t"); fi
  # shellcheck disable=SC2206 # word splitting of the flags is wanted
  if [ -n "${ZAPSOCKET_FUZZ_ARGS:-}" ]; then extra=($ZAPSOCKET_FUZZ_ARGS); fi
  # -timeout: a single input taking longer is a hang (a finding); `timeout` is the backstop.
  timeout -k 10 $((SECONDS_EACH + 120)) "$BIN_DIR/$t" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
    -timeout=20 -artifact_prefix="$artifacts/" "${extra[@]+"${extra[@]}"}" "${dirs[@]}" > "$tlog" 2>&1 || rc=$?
  local start end
  start="$(grep -m1 -E '^#[0-9]+[[:space:]]+INITED' "$tlog" || true)"
  end="$(grep -E '^#[0-9]+[[:space:]].* cov: ' "$tlog" | tail -n 1 || true)"
  local execs rate verdict=ok
  execs="$(final_stat "$tlog" number_of_executed_units)"
  rate="$(final_stat "$tlog" average_exec_per_sec)"
  if [ "$rc" != 0 ]; then
    local input reason
    input="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$tlog" | tail -n 1)"
    reason="$(grep -m1 -A1 -E "panicked at" "$tlog" | tr '\n' ' ' | sed 's/^thread [^ ]* ([0-9]*) //; s/ *$//' || true)"
    [ -n "$reason" ] || reason="$(grep -m1 -oE 'ERROR: libFuzzer: .*|==[0-9]+== ERROR: .*' "$tlog" || true)"
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then reason="still running after $((SECONDS_EACH + 120))s: stopped"; fi
    verdict="FINDING"
    FINDINGS+=("$t|${input:-}|${reason:-exit $rc, see the log}")
  fi
  printf '   %-19s %4ss  %10s runs (%s/s)  cov %s -> %s  ft %s -> %s  corpus %s -> %s  %s\n' "$t" "$SECONDS_EACH" \
    "${execs:-?}" "${rate:-?}" "$(field "$start" cov)" "$(field "$end" cov)" "$(field "$start" ft)" \
    "$(field "$end" ft)" "$(corp "$start")" "$(corp "$end")" "$verdict"
}

for t in "${RUN[@]}"; do fuzz_one "$t"; done

if [ "${#FINDINGS[@]}" -eq 0 ]; then
  say_dirs="$([ "$FRESH" = 1 ] && echo "target/fuzz/fresh" || echo "target/fuzz/corpus")"
  echo "fuzz.sh: no findings (${#RUN[@]} targets, ${SECONDS_EACH}s each; grown corpora in $say_dirs/, logs in target/fuzz/logs/)"
  exit 0
fi
for f in "${FINDINGS[@]}"; do
  IFS='|' read -r t input reason <<< "$f"
  echo "fuzz.sh: FINDING in $t: $reason"
  if [ -n "$input" ]; then
    echo "   input:     $input"
    echo "   reproduce: cargo fuzz run --sanitizer none $t $input"
    echo "              (or: fuzz/target/$HOST/release/$t $input; FUZZ_TRACE=1 prints each step of connection)"
    echo "   minimize:  cargo fuzz tmin --sanitizer none $t $input"
  fi
  echo "   log:       target/fuzz/logs/$t.log"
done
echo "fuzz.sh: ${#FINDINGS[@]} finding(s); keep a real one as fuzz/regressions/TARGET/NAME (docs/FUZZING.md)"
exit 1
