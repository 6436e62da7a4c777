# syntax=docker/dockerfile:1
# Build: docker build --build-arg VERSION=$(git describe --tags --always) -t statsig-populator .

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY Makefile ./
COPY cmd ./cmd
COPY pkg ./pkg
COPY internal/wiring ./internal/wiring
ARG VERSION=dev
# The same target CI builds: a static, trimmed, version-stamped binary.
RUN make build VERSION=${VERSION}

FROM gcr.io/distroless/static-debian12:nonroot
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
