#!/usr/bin/env bash
# make bench: every benchmark in tools/bench, one after the other, each
# printing its figures beside its reference (docs/PERFORMANCE.md).
set -uo pipefail
cd "$(dirname "$0")"
status=0
for b in engine.sh */run.sh; do
  [ -x "$b" ] || continue
  printf '\n######## %s\n' "$b"
  "./$b" || status=1
done
exit $status
