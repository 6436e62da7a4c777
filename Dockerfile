# syntax=docker/dockerfile:1
# Build: docker build --build-arg VERSION=$(git describe --tags --always) -t statsig-populator .

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY cmd ./cmd
COPY pkg ./pkg
COPY internal ./internal
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/populator ./cmd/populator

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="statsig-populator" \
      org.opencontainers.image.description="Keeps Statsig download_config_specs payloads current in Redis for SDK data adapters" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/populator /populator
USER nonroot:nonroot
ENTRYPOINT ["/populator"]
CMD ["run"]
