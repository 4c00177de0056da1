#!/usr/bin/env bash
# bench.sh — load-tests a real appserver with the in-repo load generator (cmd/loadgen) and
# prints a summary table, also written to bench/results/latest.md. Called by `make bench`
# (which builds bin/appserver first). See docs/benchmarks.md.
#
# Every run gets a fresh server: a free loopback port, a new temporary data directory, log
# level warn. Each scenario is run BENCH_RUNS times and the table shows medians, because
# the machines this runs on are shared and noisy.
#
# Environment:
#   BENCH_RUNS=3            runs per scenario (the median is reported)
#   BENCH_DURATION=10s      measured time per run
#   BENCH_WARMUP=2s         load before measuring, excluded from the figures
#   BENCH_CONCURRENCY=64    load generator workers (keep-alive connections)
#   BENCH_SCENARIOS="comment-1 comment-100 list-100 list-1000 login"   which ones, in order
#   BENCH_WRK=auto          auto: cross-check with wrk when it is installed; 0: never
#   BENCH_WRK_DURATION=10s  duration of each wrk run
#   BENCH_SERVER=bin/appserver
set -euo pipefail

cd "$(dirname "$0")/.."
# shellcheck source=scripts/benchlib.sh
. scripts/benchlib.sh
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

RUNS=${BENCH_RUNS:-3}
DURATION=${BENCH_DURATION:-10s}
WARMUP=${BENCH_WARMUP:-2s}
CONC=${BENCH_CONCURRENCY:-64}
SCENARIOS=${BENCH_SCENARIOS:-comment-1 comment-100 list-100 list-1000 login}
WRK_MODE=${BENCH_WRK:-auto}
WRK_DURATION=${BENCH_WRK_DURATION:-10s}
SERVER=${BENCH_SERVER:-bin/appserver}
LOADGEN=bin/loadgen
OUT_DIR=bench/results

die() { echo "bench: $*" >&2; exit 2; }
[[ $RUNS =~ ^[0-9]+$ ]] && ((RUNS >= 1 && RUNS <= 50)) || die "BENCH_RUNS=$RUNS: want 1..50"
[[ $CONC =~ ^[0-9]+$ ]] && ((CONC >= 1)) || die "BENCH_CONCURRENCY=$CONC: want a positive integer"
for d in "$DURATION" "$WARMUP" "$WRK_DURATION"; do
  [[ $d =~ ^[0-9]+(ms|s|m)$ ]] || die "duration '$d': want e.g. 500ms, 10s or 2m"
done
[[ -x $SERVER ]] || die "$SERVER not found; run 'make build' (or 'make bench')"

# scenario id → loadgen flags, label, target
declare -A FLAGS=(
  [comment-1]="-scenario comment -subs 1"
  [comment-100]="-scenario comment -subs 100"
  [list-100]="-scenario list -rooms 100"
  [list-1000]="-scenario list -rooms 1000"
  [login]="-scenario login"
)
declare -A LABEL=(
  [comment-1]="comment, 1 subscriber"
  [comment-100]="comment, 100 subscribers"
  [list-100]="list, 100 rooms"
  [list-1000]="list, 1,000 rooms"
  [login]="login (new user each)"
)
declare -A TARGET=(
  [comment-1]="≥ 20,000/s, p99 ≤ 10 ms"
  [comment-100]="≥ 200,000 frames/s"
  [list-100]="≥ 7,000/s"
  [list-1000]="—"
  [login]="≥ 5,000/s durable"
)
for s in $SCENARIOS; do
  [[ -n ${FLAGS[$s]:-} ]] || die "unknown scenario '$s' in BENCH_SCENARIOS (want: ${!FLAGS[*]})"
done

echo "bench: building $LOADGEN"
go build -o "$LOADGEN" ./cmd/loadgen

work=$(mktemp -d "${TMPDIR:-/tmp}/roomengine-bench.XXXXXX")
server_pid=""
server_port=""
server_log=""

