#!/usr/bin/env bash
# Soak: 1,000 keys × 2 versions with 10 changes a second for a while (default
# 10m), against a release build of the worker; reports memory, goroutines,
# CPU, fetches, writes and lcut regressions (must be 0).
#   scripts/soak.sh 30m
set -euo pipefail
cd "$(dirname "$0")/.."
duration="${1:-10m}"
E2E_NORACE=1 go test -count=1 -timeout 0 -run '^TestSoak$' -v ./faults -soak="$duration" | grep -E 'SOAK|^(---|ok|FAIL)'
