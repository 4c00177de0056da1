#!/usr/bin/env bash
# cluster-bench.sh — measures cluster mode on this machine, everything on loopback:
#
#   (a) one node: store redis, cluster off;
#   (b) three nodes in cluster mode on the same redis-server, the load generator spreading
#       its workers over them (cmd/loadgen -addr a,b,c: worker i → node i mod 3);
#       for each scenario (comment, play), CBENCH_RUNS runs of (a) and (b) alternating;
#       medians and the ratio (b)/(a);
#   (cost) CPU per request over ALL server processes (every node and redis-server, from
#       /proc/<pid>/stat over the loadgen's measured window; the load generator excluded):
#       one node, three nodes, three nodes with cluster.secret set (signed peer messages),
#       and, for comment, all load and one WebSocket subscriber on node 1 of 3 (the CPU of
#       nodes 2 and 3 as a fraction of node 1's: what the nodes without subscribers pay);
#       alternating with the throughput runs, medians;
#   (c) failover after kill -9: CBENCH_FAILOVER_TRIALS times, a room is created through one
#       node (its owner, checked with GET /admin/cluster), that node is killed with SIGKILL,
#       and a play of the room (an audience write: only its owner makes it) is sent through
#       another node every 50 ms until one succeeds; then the node is restarted under its
#       name. Median and max.
#   (d) hand-over on SIGTERM: CBENCH_TERM_TRIALS times, the same with SIGTERM; reports the
#       time until a play through another node succeeds, until /admin/cluster names a new
#       owner, and until the process has exited.
#
# A redis-server of its own is started on a free loopback port (appendonly yes,
# appendfsync always, no RDB snapshots) in a temporary directory. Only processes this
# script started are signalled, by PID; a trap stops them all on any exit. Every loop is
# bounded in count and time. The summary goes to stdout and bench/results/cluster-latest.md.
# See docs/benchmarks.md, section "Cluster".
#
# Environment:
#   CBENCH_PARTS="throughput cost failover term"   which parts, in order
#   CBENCH_RUNS=3              runs per configuration and scenario (medians reported)
#   CBENCH_DURATION=8s         measured time per run
#   CBENCH_WARMUP=2s           load before measuring, excluded from the figures
#   CBENCH_CONCURRENCY=63      load generator workers (a multiple of 3 spreads evenly)
#   CBENCH_SCENARIOS="comment play"
#   CBENCH_FAILOVER_TRIALS=10  kill -9 trials
#   CBENCH_TERM_TRIALS=5       SIGTERM trials
#   CBENCH_TTL=3s              cluster.memberTTL of the nodes
#   CBENCH_SERVER=bin/appserver
#   CBENCH_SECRET=...          cluster.secret of the signed configuration (cost part)
#   CBENCH_PPROF=DIR           cost part: also take a CPU profile of every node (debug.pprofAddr)
#                              and Redis INFO commandstats during each three-node run, into DIR
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/benchlib.sh
. scripts/benchlib.sh
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

PARTS=${CBENCH_PARTS:-throughput cost failover term}
RUNS=${CBENCH_RUNS:-3}
DURATION=${CBENCH_DURATION:-8s}
WARMUP=${CBENCH_WARMUP:-2s}
CONC=${CBENCH_CONCURRENCY:-63}
SCENARIOS=${CBENCH_SCENARIOS:-comment play}
FO_TRIALS=${CBENCH_FAILOVER_TRIALS:-10}
TERM_TRIALS=${CBENCH_TERM_TRIALS:-5}
TTL=${CBENCH_TTL:-3s}
SERVER=${CBENCH_SERVER:-bin/appserver}
SECRET=${CBENCH_SECRET:-cluster-bench-secret-0123456789abcdef0123456789}
PPROF_DIR=${CBENCH_PPROF:-}
LOADGEN=bin/loadgen
OUT_DIR=bench/results
ADMIN_TOKEN=cluster-bench-admin-token-0123456789abcdef
POLL_LIMIT_S=30 # no wait below lasts longer than this

