# The static binary the container image runs, and the test entry point.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOFLAGS_BUILD := -trimpath -ldflags "-s -w -X main.version=$(VERSION)"

.PHONY: build test test-unit image clean

# bin/populator: statically linked (CGO_ENABLED=0), reproducible paths, version stamped.
build:
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o bin/populator ./cmd/populator

test:
	scripts/test.sh

# The quick suite: needs only Go and a redis-server on PATH (tests start their own on free ports).
test-unit:
	go vet ./... && go test -race ./pkg/... ./internal/...

image:
	docker build --build-arg VERSION=$(VERSION) -t statsig-populator:$(VERSION) .

clean:
	rm -rf bin
