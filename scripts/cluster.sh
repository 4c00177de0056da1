#!/usr/bin/env bash
# cluster.sh — runs a three-node cluster on this machine: one redis-server and three appserver
# nodes sharing it, every address on the loopback interface. Called by `make cluster` (which
# builds bin/appserver first). Ctrl-C (or SIGTERM) stops the nodes gracefully (each hands its
# rooms over and leaves), then Redis; only the processes this script started are signalled.
# See "Running a cluster" in README.md and docs/cluster.md.
#
# Environment:
#   CLUSTER_NODES=3           how many appserver nodes (1..9)
#   CLUSTER_PORT=4101         HTTP port of the first node; the others follow (4102, 4103)
#   CLUSTER_REDIS_PORT=       Redis port; empty picks a free one from 6390 up
#   CLUSTER_DIR=              where Redis's data and the logs go; empty makes a temporary
#                             directory that is removed on exit (a given one is kept)
#   CLUSTER_MEMBER_TTL=3s     cluster.memberTTL of every node
#   CLUSTER_ADMIN_TOKEN=      admin.token of every node; empty generates one, written (not
#                             printed) to $CLUSTER_DIR/admin-token
#   CLUSTER_BIN=bin/appserver the server binary (built with `go build` when missing)
#   REDIS=single              single: one redis-server; sentinel: a primary, two replicas and
#                             three sentinels (down-after 1 s), the nodes find the primary
#                             through the sentinels and wait for one replica on every write
#                             (redis.waitReplicas 1) — kill -9 the primary to see a failover;
#                             cluster: a Redis Cluster of three masters and three replicas
#                             (cluster-node-timeout 2000, waitReplicas 1), the nodes in
#                             cluster mode on it (`make cluster REDIS=cluster`); kill -9 a
#                             master to see a failover
#   CLUSTER_MODE=true         false: every node in single-node mode (cluster.enabled false;
#                             with one node, `make redis-cluster`)
# Every other APPSERVER_* variable set in the environment reaches every node as usual.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

NODES=${CLUSTER_NODES:-3}
PORT=${CLUSTER_PORT:-4101}
REDIS_PORT=${CLUSTER_REDIS_PORT:-}
TTL=${CLUSTER_MEMBER_TTL:-3s}
BIN=${CLUSTER_BIN:-bin/appserver}
MODE=${REDIS:-single}

DIR=
KEEP_DIR=1
REDIS_PID=
REDIS_PIDS=()
NODE_PIDS=()
die() { echo "cluster: $*" >&2; exit 2; }
[[ $NODES =~ ^[1-9]$ ]] || die "CLUSTER_NODES=$NODES: want 1..9"
[[ $PORT =~ ^[0-9]+$ ]] && ((PORT >= 1 && PORT + NODES - 1 <= 65535)) || die "CLUSTER_PORT=$PORT: want a port"
[[ -z $REDIS_PORT || $REDIS_PORT =~ ^[0-9]+$ ]] || die "CLUSTER_REDIS_PORT=$REDIS_PORT: want a port"
[[ $MODE == single || $MODE == sentinel || $MODE == cluster ]] || die "REDIS=$MODE: want single, sentinel or cluster"
CLUSTER_ON=${CLUSTER_MODE:-true}
[[ $CLUSTER_ON == true || $CLUSTER_ON == false ]] || die "CLUSTER_MODE=$CLUSTER_ON: want true or false"
[[ $CLUSTER_ON == true || $NODES == 1 ]] || die "CLUSTER_MODE=false runs one node: set CLUSTER_NODES=1"
command -v redis-server >/dev/null || die "redis-server not found: run 'make cluster' (installs it) or 'apt-get install redis-server'"
command -v redis-cli >/dev/null || die "redis-cli not found: apt-get install redis-tools"
if [[ ! -x $BIN ]]; then
  echo "building $BIN"
  go build -o "$BIN" ./cmd/appserver
fi

# port_busy PORT: something on the loopback interface accepts connections on PORT.
port_busy() { { (exec 3<>"/dev/tcp/127.0.0.1/$1"); } 2>/dev/null; }

# http_ok PORT PATH: GET answers 200 (plain bash, no curl needed).
http_ok() {
  local line=
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
  IFS= read -r -t 2 line <&3 || true
  exec 3<&- 3>&-
  [[ $line == "HTTP/1."?" 200"* ]]
}

for ((i = 0; i < NODES; i++)); do
  port_busy $((PORT + i)) && die "port $((PORT + i)) is in use (set CLUSTER_PORT to move the nodes)"
done
if [[ -z $REDIS_PORT ]]; then
  for ((REDIS_PORT = 6390; REDIS_PORT < 6490; REDIS_PORT++)); do
    port_busy "$REDIS_PORT" || break
  done
  ((REDIS_PORT < 6490)) || die "no free Redis port in 6390..6489 (set CLUSTER_REDIS_PORT)"
elif port_busy "$REDIS_PORT"; then
  die "port $REDIS_PORT is in use (CLUSTER_REDIS_PORT)"
fi

stopping=0

