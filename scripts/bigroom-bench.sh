#!/usr/bin/env bash
# bigroom-bench.sh — big rooms: roomengine against the minimal fan-out ceiling (cmd/ceiling),
# measured in the same run with the same open-loop generator (cmd/loadgen -rate / -idle).
# Called by `make bigroom-bench`; see docs/benchmarks.md, Big rooms.
#
# For every run and every load, the ceiling and roomengine each get a fresh server on a free
# loopback port, one after the other; the order alternates between runs so drift of a
# shared machine hits both alike. The summary gives medians over the runs and the ratio
# roomengine / ceiling of each figure, and is also written to bench/results/bigroom-latest.md.
#
# Environment:
#   BIGBENCH_RUNS=3              runs per load (medians are reported)
#   BIGBENCH_DURATION=10s        measured time per run
#   BIGBENCH_WARMUP=3s           load before measuring
#   BIGBENCH_LOADS="10000x5 1000x150 1000x500 idle10000"   SUBSxRATE (comments/s) or idleSUBS
#   BIGBENCH_SERVERS="ceiling roomengine"                   which servers; "cluster" is three roomengine
#                                nodes on one redis-server (started here), the subscribers spread
#                                over them, e.g. BIGBENCH_SERVERS="roomengine cluster" BIGBENCH_LOADS="9000x5 idle9000"
#   BIGBENCH_SERVER=bin/appserver                           the roomengine binary (e.g. a build of main)
#   BIGBENCH_GOMAXPROCS=         when set, the servers' GOMAXPROCS
#   BIGBENCH_CONCURRENCY=64      the generator's request workers (-c): an open loop whose
#                                round trip exceeds CONCURRENCY/rate queues without bound
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/benchlib.sh
. scripts/benchlib.sh
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

RUNS=${BIGBENCH_RUNS:-3}
DURATION=${BIGBENCH_DURATION:-10s}
WARMUP=${BIGBENCH_WARMUP:-3s}
LOADS=${BIGBENCH_LOADS:-10000x5 1000x150 1000x500 idle10000}
SERVERS=${BIGBENCH_SERVERS:-ceiling roomengine}
SERVER=${BIGBENCH_SERVER:-bin/appserver}
CONCURRENCY=${BIGBENCH_CONCURRENCY:-64}
LOADGEN=bin/loadgen
CEILING=bin/ceiling
OUT_DIR=bench/results

die() { echo "bigroom-bench: $*" >&2; exit 2; }
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 1 && RUNS <= 50)) || die "BIGBENCH_RUNS=$RUNS: want 1..50"
[[ $CONCURRENCY =~ ^[0-9]+$ ]] && ((CONCURRENCY >= 1 && CONCURRENCY <= 4096)) || die "BIGBENCH_CONCURRENCY=$CONCURRENCY: want 1..4096"
for d in "$DURATION" "$WARMUP"; do
  [[ $d =~ ^[0-9]+(ms|s|m)$ ]] || die "duration '$d': want e.g. 500ms, 10s or 2m"
done
for l in $LOADS; do
  [[ $l =~ ^[0-9]+x[0-9]+$ || $l =~ ^idle[0-9]+$ ]] || die "load '$l': want SUBSxRATE (10000x5) or idleSUBS (idle10000)"
done
for s in $SERVERS; do
  [[ $s == ceiling || $s == roomengine || $s == cluster ]] || die "server '$s': want ceiling, roomengine or cluster"
done
if [[ " $SERVERS " == *" cluster "* ]]; then
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null ||
    die "the cluster needs redis-server and redis-cli (scripts/test-deps.sh redis-server)"
fi
[[ -x $SERVER ]] || die "$SERVER not found; run 'make build'"
need_fds=$(($(for l in $LOADS; do echo "${l//[^0-9x]/}" | cut -dx -f1; done | sort -n | tail -n 1) + 1024))
if (($(ulimit -n) < need_fds)); then
  ulimit -n "$need_fds" 2>/dev/null || die "open files limit $(ulimit -n) is below $need_fds (ulimit -n)"
fi

echo "bigroom-bench: building $LOADGEN and $CEILING"
go build -o "$LOADGEN" ./cmd/loadgen
go build -o "$CEILING" ./cmd/ceiling

work=$(mktemp -d "${TMPDIR:-/tmp}/roomengine-bigbench.XXXXXX")
server_pids=() server_addr="" server_log="" redis_pid="" redis_port=""

