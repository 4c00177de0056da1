# roomengine — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

GO       ?= go
PKGS     := ./...
FUZZTIME ?= 10s
BIN      := bin/appserver

.PHONY: run build test test-deps unit fuzz lint bench cluster-bench clean

## run: build and start the server on :4000 (embedded store, WebSocket push, simulated CDN)
run: build
	./$(BIN) $(if $(CONFIG),-config $(CONFIG))

build:
	$(GO) build -o $(BIN) ./cmd/appserver

## test: install what the tests need, then vet, race-test everything and fuzz briefly
test: test-deps lint unit fuzz

# test-deps installs the Debian packages the tests use when they are missing (CI machines
# start fresh). Nothing here is needed by `make run`.
test-deps:
	@./scripts/test-deps.sh redis-server

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## fuzz: run the request-decoding fuzzer for FUZZTIME (default 10s)
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeParams$$' -fuzztime $(FUZZTIME) ./http/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

## bench: load-test a real server with the in-repo load generator and print the figures
bench: build
	./scripts/bench.sh

## cluster-bench: one node vs three cluster nodes on one redis-server, failover after kill -9 and SIGTERM
cluster-bench: build
	./scripts/cluster-bench.sh

clean:
	rm -rf bin
