# The static binary the container image runs, and the test entry point.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
GOFLAGS_BUILD := -trimpath -ldflags "-s -w -X main.version=$(VERSION)"

.PHONY: build test image clean

# bin/populator: statically linked (CGO_ENABLED=0), reproducible paths, version stamped.
build:
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o bin/populator ./cmd/populator

test:
	scripts/test.sh

image:
	docker build --build-arg VERSION=$(VERSION) -t statsig-populator:$(VERSION) .

clean:
	rm -rf bin
