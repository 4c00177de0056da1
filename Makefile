# roomengine — the two commands a newcomer needs are `make run` and `make test`.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)

GO       ?= go
PKGS     := ./...
FUZZTIME ?= 20s
BIN      := bin/appserver

.PHONY: run build cluster redis-cluster media-demo test test-deps unit fuzz fuzz-check lint bench bigroom-bench cluster-bench chaos \
	console-screenshot clean package package-check image deploy-test interest-bench

## run: build and start the server on :4000 (embedded store, WebSocket push, simulated CDN)
run: build
	./$(BIN) $(if $(CONFIG),-config $(CONFIG))

build:
	$(GO) build -o $(BIN) ./cmd/appserver

## cluster: one redis-server and three nodes on 127.0.0.1:4101-4103 sharing it; Ctrl-C stops them
## (installs redis-server when it is missing; see scripts/cluster.sh for the knobs).
## REDIS=sentinel: a primary, two replicas and three sentinels instead of one redis-server;
## REDIS=cluster: a Redis Cluster of three masters and three replicas.
REDIS ?= single
cluster: build
	@./scripts/test-deps.sh redis-server
	REDIS=$(REDIS) ./scripts/cluster.sh

## redis-cluster: a Redis Cluster (three masters, three replicas) and one node in single-node
## mode on it, on 127.0.0.1:4101; Ctrl-C stops them (scripts/cluster.sh REDIS=cluster).
redis-cluster: build
	@./scripts/test-deps.sh redis-server
	REDIS=cluster CLUSTER_NODES=1 CLUSTER_MODE=false ./scripts/cluster.sh

## media-demo: nginx-rtmp (docs/nginx-rtmp.conf) and the server with mix: ffmpeg on loopback;
## prints the commands that publish two test streams and watch their mix (docs/self-hosted.md)
media-demo: build
	@./scripts/test-deps.sh nginx libnginx-mod-rtmp ffmpeg
	./scripts/media-demo.sh

## test: install what the tests need, then vet, race-test everything, fuzz briefly and test
## what operators install (deploy-test)
test: test-deps lint unit fuzz-check deploy-test

# test-deps installs the Debian packages the tests use when they are missing (CI machines
# start fresh): Redis for the cluster store, nginx for the cluster-behind-nginx test,
# Chromium for the operator console's browser test, systemd for `systemd-analyze verify` of
# deploy/roomengine.service, nginx's rtmp module and ffmpeg for the self-hosted media tests
# (mix: ffmpeg), podman, lintian and ca-certificates for the image and the Debian packages
# (deploy-test). Nothing here is needed by `make run`.
test-deps:
	@./scripts/test-deps.sh redis-server nginx chromium systemd libnginx-mod-rtmp ffmpeg podman lintian ca-certificates

unit:
	$(GO) test -race -count=1 -timeout 20m $(PKGS)

## fuzz: run the fuzzers (request decoding, peer events) for FUZZTIME each (default 20s); new corpus entries go
## to PKG/testdata/fuzz (commit them), a stalled fuzzer fails (see scripts/fuzz.sh)
fuzz:
	GO=$(GO) FUZZTIME=$(FUZZTIME) FUZZKEEP=1 ./scripts/fuzz.sh

# fuzz-check is make test's fuzz step: the same run, leaving the checkout clean.
fuzz-check:
	GO=$(GO) FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	cd deploy && $(GO) vet ./...

## chaos: the nemesis test for CHAOS_DURATION (default 5m) of operations: three nodes killed,
## frozen and restarted under concurrent clients; the history is checked for linearizability.
## CHAOS_SEED replays a schedule; a failure leaves the porcupine visualization and the logs in
## CHAOS_OUT (default: a temporary folder named in the output). CHAOS_REDIS=sentinel runs the
## nodes on a Redis primary with two replicas and three sentinels, and kills and freezes the
## primary too; CHAOS_REDIS=cluster on a Redis Cluster (three masters, three replicas), and
## kills and freezes a master too. On Sentinel writes wait for both replicas
## (redis.waitReplicas 2); CHAOS_WAIT_REPLICAS=1 runs it with one (Sentinel only: on a Redis
## Cluster writes wait for the one replica of each master).
CHAOS_DURATION ?= 5m
chaos: test-deps
	ROOMENGINE_CHAOS_DURATION=$(CHAOS_DURATION) $(if $(CHAOS_SEED),ROOMENGINE_CHAOS_SEED=$(CHAOS_SEED)) \
	  $(if $(CHAOS_OUT),ROOMENGINE_CHAOS_OUT=$(CHAOS_OUT)) \
	  $(if $(CHAOS_REDIS),ROOMENGINE_CHAOS_REDIS=$(CHAOS_REDIS)) \
	  $(if $(CHAOS_WAIT_REPLICAS),ROOMENGINE_CHAOS_WAIT_REPLICAS=$(CHAOS_WAIT_REPLICAS)) \
	  $(GO) test -race -count=1 -timeout 60m -run '^TestClusterNemesis$$' -v ./cmd/appserver/

## bench: load-test a real server with the in-repo load generator and print the figures
bench: build
	./scripts/bench.sh

## bigroom-bench: big rooms (10,000 subscribers × 5 comments/s, 1,000 × 150/s, 1,000 × 500/s, 10,000 idle),
## roomengine against the minimal fan-out ceiling (cmd/ceiling) in the same run; ~10 min (BIGBENCH_* knobs)
bigroom-bench: build
	./scripts/bigroom-bench.sh

## console-screenshot: drive the operator console in headless Chromium and save docs/console.png
console-screenshot: test-deps
	$(GO) test -count=1 -run '^TestConsoleInChromium$$' ./cmd/appserver -args -console.screenshot=$(CURDIR)/docs/console.png

## cluster-bench: one node vs three cluster nodes on one redis-server (throughput, CPU per request over all
## processes), failover after kill -9 and SIGTERM
cluster-bench: build
	./scripts/cluster-bench.sh

## interest-bench: all load and subscribers on node 1 of 3: CPU of nodes 2 and 3 against node 1's
interest-bench: build
	./scripts/interest-bench.sh

## package: release archives (linux/amd64, linux/arm64, darwin/arm64), Debian packages
## (amd64, arm64) and SHA256SUMS in dist/ (docs/deploy.md); builds nfpm once, outside the repo
package:
	GO=$(GO) ./scripts/package.sh

## image: the container image roomengine:<version> and :latest (podman, or a running docker)
image:
	GO=$(GO) ./scripts/image.sh

## deploy-test: the deploy/ module's tests (its own go.mod): the Helm chart (helm lint and
## strict decoding of both modes), compose.yaml, the image (make image's script) and the
## packages (make package's script, reduced to the linux/arm64 archive and the amd64 .deb).
## No -race: the tests run tools and check files, and a race build of the Kubernetes types
## would only cost time.
deploy-test: test-deps
	cd deploy && $(GO) test -count=1 -timeout 30m ./...

## package-check: TestPackages on everything make package builds (three archives, two .deb)
package-check: test-deps
	cd deploy && ROOMENGINE_PACKAGE_FULL=1 $(GO) test -count=1 -timeout 30m -run '^TestPackages$$' -v ./...

clean:
	rm -rf bin dist
