#!/usr/bin/env bash
# autobahn-full.sh - the pre-release conformance check: every Autobahn case (517), both sides,
# on what users get: `zap serve` with and without `--deflate`, the default client offering
# compression and offering none.
#
# Usage: scripts/autobahn-full.sh [--update]
# Runs `scripts/autobahn.sh ROLE all -v` for ROLE server and client, each with and without
# permessage-deflate (about 30 minutes a side with it on 2 cores: 12.*/13.* take most of it,
# wstest, one Python 2 core, is the bottleneck; a few minutes without). All four run even if
# one fails. Diffs with autobahn/expected/{server,client}{,-nodeflate}-all.json; --update
# rewrites them.
# Run it before a release and after any change to permessage-deflate. Not part of CI
# (scripts/test.sh runs the `quick` profile, 337 cases, ~2 minutes a side).
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

args=()
case "${1:-}" in
  "") ;;
  --update) args+=(--update) ;;
  -h|--help) usage_of "$0"; exit 0 ;;
  *) die "unknown argument $1 (see --help)" ;;
esac

t0=$(date +%s)
results=()
failed=0
for run in "server" "client" "server --no-deflate" "client --no-deflate"; do
  rc=0
  t1=$(date +%s)
  # shellcheck disable=SC2086 # $run is a role and maybe a flag
  scripts/autobahn.sh $run all -v "${args[@]+"${args[@]}"}" || rc=$?
  took="$(( $(date +%s) - t1 ))s"
  if [ "$rc" = 0 ]; then results+=("$run: ok ($took);"); else results+=("$run: FAILED ($took);"); failed=1; fi
done
echo "autobahn-full: ${results[*]} $(( $(date +%s) - t0 ))s in all; reports in target/autobahn/{server,client}{,-nodeflate}-all/"
exit "$failed"
