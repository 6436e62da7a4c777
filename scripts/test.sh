#!/usr/bin/env bash
# The test command. On a fresh Debian machine it first installs what the tests
# need (redis-server; Node.js and npm for the real-SDK suite; make), then runs:
#   1. go vet and go test -race for the worker (tests start their own
#      redis-server processes on free ports and never touch port 6379);
#   2. the real-SDK compatibility suite (compat/run.sh);
#   3. the Helm chart tests (charts/test.sh), when the chart is present.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v make >/dev/null 2>&1 || missing+=(make) # the static build, as the image's build stage runs it
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing ${missing[*]} with apt-get"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

echo "== go vet and go test -race"
go vet ./...
go test -race -count=1 ./...

echo "== fuzzing (short runs; crashers land in testdata/fuzz and then run as regression cases)"
# Budgets are execution counts, not durations: with a -fuzztime duration, Go 1.26's
# fuzz coordinator can fail a target with a bare "context deadline exceeded" and
# no crasher when the deadline races a busy worker (golang/go#75804, fixed in 1.27).
# A count has no deadline to race. Each count is about 10 s at ~20k execs/s.
go test -run '^$' -fuzz '^FuzzValidate$' -fuzztime 300000x ./pkg/fetcher
go test -run '^$' -fuzz '^FuzzGunzip$' -fuzztime 150000x ./pkg/fetcher
go test -run '^$' -fuzz '^FuzzRetryAfter$' -fuzztime 100000x ./pkg/fetcher
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime 300000x ./pkg/config
go test -run '^$' -fuzz '^FuzzParseList$' -fuzztime 200000x ./pkg/keys
go test -run '^$' -fuzz '^FuzzParseManifest$' -fuzztime 150000x ./pkg/idlists

echo "== real-SDK compatibility suite"
compat/run.sh

if [ -x charts/test.sh ]; then
  echo "== Helm chart"
  charts/test.sh
fi

echo "== docker-compose.yml and .env.example (deploy/, a Go module of its own)"
(cd deploy && go vet ./... && go test -count=1 ./...)

echo "== static binary (the one the image runs)"
make build VERSION=ci-check
if ! go version -m bin/populator | grep -q "CGO_ENABLED=0"; then
  echo "bin/populator is not a static (CGO_ENABLED=0) build" >&2
  exit 1
fi
bin/populator version | grep -qx "populator ci-check"
