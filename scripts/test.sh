#!/usr/bin/env bash
# The test command: everything `go test -race ./...` needs, then the tests.
# On a fresh Debian machine it installs redis-server first (the tests start
# their own redis-server processes on free ports; they never touch port 6379).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${need_apt[*]} with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

go vet ./...
go test -race -count=1 ./...