# stop signals exactly the processes this script started, by PID: the nodes first (SIGTERM: drain,
# hand over, leave), then Redis once they are gone.
stop() {
  ((stopping)) && return
  stopping=1
  trap '' INT TERM
  local pid
  if ((${#NODE_PIDS[@]})); then
    echo
    echo "stopping the nodes (graceful leave)…"
  fi
  for pid in "${NODE_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  for ((n = 0; n < 150; n++)); do # up to 15 s
    local alive=0
    for pid in "${NODE_PIDS[@]}"; do
      kill -0 "$pid" 2>/dev/null && alive=1
    done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${NODE_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "node pid $pid did not stop within 15 s: killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  for pid in "${REDIS_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ -z $DIR ]]; then
    return
  elif ((KEEP_DIR)); then
    echo "data and logs kept in $DIR"
  else
    rm -rf "$DIR"
  fi
  ((${#NODE_PIDS[@]})) && echo "stopped"
  return 0
}
trap 'stop; exit 0' INT TERM
trap stop EXIT

DIR=${CLUSTER_DIR:-}
if [[ -z $DIR ]]; then
  DIR=$(mktemp -d -t roomengine-cluster.XXXXXX)
  KEEP_DIR=0
fi
mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)

TOKEN=${CLUSTER_ADMIN_TOKEN:-}
if [[ -z $TOKEN ]]; then
  TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
  (umask 077 && printf '%s\n' "$TOKEN" >"$DIR/admin-token")
fi
# The nodes sign their messages to each other (docs/security.md); on loopback it is optional,
# but a cluster run as it is deployed is the one worth trying.
CLUSTER_SECRET=$(od -An -N32 -tx1 /dev/urandom | tr -d ' \n')

# redis_start NAME PORT ARGS…: one redis-server (or sentinel) on the loopback interface, its
# log in $DIR/NAME.log; returns once it answers PING.
redis_start() {
  local name=$1 port=$2 pid n
  shift 2
  redis-server "$@" --port "$port" --bind 127.0.0.1 --dir "$DIR" --logfile "$DIR/$name.log" &
  pid=$!
  REDIS_PIDS+=("$pid")
  for ((n = 0; ; n++)); do
    [[ $(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null) == PONG ]] && break
    kill -0 "$pid" 2>/dev/null || die "$name exited at start; see $DIR/$name.log"
    ((n < 150)) || die "$name did not answer within 15 s; see $DIR/$name.log"
    sleep 0.1
  done
}

# next_port PORT: the first port from PORT up that nothing listens on.
next_port() {
  local p=$1
  while port_busy "$p"; do p=$((p + 1)); done
  echo "$p"
}

# The supported durability for fencing: append-only file, fsync on every write.
durable=(--save "" --appendonly yes --appendfsync always)
REDIS_ENV=(APPSERVER_REDIS_HOST=127.0.0.1 APPSERVER_REDIS_PORT=$REDIS_PORT)
if [[ $MODE == single ]]; then
  redis_start redis "$REDIS_PORT" "${durable[@]}"
  REDIS_PID=${REDIS_PIDS[0]}
  WHERE="Redis 127.0.0.1:$REDIS_PORT (appendonly, appendfsync always)"
elif [[ $MODE == cluster ]]; then
  # Six servers, each with its own append-only directory, cluster config file and bus port
  # (port+10000 by default, which may be taken).
  CLUSTER_ADDRS=
  p=$REDIS_PORT
  for r in 1 2 3 4 5 6; do
    ((r == 1)) || p=$(next_port $((p + 1)))
    bus=$(next_port $((p + 20000)))
    redis_start "rcluster$r" "$p" "${durable[@]}" --appenddirname "aof-$p" \
      --cluster-enabled yes --cluster-config-file "nodes-$p.conf" --cluster-node-timeout 2000 \
      --cluster-port "$bus" --repl-diskless-sync-delay 0
    CLUSTER_ADDRS+=${CLUSTER_ADDRS:+,}127.0.0.1:$p
  done
  redis-cli --cluster create ${CLUSTER_ADDRS//,/ } --cluster-replicas 1 --cluster-yes >"$DIR/cluster-create.log" 2>&1 ||
    die "redis-cli --cluster create failed; see $DIR/cluster-create.log"
  for addr in ${CLUSTER_ADDRS//,/ }; do
    for ((n = 0; ; n++)); do
      redis-cli -h 127.0.0.1 -p "${addr##*:}" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && break
      ((n < 150)) || die "Redis Cluster node $addr not ok within 15 s; see $DIR"
      sleep 0.1
    done
  done
  REDIS_ENV=(APPSERVER_REDIS_CLUSTER_ADDRS=$CLUSTER_ADDRS APPSERVER_REDIS_WAITREPLICAS=1)
  WHERE="a Redis Cluster $CLUSTER_ADDRS (redis-cli -p $REDIS_PORT cluster nodes; redis-server pids ${REDIS_PIDS[*]})"
else
  # Each data server needs a directory of its own for its append-only file.
  REPLICA_PORTS=()
  redis_start redis "$REDIS_PORT" "${durable[@]}" --appenddirname "aof-$REDIS_PORT"
  p=$REDIS_PORT
  for r in 1 2; do
    p=$(next_port $((p + 1)))
    REPLICA_PORTS+=("$p")
    redis_start "replica$r" "$p" "${durable[@]}" --appenddirname "aof-$p" --replicaof 127.0.0.1 "$REDIS_PORT"
  done
  # A replica confirms writes (WAIT) only once its first sync is done.
  for p in "${REPLICA_PORTS[@]}"; do
    for ((n = 0; ; n++)); do
      redis-cli -h 127.0.0.1 -p "$p" info replication 2>/dev/null | grep -q '^master_link_status:up' && break
      ((n < 150)) || die "replica on port $p did not sync within 15 s; see $DIR"
      sleep 0.1
    done
  done
  p=$(next_port $((p + 1)))
  SENTINEL_ADDRS=
  for s in 1 2 3; do
    p=$(next_port $((p + 1)))
    printf 'sentinel monitor roomengine 127.0.0.1 %s 2\nsentinel down-after-milliseconds roomengine 1000\nsentinel failover-timeout roomengine 5000\n' \
      "$REDIS_PORT" >"$DIR/sentinel$s.conf"
    redis_start "sentinel$s" "$p" "$DIR/sentinel$s.conf" --sentinel
    SENTINEL_ADDRS+=${SENTINEL_ADDRS:+,}127.0.0.1:$p
  done
  REDIS_ENV=(APPSERVER_REDIS_SENTINEL_MASTER=roomengine APPSERVER_REDIS_SENTINEL_ADDRS=$SENTINEL_ADDRS
    APPSERVER_REDIS_WAITREPLICAS=1)
  WHERE="Redis primary 127.0.0.1:$REDIS_PORT (pid ${REDIS_PIDS[0]}), replicas ${REPLICA_PORTS[*]}, sentinels $SENTINEL_ADDRS (master name roomengine)"
fi

for ((i = 0; i < NODES; i++)); do
  env "${REDIS_ENV[@]}" \
    APPSERVER_STORE=redis \
    APPSERVER_IP=127.0.0.1 \
    APPSERVER_PORT=$((PORT + i)) \
    APPSERVER_ADMIN_TOKEN=$TOKEN \
    APPSERVER_CLUSTER_ENABLED=$CLUSTER_ON \
    APPSERVER_CLUSTER_NODE=n$((i + 1)) \
    APPSERVER_CLUSTER_BINDADDR=127.0.0.1:0 \
    APPSERVER_CLUSTER_MEMBERTTL=$TTL \
    APPSERVER_CLUSTER_SECRET=$CLUSTER_SECRET \
    "$BIN" >"$DIR/n$((i + 1)).log" 2>&1 &
  NODE_PIDS+=($!)
done

for ((i = 0; i < NODES; i++)); do
  for ((n = 0; ; n++)); do
    http_ok $((PORT + i)) /readyz && break
    if ! kill -0 "${NODE_PIDS[i]}" 2>/dev/null; then
      tail -n 20 "$DIR/n$((i + 1)).log" >&2
      die "node n$((i + 1)) exited at start (log above, $DIR/n$((i + 1)).log)"
    fi
    ((n < 300)) || die "node n$((i + 1)) not ready within 30 s; see $DIR/n$((i + 1)).log"
    sleep 0.1
  done
done

if [[ $CLUSTER_ON == false ]]; then
  echo "one node (single-node mode) on $WHERE"
else
  echo "cluster of $NODES nodes on $WHERE"
fi
for ((i = 0; i < NODES; i++)); do
  echo "  n$((i + 1))  http://127.0.0.1:$((PORT + i))   pid ${NODE_PIDS[i]}   log $DIR/n$((i + 1)).log"
done
if [[ -n ${CLUSTER_ADMIN_TOKEN:-} ]]; then
  auth='$CLUSTER_ADMIN_TOKEN'
else
  auth="\$(cat $DIR/admin-token)"
fi
[[ $CLUSTER_ON == false ]] || echo "members: curl -H \"Authorization: Bearer $auth\" http://127.0.0.1:$PORT/admin/cluster"
echo "any node serves any route, callback and /ws; Ctrl-C stops them all"

# Wait until Ctrl-C, reporting nodes that exit on their own (a kill -9 to try a failover).
declare -A reported=()
while :; do
  alive=0
  for ((i = 0; i < NODES; i++)); do
    pid=${NODE_PIDS[i]}
    if kill -0 "$pid" 2>/dev/null; then
      alive=1
    elif [[ -z ${reported[$pid]:-} ]]; then
      reported[$pid]=1
      status=0
      wait "$pid" 2>/dev/null || status=$?
      echo "node n$((i + 1)) (pid $pid) exited with status $status; see $DIR/n$((i + 1)).log"
    fi
  done
  ((alive)) || { echo "no node left"; exit 1; }
  if [[ $MODE == single ]]; then
    kill -0 "$REDIS_PID" 2>/dev/null || { echo "redis-server exited; see $DIR/redis.log"; exit 1; }
  fi
  sleep 1 &
  wait $! || true
done