die() { echo "cluster-bench: $*" >&2; exit 2; }
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 1 && RUNS <= 50)) || die "CBENCH_RUNS=$RUNS: want 1..50"
[[ $FO_TRIALS =~ ^[0-9]+$ ]] && ((FO_TRIALS <= 100)) || die "CBENCH_FAILOVER_TRIALS=$FO_TRIALS: want 0..100"
[[ $TERM_TRIALS =~ ^[0-9]+$ ]] && ((TERM_TRIALS <= 100)) || die "CBENCH_TERM_TRIALS=$TERM_TRIALS: want 0..100"
[[ $CONC =~ ^[0-9]+$ ]] && ((CONC >= 1)) || die "CBENCH_CONCURRENCY=$CONC: want a positive integer"
for d in "$DURATION" "$WARMUP" "$TTL"; do
  [[ $d =~ ^[0-9]+(ms|s|m)$ ]] || die "duration '$d': want e.g. 500ms, 10s or 2m"
done
for s in $SCENARIOS; do
  [[ $s == comment || $s == play ]] || die "unknown scenario '$s' (want comment, play)"
done
for p in $PARTS; do
  [[ $p == throughput || $p == cost || $p == failover || $p == term ]] || die "unknown part '$p' (want throughput, cost, failover, term)"
done
[[ -x $SERVER ]] || die "$SERVER not found; run 'make build'"
command -v redis-server >/dev/null || die "redis-server is not on PATH (scripts/test-deps.sh redis-server installs it)"
command -v redis-cli >/dev/null || die "redis-cli is not on PATH (Debian package redis-tools)"
command -v curl >/dev/null || die "curl is not on PATH"

echo "cluster-bench: building $LOADGEN"
go build -o "$LOADGEN" ./cmd/loadgen

work=$(mktemp -d "${TMPDIR:-/tmp}/roomengine-cbench.XXXXXX")
redis_pid="" redis_port=""
declare -A NODE_PID=() NODE_PORT=() NODE_LOG=() NODE_PPROF=()
prefix=""
signed=0 # start_node: set cluster.secret

now() { echo "$EPOCHREALTIME"; } # seconds, microsecond resolution
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
# alive PID: the process runs (an exited child not yet reaped is a zombie: not alive).
alive() { kill -0 "$1" 2>/dev/null && [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) != Z ]]; }

# stop_pid PID SIGNAL: signal a process this script started, wait up to 20 s, then SIGKILL.
stop_pid() {
  local pid=$1 sig=${2:-TERM} i
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  if alive "$pid"; then
    echo "cluster-bench: process $pid still running 20s after SIG$sig; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || true
}

stop_node() { # name [signal]
  local name=$1 pid=${NODE_PID[$1]:-}
  [[ -n $pid ]] || return 0
  unset "NODE_PID[$name]"
  stop_pid "$pid" "${2:-TERM}"
}

stop_all_nodes() {
  local n
  for n in "${!NODE_PID[@]}"; do stop_node "$n"; done
}