# stop_pid PID: SIGTERM a process this script started, SIGKILL after 20 s.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null || true
}
stop_server() {
  local pid
  for pid in "${server_pids[@]}"; do stop_pid "$pid"; done
  server_pids=()
}
cleanup() {
  stop_server
  [[ -z $redis_pid ]] || stop_pid "$redis_pid"
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_redis: a redis-server for the cluster on a free loopback port (no persistence: the
# benchmark measures the push path, and the cluster's comments write no room state).
start_redis() {
  local i
  redis_port=$("$LOADGEN" -free-port)
  mkdir -p "$work/redis"
  redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$work/redis" --save "" --appendonly no \
    --protected-mode yes --logfile "$work/redis/redis.log" >/dev/null 2>&1 &
  redis_pid=$!
  for ((i = 0; i < 100; i++)); do
    redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG && return 0
    sleep 0.1
  done
  die "redis-server did not start"
}

# start_server KIND: a fresh ceiling, roomengine or three-node cluster on free loopback
# ports, ready; server_addr is its -addr for the generator.
start_server() {
  local kind=$1 attempt data port n addrs
  for attempt in 1 2 3; do
    data=$(mktemp -d "$work/data.XXXXXX")
    server_log="$data.log"
    addrs=()
    case $kind in
    ceiling)
      port=$("$LOADGEN" -free-port)
      env ${BIGBENCH_GOMAXPROCS:+GOMAXPROCS=$BIGBENCH_GOMAXPROCS} "$CEILING" -addr "127.0.0.1:$port" >"$server_log" 2>&1 &
      server_pids+=($!) addrs+=("127.0.0.1:$port")
      ;;
    roomengine)
      port=$("$LOADGEN" -free-port)
      env ${BIGBENCH_GOMAXPROCS:+GOMAXPROCS=$BIGBENCH_GOMAXPROCS} \
        APPSERVER_IP=127.0.0.1 APPSERVER_PORT=$port APPSERVER_DATADIR=$data \
        APPSERVER_LOG_LEVEL=warn "$SERVER" >"$server_log" 2>&1 &
      server_pids+=($!) addrs+=("127.0.0.1:$port")
      ;;
    cluster)
      [[ -n $redis_pid ]] || start_redis
      redis-cli -h 127.0.0.1 -p "$redis_port" flushall >/dev/null
      local prefix="bb$RANDOM$RANDOM"
      for n in n1 n2 n3; do
        port=$("$LOADGEN" -free-port)
        env ${BIGBENCH_GOMAXPROCS:+GOMAXPROCS=$BIGBENCH_GOMAXPROCS} \
          APPSERVER_IP=127.0.0.1 APPSERVER_PORT=$port APPSERVER_LOG_LEVEL=warn \
          APPSERVER_STORE=redis APPSERVER_REDIS_HOST=127.0.0.1 APPSERVER_REDIS_PORT=$redis_port \
          APPSERVER_REDIS_KEYPREFIX=$prefix APPSERVER_CLUSTER_ENABLED=true APPSERVER_CLUSTER_NODE=$n \
          "$SERVER" >>"$server_log" 2>&1 &
        server_pids+=($!) addrs+=("127.0.0.1:$port")
      done
      ;;
    esac
    server_addr=$(IFS=,; echo "${addrs[*]}")
    if "$LOADGEN" -addr "$server_addr" -wait-ready 30s 2>/dev/null; then
      return 0
    fi
    tail -n 5 "$server_log" >&2 || true
    stop_server
  done
  die "could not start $kind"
}


mkdir -p "$OUT_DIR"
raw="$work/runs.jsonl"
: >"$raw"
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
failed=0

for ((run = 1; run <= RUNS; run++)); do
  order=$SERVERS
  ((run % 2 == 0)) && order=$(tr ' ' '\n' <<<"$SERVERS" | tac | tr '\n' ' ')
  for load in $LOADS; do
    for kind in $order; do
      if [[ $load == idle* ]]; then
        subs=${load#idle}
        args=(-subs "$subs" -idle)
      else
        subs=${load%x*}
        args=(-subs "$subs" -rate "${load#*x}" -c "$CONCURRENCY" -d "$DURATION" -warmup "$WARMUP")
      fi
      echo
      echo "== $load on $kind — run $run/$RUNS (load average $(cut -d' ' -f1 /proc/loadavg))"
      start_server "$kind"
      la=$(cut -d' ' -f1 /proc/loadavg)
      if line=$("$LOADGEN" -addr "$server_addr" -scenario comment "${args[@]}" -json 2> >(sed 's/^/   /' >&2)); then
        echo "{\"load\":\"$load\",\"server\":\"$kind\",\"run\":$run,\"loadavg\":$la,${line#\{}" >>"$raw"
      else
        echo "bigroom-bench: loadgen failed for $load on $kind (run $run); server log:" >&2
        tail -n 20 "$server_log" >&2 || true
        failed=1
      fi
      stop_server
    done
  done
done

# med LOAD SERVER FIELD: the median of FIELD over the runs.
med() { grep "\"load\":\"$1\",\"server\":\"$2\"" "$raw" | while read -r l; do jget "$3" <<<"$l"; done | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || b == 0) print "—"; else printf "%.2f", a / b }'; }
num() { [[ $1 == n/a ]] && echo "n/a" || printf "%.${2:-1}f" "$1"; }

