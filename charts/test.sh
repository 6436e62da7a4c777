#!/usr/bin/env bash
# Runs the Helm chart's tests (charts/tests, a Go module of its own that uses Helm's Go packages,
# the code behind `helm lint` and `helm template`, so no helm binary is needed):
#   lint of every values file, golden renderings, property checks of every combination, the
#   schema and template checks, the chart's defaults against the worker's, the README values table.
#
#   charts/test.sh           run the tests
#   charts/test.sh -update   rewrite the golden files and the README values table, then review the diff
#   charts/test.sh -run TestSchema -v   any other `go test` flags are passed through
#
# Needs Go (see charts/tests/go.mod) and redis-server on PATH (the dashboard test scrapes a real worker); the first run downloads Helm's modules from the Go module
# proxy and compiles them (a minute or two), later runs take seconds.
set -euo pipefail
cd "$(dirname "$0")/tests"

go vet ./...
go test -count=1 ./... "$@"