cleanup() {
  stop_all_nodes
  if [[ -n $redis_pid ]]; then stop_pid "$redis_pid" TERM; redis_pid=""; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_redis() {
  local attempt i
  mkdir -p "$work/redis"
  for attempt in 1 2 3 4 5; do
    redis_port=$("$LOADGEN" -free-port)
    redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$work/redis" --save "" \
      --appendonly yes --appendfsync always --protected-mode yes \
      --logfile "$work/redis/redis.log" >/dev/null 2>&1 &
    redis_pid=$!
    for ((i = 0; i < 100; i++)); do
      if redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null | grep -q PONG; then
        echo "cluster-bench: redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1:$redis_port (pid $redis_pid, appendonly yes, appendfsync always)"
        return 0
      fi
      alive "$redis_pid" || break
      sleep 0.1
    done
    stop_pid "$redis_pid" KILL
    redis_pid=""
  done
  die "could not start redis-server"
}

# fresh_store: a new key prefix (and an empty database) for the next set of nodes.
fresh_store() {
  redis-cli -h 127.0.0.1 -p "$redis_port" flushall >/dev/null
  prefix="cb$RANDOM$RANDOM"
}

# start_node NAME MODE [PORT]: MODE is single (store redis, cluster off) or cluster.
start_node() {
  local name=$1 mode=$2 port=${3:-} attempt
  for attempt in 1 2 3; do
    [[ -n $port ]] || port=$("$LOADGEN" -free-port)
    local log="$work/$name.$port.log"
    local env=(APPSERVER_IP=127.0.0.1 APPSERVER_PORT="$port" APPSERVER_LOG_LEVEL=warn
      APPSERVER_STORE=redis APPSERVER_REDIS_HOST=127.0.0.1 APPSERVER_REDIS_PORT="$redis_port"
      APPSERVER_REDIS_KEYPREFIX="$prefix" APPSERVER_ADMIN_TOKEN="$ADMIN_TOKEN")
    if [[ $mode == cluster ]]; then
      env+=(APPSERVER_CLUSTER_ENABLED=true APPSERVER_CLUSTER_NODE="$name" APPSERVER_CLUSTER_MEMBERTTL="$TTL")
      ((signed)) && env+=(APPSERVER_CLUSTER_SECRET="$SECRET")
    fi
    NODE_PPROF[$name]=""
    if [[ -n $PPROF_DIR ]]; then
      NODE_PPROF[$name]=127.0.0.1:$("$LOADGEN" -free-port)
      env+=(APPSERVER_DEBUG_PPROFADDR="${NODE_PPROF[$name]}")
    fi
    env "${env[@]}" "$SERVER" >>"$log" 2>&1 &
    NODE_PID[$name]=$! NODE_PORT[$name]=$port NODE_LOG[$name]=$log
    if "$LOADGEN" -addr "127.0.0.1:$port" -wait-ready "${POLL_LIMIT_S}s" 2>/dev/null; then
      return 0
    fi
    echo "cluster-bench: $name did not become ready on port $port (attempt $attempt); log:" >&2
    tail -n 5 "$log" >&2 || true
    stop_node "$name" KILL
    port=""
  done
  die "could not start $name"
}

addr_of() { echo "127.0.0.1:${NODE_PORT[$1]}"; }

# api NODE PATH JSON: POST JSON to a node; prints the answer; exit 0 when the envelope is 200.
api() {
  local out
  out=$(curl -s -m 2 -H 'Content-Type: application/json' -d "$3" "http://$(addr_of "$1")$2" 2>/dev/null) || return 1
  printf '%s' "$out"
  [[ $out == '{"code":200,'* ]]
}
data_field() { sed -n 's/.*"'"$1"'":"\([^"]*\)".*/\1/p' | head -n 1; }

# owner_via NODE ROOM: the room's owner as GET /admin/cluster on NODE names it.
owner_via() {
  curl -s -m 2 -H "Authorization: Bearer $ADMIN_TOKEN" \
    "http://$(addr_of "$1")/admin/cluster?roomId=$2" 2>/dev/null | sed -n 's/.*"owner":"\([^"]*\)".*/\1/p' || true
}

maxof() { grep -E '^-?[0-9.eE+-]+$' | sort -g | tail -n 1 | grep . || echo n/a; }
minof() { grep -E '^-?[0-9.eE+-]+$' | sort -g | head -n 1 | grep . || echo n/a; }
secs() { [[ $1 == n/a ]] && echo n/a || printf "%.2f" "$1"; }
fmt_int() {
  [[ $1 == n/a ]] && { echo n/a; return; }
  awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); n = ""
    while (length(s) > 3) { n = "," substr(s, length(s) - 2) n; s = substr(s, 1, length(s) - 3) }
    print s n }'
}
fmt2() { [[ $1 == n/a || $1 == -1 ]] && echo "?" || printf "%.2f" "$1"; }
fmt1() { [[ $1 == n/a || $1 == -1 ]] && echo "?" || printf "%.1f" "$1"; }
ratio_of() { [[ $1 == n/a || $2 == n/a || $1 == -1 || $2 == -1 ]] && echo "?" || awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
# procs_of LINE: the -cpu-pids entries of a loadgen -json line, one a line, in -cpu-pids order.
procs_of() { sed -n 's/.*"procs":\[{\([^]]*\)}\].*/\1/p' <<<"$1" | sed 's/},{/\n/g'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"; }

mkdir -p "$OUT_DIR"
raw="$work/runs.jsonl" fo="$work/failover.tsv" term="$work/term.tsv"
: >"$raw"; : >"$fo"; : >"$term"
failed=0
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_start=$(loadavg)
loads=()

start_redis

# ---- (a)/(b) throughput and (cost) ----------------------------------------------------
declare -A LG_FLAGS=([comment]="-scenario comment" [play]="-scenario play")
# pids_of NODE...: the nodes' pids and redis-server's, comma-separated, in that order.
pids_of() {
  local n out=""
  for n in "$@"; do out+="${NODE_PID[$n]},"; done
  echo "$out$redis_pid"
}
secs_of() { # a duration (500ms, 8s, 2m) in whole seconds, at least 1
  local d=$1
  case $d in
    *ms) echo $(((${d%ms} + 999) / 1000)) ;; *s) echo "${d%s}" ;; *m) echo $((${d%m} * 60)) ;;
  esac | awk '{ print ($1 < 1 ? 1 : $1) }'
}
# profile ID NODE...: during the measured window, a CPU profile of each node (its
# debug.pprofAddr) and Redis's INFO commandstats, into PPROF_DIR. Runs in the background.
profile() {
  local id=$1 n secs; shift
  secs=$(($(secs_of "$DURATION") - 1)); ((secs >= 1)) || secs=1
  sleep "$(secs_of "$WARMUP")"
  redis-cli -h 127.0.0.1 -p "$redis_port" config resetstat >/dev/null
  for n in "$@"; do
    curl -s -m $((secs + 10)) -o "$PPROF_DIR/$id.$n.prof" \
      "http://${NODE_PPROF[$n]}/debug/pprof/profile?seconds=$secs" &
  done
  wait
  redis-cli -h 127.0.0.1 -p "$redis_port" info commandstats >"$PPROF_DIR/$id.redis-commandstats.txt"
  redis-cli -h 127.0.0.1 -p "$redis_port" info cpu >>"$PPROF_DIR/$id.redis-commandstats.txt"
}
run_load() { # id addrs scenario run pids [more loadgen flags]
  local id=$1 addrs=$2 s=$3 run=$4 pids=$5 line; shift 5
  loads+=("$(loadavg)")
  # shellcheck disable=SC2086 # LG_FLAGS holds several flags on purpose
  if line=$("$LOADGEN" -addr "$addrs" ${LG_FLAGS[$s]} -c "$CONC" -d "$DURATION" -warmup "$WARMUP" \
    -cpu-pids "$pids" "$@" -json 2> >(sed 's/^/   /' >&2)); then
    echo "{\"id\":\"$id\",\"run\":$run,\"loadavg\":\"$(loadavg)\",${line#\{}" >>"$raw"
  else
    echo "cluster-bench: loadgen failed for $id run $run" >&2
    failed=1
  fi
}
# measure CFG SCENARIO RUN: one run of one configuration:
#   single  one node, store redis, cluster off
#   cluster three nodes, the load spread over them
#   signed  the same with cluster.secret set (every peer message signed)
#   sub1    three nodes, all load and one WebSocket subscriber of the room on n1
measure() {
  local cfg=$1 s=$2 run=$3 ppid="" what nodes=(n1 n2 n3)
  case $cfg in
    single) what="one node (store redis, cluster off)"; nodes=(single) ;;
    cluster) what="three nodes (cluster)" ;;
    signed) what="three nodes (cluster, cluster.secret set)" ;;
    sub1) what="three nodes, all load and 1 subscriber on n1" ;;
  esac
  echo
  echo "== $s, $what — run $run/$RUNS (load $(loadavg))"
  fresh_store
  signed=0; [[ $cfg == signed ]] && signed=1
  local n
  for n in "${nodes[@]}"; do start_node "$n" "$([[ $cfg == single ]] && echo single || echo cluster)"; done
  signed=0
  if [[ -n $PPROF_DIR ]]; then
    profile "$cfg-$s-run$run" "${nodes[@]}" &
    ppid=$!
  fi
  case $cfg in
    single) run_load "single-$s" "$(addr_of single)" "$s" "$run" "$(pids_of single)" ;;
    cluster | signed) run_load "$cfg-$s" "$(addr_of n1),$(addr_of n2),$(addr_of n3)" "$s" "$run" "$(pids_of n1 n2 n3)" ;;
    sub1) run_load "sub1-$s" "$(addr_of n1)" "$s" "$run" "$(pids_of n1 n2 n3)" -subs 1 ;;
  esac
  [[ -z $ppid ]] || wait "$ppid" || true
  stop_all_nodes
}
configs=""
[[ " $PARTS " == *" throughput "* || " $PARTS " == *" cost "* ]] && configs="single cluster"
[[ " $PARTS " == *" cost "* ]] && configs+=" signed sub1"
[[ -z $PPROF_DIR ]] || mkdir -p "$PPROF_DIR"
if [[ -n $configs ]]; then
  for ((run = 1; run <= RUNS; run++)); do
    for s in $SCENARIOS; do
      for cfg in $configs; do
        [[ $cfg == sub1 && $s != comment ]] && continue # only comments push
        measure "$cfg" "$s" "$run"
      done
    done
  done
