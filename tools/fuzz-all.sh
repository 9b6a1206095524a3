#!/usr/bin/env bash
# make fuzz: run every Go fuzz target for a while (default 20s each).
# New crashers land in the package's testdata/fuzz and must be fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-20s}
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for fz in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | cut -d' ' -f2 | sort -u); do
    echo "== $pkg $fz ($t)"
    go test -run '^$' -fuzz "^${fz}\$" -fuzztime "$t" -fuzzminimizetime 1s "$pkg"
  done
done
