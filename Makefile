# roomengine — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

GO       ?= go
PKGS     := ./...
FUZZTIME ?= 10s
BIN      := bin/appserver

.PHONY: run build test test-deps unit fuzz lint bench chaos clean

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

## chaos: the nemesis test for CHAOS_DURATION (default 5m) of operations: three nodes killed,
## frozen and restarted under concurrent clients; the history is checked for linearizability.
## CHAOS_SEED replays a schedule; a failure leaves the porcupine visualization and the logs in
## CHAOS_OUT (default: a temporary folder named in the output).
CHAOS_DURATION ?= 5m
chaos: test-deps
	ROOMENGINE_CHAOS_DURATION=$(CHAOS_DURATION) $(if $(CHAOS_SEED),ROOMENGINE_CHAOS_SEED=$(CHAOS_SEED)) \
	  $(if $(CHAOS_OUT),ROOMENGINE_CHAOS_OUT=$(CHAOS_OUT)) \
	  $(GO) test -race -count=1 -timeout 60m -run '^TestClusterNemesis$$' -v ./cmd/appserver/

## bench: load-test a real server with the in-repo load generator and print the figures
bench: build
	./scripts/bench.sh

clean:
	rm -rf bin