fi

# ---- (c)/(d) failover ------------------------------------------------------------------
# make_room NODE TAG: logs in a host through NODE, creates and publishes a room through it;
# prints "ROOM VIEWER".
make_room() {
  local node=$1 tag=$2 host viewer room
  host=$(api "$node" /login "{\"name\":\"cb-host-$prefix-$tag\"}" | data_field id) || return 1
  viewer=$(api "$node" /login "{\"name\":\"cb-viewer-$prefix-$tag\"}" | data_field id) || return 1
  room=$(api "$node" /live/create "{\"uid\":\"$host\",\"desc\":\"cluster-bench $tag\"}" | data_field roomId) || return 1
  curl -s -m 2 "http://$(addr_of "$node")/ali/stream/notify?action=publish&id=$room" >/dev/null || return 1
  [[ -n $room && -n $viewer ]] || return 1
  echo "$room $viewer"
}
# play_ok is the failover probe: a play writes the room's audience, which only its owner does
# (a comment is served by any node without its owner, docs/cluster.md).
play_ok() { # node room viewer
  api "$1" /live/play "{\"uid\":\"$3\",\"roomId\":\"$2\"}" >/dev/null
}

cluster_up() {
  fresh_store
  start_node n1 cluster; start_node n2 cluster; start_node n3 cluster
}

