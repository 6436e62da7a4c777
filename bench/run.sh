#!/usr/bin/env bash
# The performance harness, in one command:
#
#   bench/run.sh            quick mode: 100 and 1,000 keys, 2 change intervals (about 6 minutes)
#   bench/run.sh --full     full mode: 100, 1,000 and 10,000 keys, 8 change intervals, perf and
#                           strace profiles, a large-payload run; rewrites the generated sections
#                           of docs/performance.md (about 30 minutes)
#
# Any other argument goes to the driver (bench/cmd/bench), e.g. --only worker,floor,
# --worker-keys 100,1000,5000, --sdk-keys none, --interval 10s, --filler 16, --change-frac 0.02,
# --intervals 3, --repeat 3 (each scale point 3 times, interleaved, medians reported), --profile,
# --worker-env GOMAXPROCS=1 (extra environment for the worker),
# --doc docs/performance.md, --report-only.
# Results: bench/results/<mode>/{results.json,report.md,performance.png,profile-*.txt}, logs in
# bench/results/<mode>/logs/. Everything runs on loopback; redis-server instances are started on
# free ports (never 6379) and stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

mode=quick
args=()
for a in "$@"; do
  case "$a" in
    --quick) mode=quick ;;
    --full) mode=full ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    --*) args+=("-${a#--}") ;;
    *) args+=("$a") ;;
  esac
done

need=()
for tool in go node npm redis-server redis-cli curl; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ ${#need[@]} -gt 0 ]; then
  pkgs=()
  for t in "${need[@]}"; do
    case "$t" in
      redis-server|redis-cli) pkgs+=(redis-server) ;;
      node) pkgs+=(nodejs) ;;
      npm|curl) pkgs+=("$t") ;;
      go) echo "bench: Go is required (go.mod says which version)" >&2; exit 1 ;;
    esac
  done
  echo "bench: installing ${pkgs[*]} with apt-get" >&2
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${pkgs[@]}" >/dev/null
fi
for tool in perf strace; do
  command -v "$tool" >/dev/null 2>&1 || echo "bench: $tool not found: profiles will lack it (apt-get install linux-perf strace)" >&2
done
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time is required (apt-get install time)" >&2; exit 1; }

echo "bench: building" >&2
out=bench/.out/bin
mkdir -p "$out"
go build -o "$out/bench" ./bench/cmd/bench
go build -o "$out/fakecdn" ./bench/cmd/fakecdn
go build -o "$out/pollfloor" ./bench/cmd/pollfloor
go build -o "$out/inproc" ./bench/cmd/inproc
# The worker as `make build` makes it, but with its symbols (no -s -w) so perf can name functions.
CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=bench" -o "$out/populator" ./cmd/populator
if [ ! -d bench/node/node_modules/statsig-node ]; then
  (cd bench/node && npm ci --no-audit --no-fund --loglevel=error)
fi

exec "$out/bench" -mode "$mode" ${args[@]+"${args[@]}"}
