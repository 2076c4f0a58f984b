#!/usr/bin/env bash
# Runs every Go fuzz target in the module for the given time each
# (default 10s). Go runs one fuzz target per invocation, so we list them.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-10s}
found=0
for pkg in $(go list ./...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    found=$((found + 1))
    echo "== fuzz $pkg $f ($t)"
    go test -count=1 -run '^$' -fuzz "^${f}\$" -fuzztime "$t" "$pkg"
  done
done
echo "fuzzed $found targets"