# trial KIND I: one kill -9 (KIND=kill) or SIGTERM (KIND=term) trial; appends a line to
# the kind's table.
trial() {
  local kind=$1 i=$2 names=(n1 n2 n3)
  local victim=${names[$((i % 3))]} via=${names[$(((i + 1) % 3))]}
  local rv room viewer owner pid port t0 t_comment="" t_owner="" t_exit="" t newowner="" attempts=0
  rv=$(make_room "$victim" "$kind$i") || { echo "cluster-bench: trial $i: setup failed" >&2; failed=1; return 0; }
  read -r room viewer <<<"$rv"
  owner=$(owner_via "$via" "$room")
  if [[ $owner != "$victim" ]]; then
    echo "cluster-bench: trial $i: room $room created through $victim is owned by '$owner'; signalling the owner" >&2
    [[ -n ${NODE_PID[$owner]:-} ]] || { echo "cluster-bench: trial $i: no such node; skipped" >&2; failed=1; return 0; }
    victim=$owner
    [[ $via == "$victim" ]] && via=${names[$(((i + 2) % 3))]}
  fi
  play_ok "$via" "$room" "$viewer" || { echo "cluster-bench: trial $i: play before the fault failed" >&2; failed=1; return 0; }
  pid=${NODE_PID[$victim]} port=${NODE_PORT[$victim]}
  loads+=("$(loadavg)")
  t0=$(now)
  if [[ $kind == kill ]]; then kill -KILL "$pid"; else kill -TERM "$pid"; fi
  while :; do
    t=$(now)
    if [[ $(elapsed "$t0" "$t" | cut -d. -f1) -ge $POLL_LIMIT_S ]]; then break; fi
    if [[ -z $t_comment ]]; then
      attempts=$((attempts + 1))
      play_ok "$via" "$room" "$viewer" && t_comment=$(elapsed "$t0" "$(now)")
    fi
    if [[ $kind == term ]]; then
      if [[ -z $t_owner ]]; then
        newowner=$(owner_via "$via" "$room")
        [[ -n $newowner && $newowner != "$victim" ]] && t_owner=$(elapsed "$t0" "$(now)")
      fi
      if [[ -z $t_exit ]] && ! alive "$pid"; then t_exit=$(elapsed "$t0" "$(now)"); fi
      [[ -n $t_comment && -n $t_owner && -n $t_exit ]] && break
    else
      [[ -n $t_comment ]] && break
    fi
    sleep 0.05
  done
  [[ $kind == kill ]] && newowner=$(owner_via "$via" "$room")
  # Reap the process; one still draining after the poll limit is stopped (bounded).
  unset "NODE_PID[$victim]"
  local rc=0
  if alive "$pid" && [[ $kind == term ]]; then
    echo "cluster-bench: trial $i: $victim still running ${POLL_LIMIT_S}s after SIGTERM" >&2
    stop_pid "$pid" KILL
    rc="?"
  else
    wait "$pid" 2>/dev/null || rc=$?
  fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$victim" "$via" "${t_comment:-none}" "$attempts" \
    "${newowner:-?}" "${t_owner:-none}" "${t_exit:-none}" "$rc" >>"$([[ $kind == kill ]] && echo "$fo" || echo "$term")"
  echo "   trial $i: SIG$([[ $kind == kill ]] && echo KILL || echo TERM) $victim (pid $pid), probe through $via:" \
    "play ok after ${t_comment:-none} s ($attempts attempts), owner now ${newowner:-?}" \
    "$([[ $kind == term ]] && echo "(moved after ${t_owner:-none} s), exited after ${t_exit:-none} s, status $rc")"
  [[ -n $t_comment ]] || failed=1
  # Restart under the same name and port (it rejoins once its old membership has lapsed).
  start_node "$victim" cluster "$port"
}

