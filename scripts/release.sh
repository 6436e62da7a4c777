#!/usr/bin/env bash
# Builds the files of a release into dist/ (or $DIST):
#   populator_VERSION_{linux,darwin}_{amd64,arm64}   static binaries, stamped with VERSION
#   statsig-populator-<chart version>.tgz             the Helm chart, its appVersion (the default
#                                                     image tag) set to VERSION
#   SHA256SUMS                                        sha256sum lines for all of the above
#
#   scripts/release.sh 1.2.3
#   DIST=/tmp/out scripts/release.sh 1.2.3
#
# The container image is built and pushed separately (see the Dockerfile's header):
#   docker buildx build --platform linux/amd64,linux/arm64 --build-arg VERSION=1.2.3 \
#     -t REGISTRY/statsig-populator:1.2.3 --push .
# Needs Go (the chart is packaged with Helm's Go packages, from the charts/tests module, so no helm
# binary is needed) and sha256sum or shasum. charts/tests/release_test.go runs this script.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: scripts/release.sh VERSION   (e.g. 1.2.3; DIST=dir chooses the output directory)" >&2
  exit 2
fi
version=$1
# VERSION becomes part of file names, the binaries' `populator version`, the chart's appVersion
# and so the default image tag: allow only what a Docker tag allows.
if ! [[ $version =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]]; then
  echo "release.sh: VERSION '$version' must be letters, digits, '.', '_' or '-' (a valid image tag)" >&2
  exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
dist=${DIST:-$root/dist}
mkdir -p "$dist"
dist=$(cd "$dist" && pwd) # absolute: the chart is packaged from another directory

cd "$root"
files=()
for target in linux/amd64 linux/arm64 darwin/amd64 darwin/arm64; do
  os=${target%/*}
  arch=${target#*/}
  name="populator_${version}_${os}_${arch}"
  echo "building $name"
  # The flags of `make build` (static, trimmed, version-stamped), with the output named per
  # platform; charts/tests/release_test.go checks each binary's build settings.
  CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath \
    -ldflags "-s -w -X main.version=$version" -o "$dist/$name" ./cmd/populator
  files+=("$name")
done

echo "packaging the Helm chart"
chart=$(cd charts/tests && go run ./cmd/packagechart -app-version "$version" -out "$dist" ../statsig-populator)
files+=("$(basename "$chart")")

# Only this release's files, so stale ones from an earlier run in the same directory are not
# vouched for.
cd "$dist"
if command -v sha256sum >/dev/null 2>&1; then
  sha256sum -- "${files[@]}" >SHA256SUMS
else
  shasum -a 256 -- "${files[@]}" >SHA256SUMS # macOS; the same "digest  name" lines
fi
echo "wrote ${#files[@]} files and SHA256SUMS to $dist"