# stop_server asks the server to drain (SIGTERM) and kills it if it has not stopped in 20s.
stop_server() {
  [[ -n $server_pid ]] || return 0
  local pid=$server_pid
  server_pid=""
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    echo "bench: server $pid did not stop within 20s of SIGTERM; killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
  fi
  local rc=0
  wait "$pid" 2>/dev/null || rc=$?
  if ((rc != 0)); then
    echo "bench: server exited with status $rc; last log lines:" >&2
    tail -n 20 "$server_log" >&2 || true
  fi
}

cleanup() {
  stop_server
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start_server starts a fresh server on a free loopback port and waits for /readyz.
start_server() {
  local attempt
  for attempt in 1 2 3 4 5; do
    server_port=$("$LOADGEN" -free-port)
    local data
    data=$(mktemp -d "$work/data.XXXXXX")
    server_log="$data.log"
    APPSERVER_IP=127.0.0.1 APPSERVER_PORT=$server_port APPSERVER_DATADIR=$data \
      APPSERVER_LOG_LEVEL=warn "$SERVER" >"$server_log" 2>&1 &
    server_pid=$!
    if "$LOADGEN" -addr "127.0.0.1:$server_port" -wait-ready 15s 2>/dev/null; then
      return 0
    fi
    echo "bench: server did not become ready on port $server_port (attempt $attempt); log:" >&2
    tail -n 5 "$server_log" >&2 || true
    stop_server
  done
  die "could not start $SERVER"
}



fmt_int() { # 12345.6 → 12,346
  [[ $1 == n/a ]] && { echo n/a; return; }
  awk -v x="$1" 'BEGIN { s = sprintf("%.0f", x); n = ""
    while (length(s) > 3) { n = "," substr(s, length(s) - 2) n; s = substr(s, 1, length(s) - 3) }
    print s n }'
}
fmt_ms() { [[ $1 == n/a ]] && echo n/a || printf "%.2f" "$1"; }
fmt_cpu() { [[ $1 == n/a || $1 == -1 ]] && echo "?" || printf "%.2f" "$1"; }

mkdir -p "$OUT_DIR"
raw="$work/runs.jsonl"
: >"$raw"
failed=0
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)
load_before=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")

for s in $SCENARIOS; do
  for ((run = 1; run <= RUNS; run++)); do
    echo
    echo "== ${LABEL[$s]} — run $run/$RUNS (${DURATION} + ${WARMUP} warm-up, c=$CONC)"
    start_server
    # shellcheck disable=SC2086 # FLAGS holds several flags on purpose
    if line=$("$LOADGEN" -addr "127.0.0.1:$server_port" ${FLAGS[$s]} -c "$CONC" \
      -d "$DURATION" -warmup "$WARMUP" -json 2> >(sed 's/^/   /' >&2)); then
      echo "{\"id\":\"$s\",\"run\":$run,${line#\{}" >>"$raw"
    else
      echo "bench: loadgen failed for $s run $run; server log:" >&2
      tail -n 20 "$server_log" >&2 || true
      failed=1
    fi
    stop_server
  done
done

# Optional cross-check with wrk (Debian package wrk): only HTTP status is checked by wrk, so
# the server's own request counter is read afterwards for envelope codes other than 200.
wrk_rows=()
run_wrk() { # label path [lua]
  local label=$1 path=$2 lua=${3:-} out
  local args=(-t2 -c64 -d"$WRK_DURATION" --latency)
  [[ -n $lua ]] && args+=(-s "$lua")
  echo
  echo "== wrk cross-check: $label ($path, ${WRK_DURATION})"
  out=$(wrk "${args[@]}" "http://127.0.0.1:$server_port$path" 2>&1) || true
  sed 's/^/   /' <<<"$out"
  local rps p99 non2xx bad
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
  bad=$(curl -fsS "http://127.0.0.1:$server_port/metrics" 2>/dev/null |
    awk -v r="$path" 'index($0, "roomengine_http_requests_total{") == 1 && index($0, "route=\"" r "\"") && !index($0, "code=\"200\"") {n += $NF} END {print n + 0}') || bad="?"
  [[ -n $rps ]] && rps=$(fmt_int "$rps")
  wrk_rows+=("| $label (wrk -t2 -c64) | ${rps:-?} | ${p99:-?} | ${non2xx:-0} non-2xx, ${bad:-?} envelope ≠ 200 |")
}
wrk_comment() {
  local setup uid room lua="$work/comment.lua"
  setup=$("$LOADGEN" -addr "127.0.0.1:$server_port" -scenario comment -setup-only) || return 1
  uid=$(sed -n 's/.*"uid":"\([^"]*\)".*/\1/p' <<<"$setup")
  room=$(sed -n 's/.*"roomId":"\([^"]*\)".*/\1/p' <<<"$setup")
  cat >"$lua" <<EOF
wrk.method = "POST"
wrk.body = '{"uid":"$uid","roomId":"$room","comment":"wrk cross-check comment"}'
wrk.headers["Content-Type"] = "application/json"
EOF
  run_wrk "comment, no subscriber" /live/comment "$lua"
}
wrk_list() {
  "$LOADGEN" -addr "127.0.0.1:$server_port" -scenario list -rooms 100 -setup-only >/dev/null || return 1
  run_wrk "list, 100 rooms" /live/list
}
if [[ $WRK_MODE != 0 ]] && command -v wrk >/dev/null 2>&1; then
  for f in wrk_comment wrk_list; do
    start_server
    $f || echo "bench: $f: setup failed; skipped" >&2
    stop_server
  done