if [[ " $PARTS " == *" failover "* ]] && ((FO_TRIALS > 0)); then
  echo
  echo "== failover after kill -9: $FO_TRIALS trials, memberTTL $TTL (load $(loadavg))"
  cluster_up
  for ((i = 1; i <= FO_TRIALS; i++)); do trial kill "$i"; done
  stop_all_nodes
fi
if [[ " $PARTS " == *" term "* ]] && ((TERM_TRIALS > 0)); then
  echo
  echo "== hand-over on SIGTERM: $TERM_TRIALS trials, memberTTL $TTL (load $(loadavg))"
  cluster_up
  for ((i = 1; i <= TERM_TRIALS; i++)); do trial term "$i"; done
  stop_all_nodes
fi

# ---- summary -----------------------------------------------------------------------------
rev=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
git diff --quiet HEAD -- 2>/dev/null || rev="$rev (+ local changes)"
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
col() { cut -f"$1" "$2" | grep -v '^none$' || true; }
summary="$work/summary.md"
declare -A T=()
{
  echo "# roomengine cluster benchmark — $started_at"
  echo
  echo "- commit $rev, $(go version | cut -d' ' -f3), $(nproc) CPUs (${cpu_model:-unknown}); nodes, redis-server and load generator on the same machine"
  echo "- redis-server $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), appendonly yes, appendfsync always; memberTTL $TTL"
  echo "- load average at the start: $load_start; at the end: $(loadavg); 1-minute load at each run/trial start: $(printf '%s\n' "${loads[@]:-}" | cut -d' ' -f1 | tr '\n' ' ')"
  if [[ " $PARTS " == *" throughput "* ]]; then
    echo "- throughput: $RUNS run(s) per configuration and scenario, alternating one node / three nodes, ${DURATION} measured after ${WARMUP} warm-up, $CONC workers; medians"
    echo
    echo "| scenario | one node req/s | three nodes req/s | ratio | one node p50 / p99 ms | three nodes p50 / p99 ms | errors (1 / 3) | server cores (1 / 3) |"
    echo "|---|---:|---:|---:|---|---|---|---|"
    for s in $SCENARIOS; do
      declare -A M=()
      for cfg in single cluster; do
        lines=$(grep "\"id\":\"$cfg-$s\"" "$raw" || true)
        for k in rps p50_ms p99_ms server_cpu_cores; do
          M[$cfg.$k]=$(while read -r l; do [[ -n $l ]] && jget "$k" <<<"$l"; done <<<"$lines" | median)
        done
        M[$cfg.errors]=$(while read -r l; do [[ -n $l ]] && jget errors <<<"$l"; done <<<"$lines" | awk '{n += $1} END {print n + 0}')
      done
      ratio=n/a
      [[ ${M[single.rps]} != n/a && ${M[cluster.rps]} != n/a ]] &&
        ratio=$(awk -v a="${M[single.rps]}" -v b="${M[cluster.rps]}" 'BEGIN { printf "%.2f", b / a }')
      echo "| $s | $(fmt_int "${M[single.rps]}") | $(fmt_int "${M[cluster.rps]}") | $ratio |" \
        "$(fmt2 "${M[single.p50_ms]}") / $(fmt2 "${M[single.p99_ms]}") | $(fmt2 "${M[cluster.p50_ms]}") / $(fmt2 "${M[cluster.p99_ms]}") |" \
        "${M[single.errors]} / ${M[cluster.errors]} | $(fmt2 "${M[single.server_cpu_cores]}") / $(fmt2 "${M[cluster.server_cpu_cores]}") |"
      unset M
    done
    echo
    echo "Per node, three nodes (medians over the runs; the first node created the room and owns it):"
    echo
    echo "| scenario | node | req/s | p50 ms | p99 ms | errors | cores |"
    echo "|---|---|---:|---:|---:|---:|---:|"
    for s in $SCENARIOS; do
      nodes_of=$(grep "\"id\":\"cluster-$s\"" "$raw" | sed -n 's/.*"nodes":\[{\(.*\)}\].*/\1/p' | sed 's/},{/\n/g' || true)
      for k in 1 2 3; do
        per=$(awk -v k="$k" 'NR % 3 == (k % 3)' <<<"$nodes_of")
        [[ -n $per ]] || continue
        echo "| $s | $k (workers $(head -n1 <<<"$per" | jget workers)) | $(fmt_int "$(while read -r l; do jget rps <<<"$l"; done <<<"$per" | median)") |" \
          "$(fmt2 "$(while read -r l; do jget p50_ms <<<"$l"; done <<<"$per" | median)") | $(fmt2 "$(while read -r l; do jget p99_ms <<<"$l"; done <<<"$per" | median)") |" \
          "$(while read -r l; do jget errors <<<"$l"; done <<<"$per" | awk '{n += $1} END {print n + 0}') | $(fmt2 "$(while read -r l; do jget server_cpu_cores <<<"$l"; done <<<"$per" | median)") |"
      done
    done
  fi
  if [[ " $PARTS " == *" cost "* ]]; then
    echo
    echo "CPU per request over all server processes (every node + redis-server, /proc utime+stime over the measured window; loadgen excluded), CPU-µs, medians of $RUNS run(s):"
    echo
    echo "| scenario | one node | three nodes | ratio 3 / 1 | three nodes, signed | signed / unsigned | redis share (1 / 3) | per-run ratios 3 / 1 |"
    echo "|---|---:|---:|---:|---:|---:|---|---|"
    for s in $SCENARIOS; do
      declare -A C=()
      for cfg in single cluster signed; do
        C[$cfg]=$(grep "\"id\":\"$cfg-$s\"" "$raw" | while read -r l; do jget procs_cpu_us_per_req <<<"$l"; done | median)
        # Redis's share: the last process of each run.
        C[$cfg.redis]=$(grep "\"id\":\"$cfg-$s\"" "$raw" | while read -r l; do
          procs_of "$l" | tail -n 1 | jget cpu_us_per_req; done | median)
      done
      ratio=$(ratio_of "${C[cluster]}" "${C[single]}")
      sratio=$(ratio_of "${C[signed]}" "${C[cluster]}")
      per=$(paste <(grep "\"id\":\"single-$s\"" "$raw" | while read -r l; do jget procs_cpu_us_per_req <<<"$l"; done) \
        <(grep "\"id\":\"cluster-$s\"" "$raw" | while read -r l; do jget procs_cpu_us_per_req <<<"$l"; done) |
        awk '$1 > 0 && $2 > 0 { printf "%s%.2f", (NR > 1 ? " " : ""), $2 / $1 }')
      echo "| $s | $(fmt1 "${C[single]}") | $(fmt1 "${C[cluster]}") | $ratio | $(fmt1 "${C[signed]}") | $sratio |" \
        "$(fmt1 "${C[single.redis]}") / $(fmt1 "${C[cluster.redis]}") | ${per:-n/a} |"
      unset C
    done
    if grep -q '"id":"sub1-comment"' "$raw"; then
      fr=() n1s=() n23s=()
      while read -r l; do
        mapfile -t cpu < <(procs_of "$l" | while read -r p; do jget cpu_s <<<"$p"; done)
        ((${#cpu[@]} >= 3)) || continue
        n1s+=("${cpu[0]}"); n23s+=("$(awk -v a="${cpu[1]}" -v b="${cpu[2]}" 'BEGIN { print a + b }')")
        fr+=("$(awk -v a="${cpu[0]}" -v b="${cpu[1]}" -v c="${cpu[2]}" 'BEGIN { if (a > 0) printf "%.4f", (b + c) / a }')")
      done < <(grep '"id":"sub1-comment"' "$raw")
      echo
      echo "All comment load and one WebSocket subscriber of the room on n1 of 3 (target: n2 + n3 ≤ 5 % of n1):" \
        "n1 $(fmt2 "$(printf '%s\n' "${n1s[@]}" | median)") CPU-s, n2 + n3 $(fmt2 "$(printf '%s\n' "${n23s[@]}" | median)") CPU-s," \
        "**(n2 + n3) / n1 = $(printf '%s\n' "${fr[@]}" | median | awk '{ printf "%.1f %%", $1 * 100 }')** (median; per run: $(printf '%s\n' "${fr[@]}" | awk '{ printf "%.1f%% ", $1 * 100 }'))"
    fi
  fi
  if [[ -s $fo ]]; then
    n=$(grep -c . "$fo"); ok=$(col 4 "$fo" | grep -c . || true)
    echo
    echo "Failover after kill -9 of the room's owner ($n trials, $ok recovered; seconds from SIGKILL until a play through another node succeeded, probes every 50 ms):"
    echo "median $(secs "$(col 4 "$fo" | median)") s, max $(secs "$(col 4 "$fo" | maxof)") s, min $(secs "$(col 4 "$fo" | minof)") s"
    echo
    echo '```'
    echo "trial killed via seconds probes new-owner"
    awk -F'\t' '{print $1, $2, $3, $4, $5, $6}' "$fo"
    echo '```'
  fi
  if [[ -s $term ]]; then
    n=$(grep -c . "$term")
    echo
    echo "Hand-over on SIGTERM of the room's owner ($n trials; seconds from SIGTERM):"
    for c in 4 7 8; do
      T[$c]="median $(secs "$(col "$c" "$term" | median)") s, max $(secs "$(col "$c" "$term" | maxof)") s"
    done
    echo "first play through another node succeeded: ${T[4]}; /admin/cluster names the new owner: ${T[7]};" \
      "process exited: ${T[8]}"
    echo
    echo '```'
    echo "trial stopped via play-s probes new-owner owner-moved-s exited-s status"
    awk -F'\t' '{print $1, $2, $3, $4, $5, $6, $7, $8, $9}' "$term"
    echo '```'
  fi
  if [[ -s $raw ]]; then
    echo
    echo "Per-run figures (loadgen -json lines):"
    echo
    echo '```'
    cat "$raw"
    echo '```'
  fi
} >"$summary"

cp "$summary" "$OUT_DIR/cluster-latest.md"
echo
cat "$summary"
echo
echo "cluster-bench: written to $OUT_DIR/cluster-latest.md"
exit "$failed"