rev=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
git diff --quiet HEAD -- 2>/dev/null || rev="$rev (+ local changes)"
summary="$work/summary.md"
{
  echo "# big rooms: roomengine vs the fan-out ceiling — $started_at"
  echo
  echo "- commit $rev, server $SERVER, $(go version | cut -d' ' -f3), $(nproc) CPUs; generator on the same machine"
  echo "- $RUNS run(s) per load, ${DURATION} measured after ${WARMUP} warm-up, $CONCURRENCY request workers; medians; load average per run in the lines below"
  echo
  echo "| load | server | delivery p50 / p99 ms | request p99 ms | frames/s | complete | server cores | server µs/frame | loadgen cores |"
  echo "|---|---|---|---:|---:|---|---:|---:|---:|"
  for load in $LOADS; do
    [[ $load == idle* ]] && continue
    for kind in $SERVERS; do
      n=$(grep -c "\"load\":\"$load\",\"server\":\"$kind\"" "$raw" || true)
      incomplete=$(grep "\"load\":\"$load\",\"server\":\"$kind\"" "$raw" | grep -c '"frames_complete":false' || true)
      complete="yes"
      ((incomplete > 0)) && complete="no ($incomplete/$n)"
      echo "| $load | $kind | $(num "$(med "$load" "$kind" delivery_p50_ms)") / $(num "$(med "$load" "$kind" delivery_p99_ms)") |" \
        "$(num "$(med "$load" "$kind" p99_ms)") | $(num "$(med "$load" "$kind" frames_per_s)" 0) | $complete |" \
        "$(num "$(med "$load" "$kind" server_cpu_cores)" 2) | $(num "$(med "$load" "$kind" server_cpu_us_per_frame)" 2) |" \
        "$(num "$(med "$load" "$kind" client_cpu_cores)" 2) |"
    done
  done
  if grep -q '"server":"ceiling"' "$raw" && grep -q '"server":"roomengine"' "$raw"; then
    echo
    echo "Ratios roomengine / ceiling (of the medians):"
    echo
    echo "| load | delivery p99 | request p99 | frames/s | server µs/frame |"
    echo "|---|---:|---:|---:|---:|"
    for load in $LOADS; do
      [[ $load == idle* ]] && continue
      echo "| $load | $(ratio "$(med "$load" roomengine delivery_p99_ms)" "$(med "$load" ceiling delivery_p99_ms)") |" \
        "$(ratio "$(med "$load" roomengine p99_ms)" "$(med "$load" ceiling p99_ms)") |" \
        "$(ratio "$(med "$load" roomengine frames_per_s)" "$(med "$load" ceiling frames_per_s)") |" \
        "$(ratio "$(med "$load" roomengine server_cpu_us_per_frame)" "$(med "$load" ceiling server_cpu_us_per_frame)") |"
    done
  fi
  if grep -q '"server":"cluster"' "$raw" && grep -q '"server":"roomengine"' "$raw"; then
    echo
    echo "Ratios cluster (three nodes, all their CPU) / one roomengine node:"
    echo
    echo "| load | delivery p99 | request p99 | frames/s | server µs/frame |"
    echo "|---|---:|---:|---:|---:|"
    for load in $LOADS; do
      [[ $load == idle* ]] && continue
      echo "| $load | $(ratio "$(med "$load" cluster delivery_p99_ms)" "$(med "$load" roomengine delivery_p99_ms)") |" \
        "$(ratio "$(med "$load" cluster p99_ms)" "$(med "$load" roomengine p99_ms)") |" \
        "$(ratio "$(med "$load" cluster frames_per_s)" "$(med "$load" roomengine frames_per_s)") |" \
        "$(ratio "$(med "$load" cluster server_cpu_us_per_frame)" "$(med "$load" roomengine server_cpu_us_per_frame)") |"
    done
  fi
  for load in $LOADS; do
    [[ $load == idle* ]] || continue
    echo
    echo "Idle, ${load#idle} subscribers (server memory per connection, medians):"
    echo
    echo "| server | RSS KiB | Go heap KiB | stacks KiB | goroutines |"
    echo "|---|---:|---:|---:|---:|"
    for kind in $SERVERS; do
      echo "| $kind | $(num "$(med "$load" "$kind" rss_per_conn_kib)") | $(num "$(med "$load" "$kind" heap_per_conn_kib)") |" \
        "$(num "$(med "$load" "$kind" stack_per_conn_kib)") | $(num "$(med "$load" "$kind" goroutines_per_conn)" 2) |"
    done
  done
  echo
  echo "Per-run figures (loadgen -json lines):"
  echo
  echo '```'
  cat "$raw"
  echo '```'
} >"$summary"

cp "$summary" "$OUT_DIR/bigroom-latest.md"
echo
cat "$summary"
echo
echo "bigroom-bench: written to $OUT_DIR/bigroom-latest.md"
exit "$failed"
