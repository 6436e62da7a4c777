#!/usr/bin/env bash
# The real-SDK compatibility suite: installs the pinned npm packages, then runs
# the Go tests of this module (they build the worker from the repository root,
# start redis-server, the fake CDN and the SDKs). Needs go, node, npm and
# redis-server on PATH. Exits non-zero when anything fails.
set -euo pipefail
cd "$(dirname "$0")"

for tool in go node npm redis-server; do
  command -v "$tool" >/dev/null 2>&1 || { echo "compat: $tool is not on PATH" >&2; exit 1; }
done

if [ -f package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
else
  npm install --no-audit --no-fund --loglevel=error
fi

go test -race -count=1 "$@" ./...
