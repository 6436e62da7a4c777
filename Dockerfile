# syntax=docker/dockerfile:1
# Build:      docker build --build-arg VERSION=$(git describe --tags --always) -t statsig-populator .
# Multi-arch: docker buildx build --platform linux/amd64,linux/arm64 \
#               --build-arg VERSION=1.2.3 -t REGISTRY/statsig-populator:1.2.3 --push .
#
# Both base images are pinned by the digest of their multi-platform index, so
# a moved tag cannot change what is built; the tag stays for the reader. To
# update one, run `docker buildx imagetools inspect golang:1.26-bookworm` (or
# gcr.io/distroless/static-debian12:nonroot) and paste the top "Digest:" line,
# the index's, not one platform's manifest digest, after the "@sha256:".

# The build stage runs on the builder's own platform and cross-compiles for the
# target one: the binary is pure Go (CGO_ENABLED=0), so an arm64 image needs no
# emulation and builds as fast as an amd64 one.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm@sha256:a688600ca24f8a4d3ca77f95b0dd40704a9fc787c826660eb7ba0b641b8b175d AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY Makefile ./
COPY cmd ./cmd
COPY pkg ./pkg
# All of internal/: the binary imports more than one package from it
# (internal/wiring, and what subcommands such as the demo use).
COPY internal ./internal
ARG VERSION=dev
# Set by BuildKit from --platform (linux/arm64 -> linux, arm64); empty under a
# builder that does not set them, and Go then builds for the build platform.
ARG TARGETOS TARGETARCH
# The same target CI builds: a static, trimmed, version-stamped binary, for
# the platform of the image being built.
RUN GOOS=$TARGETOS GOARCH=$TARGETARCH make build VERSION=${VERSION}

# No --platform here: the runtime stage is the target platform's image.
FROM gcr.io/distroless/static-debian12:nonroot@sha256:afa5c872c891853ca7fcf1f12c3edb23f7eeef36189728842dd51042ff57f7ab
ARG VERSION=dev
LABEL org.opencontainers.image.title="statsig-populator" \
      org.opencontainers.image.source="https://github.com/statsig-populator/statsig-populator" \
      org.opencontainers.image.description="Keeps Statsig download_config_specs payloads current in Redis for SDK data adapters" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /src/bin/populator /populator
USER 65532:65532
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s CMD ["/populator", "healthcheck"]
ENTRYPOINT ["/populator"]
CMD ["run"]
