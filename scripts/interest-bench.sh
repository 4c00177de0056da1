#!/usr/bin/env bash
# interest-bench.sh — what the nodes without subscribers pay (issue 23, "Interest"): three
# cluster nodes on one redis-server of its own, all load (cmd/loadgen -scenario comment) and
# all WebSocket subscribers on node 1; prints each process's CPU time over the load
# (/proc/<pid>/stat utime+stime of the processes this script started) and the ratio
# (node 2 + node 3) / node 1, per run and as the median of the runs.
# Called by `make interest-bench`; see docs/benchmarks.md, Interest.
#
# Environment:
#   INTEREST_RUNS=3          runs (the median is reported)
#   INTEREST_DURATION=8s     measured load per run (after a 2s warm-up, counted too)
#   INTEREST_SUBS=100        subscribers of the room on node 1
#   INTEREST_CONC=32         loadgen workers
#   INTEREST_SERVER=bin/appserver   the roomengine binary (e.g. a build of main, for A/B)
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/benchlib.sh
. scripts/benchlib.sh
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

RUNS=${INTEREST_RUNS:-3}
DURATION=${INTEREST_DURATION:-8s}
SUBS=${INTEREST_SUBS:-100}
CONC=${INTEREST_CONC:-32}
SERVER=${INTEREST_SERVER:-bin/appserver}
LOADGEN=bin/loadgen
TOKEN=0123456789abcdef0123456789abcdef-interest

die() { echo "interest-bench: $*" >&2; exit 2; }
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 1 && RUNS <= 20)) || die "INTEREST_RUNS=$RUNS: want 1..20"
[[ $DURATION =~ ^[0-9]+(s|m)$ ]] || die "INTEREST_DURATION=$DURATION: want e.g. 8s"
[[ -x $SERVER ]] || die "$SERVER not found; run 'make build'"
command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
  die "needs redis-server and redis-cli (scripts/test-deps.sh redis-server)"
go build -o "$LOADGEN" ./cmd/loadgen

work=$(mktemp -d)
pids=()
redis_pid=""
cleanup() {
  for p in "${pids[@]}" $redis_pid; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}" $redis_pid; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

redis_port=$("$LOADGEN" -free-port)
redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$work" --save "" --appendonly yes \
  --appendfsync always --logfile "$work/redis.log" >/dev/null 2>&1 &
redis_pid=$!
for _ in $(seq 100); do redis-cli -p "$redis_port" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
redis-cli -p "$redis_port" ping | grep -q PONG || die "redis-server did not start"

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
ratios=()
echo "interest-bench: $RUNS runs of $DURATION, $CONC workers, $SUBS subscribers, all on node 1 of 3 ($SERVER)"
for ((run = 1; run <= RUNS; run++)); do
  redis-cli -p "$redis_port" flushall >/dev/null
  prefix="ib$RANDOM"
  pids=() ports=()
  for n in n1 n2 n3; do
    port=$("$LOADGEN" -free-port)
    env APPSERVER_IP=127.0.0.1 APPSERVER_PORT="$port" APPSERVER_LOG_LEVEL=warn APPSERVER_STORE=redis \
      APPSERVER_REDIS_HOST=127.0.0.1 APPSERVER_REDIS_PORT="$redis_port" APPSERVER_REDIS_KEYPREFIX="$prefix" \
      APPSERVER_ADMIN_TOKEN="$TOKEN" APPSERVER_CLUSTER_ENABLED=true APPSERVER_CLUSTER_NODE="$n" \
      "$SERVER" >>"$work/$n.log" 2>&1 &
    pids+=($!) ports+=("$port")
    "$LOADGEN" -addr "127.0.0.1:$port" -wait-ready 20s || die "$n did not become ready: $(tail -n 5 "$work/$n.log")"
  done
  before=($(cpu "${pids[0]}") $(cpu "${pids[1]}") $(cpu "${pids[2]}") $(cpu "$redis_pid"))
  line=$("$LOADGEN" -addr "127.0.0.1:${ports[0]}" -scenario comment -c "$CONC" -subs "$SUBS" -d "$DURATION" \
    -warmup 2s -json) || die "loadgen failed"
  after=($(cpu "${pids[0]}") $(cpu "${pids[1]}") $(cpu "${pids[2]}") $(cpu "$redis_pid"))
  d=()
  for i in 0 1 2 3; do d+=($((after[i] - before[i]))); done
  ratio=$(awk -v a="${d[0]}" -v b="$((d[1] + d[2]))" 'BEGIN { printf "%.3f", (a > 0 ? b / a : -1) }')
  ratios+=("$ratio")
  echo "run $run: CPU ticks node1 ${d[0]}, node2 ${d[1]}, node3 ${d[2]}, redis ${d[3]}; (node2+node3)/node1 $ratio;" \
    "$(jget rps <<<"$line") comments/s; load $(cut -d' ' -f1-3 /proc/loadavg)"
  for p in "${pids[@]}"; do kill -TERM "$p"; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
done
echo "interest-bench: median (node2+node3)/node1 = $(printf '%s\n' "${ratios[@]}" | median) (target ≤ 0.05)"