fi

# Summary.
rev=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
git diff --quiet HEAD -- 2>/dev/null || rev="$rev (+ local changes)"
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo 2>/dev/null | head -n 1)
summary="$work/summary.md"
{
  echo "# roomengine benchmark — $started_at"
  echo
  echo "- commit $rev, $(go version | cut -d' ' -f3), $(nproc) CPUs (${cpu_model:-unknown}), GOMAXPROCS default"
  echo "- $RUNS run(s) per scenario, ${DURATION} measured after ${WARMUP} warm-up, $CONC workers;" \
    "load generator on the same machine; load average before: $load_before"
  echo "- medians over the runs; errors are summed; \"complete\" = every subscriber got every comment in every run"
  echo
  echo "| scenario | req/s | p99 ms | frames/s | errors | complete | server cores | target |"
  echo "|---|---:|---:|---:|---:|---|---:|---|"
  for s in $SCENARIOS; do
    lines=$(grep "\"id\":\"$s\"" "$raw" || true)
    n=$(grep -c . <<<"$lines" || true)
    if [[ -z $lines ]]; then
      echo "| ${LABEL[$s]} | failed | | | | | | ${TARGET[$s]} |"
      continue
    fi
    rps=$(while read -r l; do jget rps <<<"$l"; done <<<"$lines" | median)
    p99=$(while read -r l; do jget p99_ms <<<"$l"; done <<<"$lines" | median)
    cpu=$(while read -r l; do jget server_cpu_cores <<<"$l"; done <<<"$lines" | median)
    errs=$(while read -r l; do jget errors <<<"$l"; done <<<"$lines" | awk '{n += $1} END {print n + 0}')
    frames="—" complete="—"
    if grep -q '"frames_complete"' <<<"$lines"; then
      frames=$(fmt_int "$(while read -r l; do jget frames_per_s <<<"$l"; done <<<"$lines" | median)")
      if grep -q '"frames_complete":false' <<<"$lines"; then
        complete="no ($(grep -c '"frames_complete":false' <<<"$lines")/$n runs lost frames)"
      else
        complete="yes"
      fi
    fi
    note=""
    ((n < RUNS)) && note=" ($n/$RUNS runs ok)"
    echo "| ${LABEL[$s]}$note | $(fmt_int "$rps") | $(fmt_ms "$p99") | $frames | $errs | $complete | $(fmt_cpu "$cpu") | ${TARGET[$s]} |"
  done
  if ((${#wrk_rows[@]} > 0)); then
    echo
    echo "Cross-check with wrk (one run each, fresh server):"
    echo
    echo "| scenario | req/s | p99 | errors |"
    echo "|---|---:|---:|---|"
    printf '%s\n' "${wrk_rows[@]}"
  fi
  echo
  echo "Per-run figures (loadgen -json lines):"
  echo
  echo '```'
  cat "$raw"
  echo '```'
} >"$summary"

cp "$summary" "$OUT_DIR/latest.md"
echo
cat "$summary"
echo
echo "bench: written to $OUT_DIR/latest.md"
exit "$failed"
