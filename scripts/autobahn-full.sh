#!/usr/bin/env bash
# autobahn-full.sh - the pre-release conformance check: every Autobahn case (517), both sides.
#
# Usage: scripts/autobahn-full.sh [--update]
# Runs `scripts/autobahn.sh server all -v`, then `scripts/autobahn.sh client all -v`
# (about 30 minutes each on 2 cores: 12.*/13.* permessage-deflate cases take most of it;
# wstest, one Python 2 core, is the bottleneck). Both run even if the first fails.
# Diffs with autobahn/expected/{server,client}-all.json; --update rewrites them.
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
for role in server client; do
  rc=0
  scripts/autobahn.sh "$role" all -v "${args[@]+"${args[@]}"}" || rc=$?
  if [ "$rc" = 0 ]; then results+=("$role ok"); else results+=("$role FAILED"); failed=1; fi
done
echo "autobahn-full: ${results[*]} ($(( $(date +%s) - t0 ))s; reports in target/autobahn/{server,client}-all/)"
exit "$failed"
