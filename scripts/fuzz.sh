#!/usr/bin/env bash
# Runs the request-decoding fuzzer (FuzzDecodeParams) for FUZZTIME and keeps what it found.
#
# - Minimization is capped (-fuzzminimizetime, default 1s). Go minimizes every new
#   interesting input before it goes on: trying every byte and then every range of bytes
#   of a string is O(n²) runs, up to 60 s per input by default, and those runs are not
#   counted in the progress line. With both workers minimizing, the fuzzer showed
#   "0 execs/s" for most of its time and found half as much. No input decodes slowly.
# - A stall (three progress lines in a row at 0 execs/s, i.e. >= 6 s without a counted
#   run) fails the run: it means the fuzzer spent its time on something else than fuzzing.
# - New corpus entries (in Go's cache, which a fresh CI machine does not have) are copied
#   to http/testdata/fuzz/FuzzDecodeParams, so each run starts from what earlier runs
#   found and plain `go test` replays them; commit them.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
MINIMIZE=${FUZZMINIMIZETIME:-1s}
target=FuzzDecodeParams
corpus=http/testdata/fuzz/$target
log=$(mktemp)
trap 'rm -f "$log"' EXIT

set +e
"$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$MINIMIZE" ./http/ 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

# Keep the corpus, new failing inputs included (go test writes those to testdata itself).
cache="$("$GO" env GOCACHE)/fuzz/roomengine/http/$target"
if [ -d "$cache" ]; then
  mkdir -p "$corpus"
  added=0
  for f in "$cache"/*; do
    [ -e "$corpus/$(basename "$f")" ] && continue
    [ "$(stat -c %s "$f")" -le 65536 ] || continue # a huge input is not worth keeping
    cp "$f" "$corpus/" && added=$((added + 1))
  done
  echo "fuzz corpus: $added new entries in $corpus ($(ls "$corpus" | wc -l) in all)"
fi

[ "$status" -eq 0 ] || exit "$status"

stalls=$(awk '/execs: [0-9]+ \(0\/sec\)/ { run++; if (run > max) max = run; next } /execs:/ { run = 0 } END { print max + 0 }' "$log")
# The last line repeats the final count at 0/sec when the time is up; three in a row is a stall.
if [ "$stalls" -ge 3 ]; then
  echo "fuzz: stalled ($stalls progress lines in a row at 0 execs/s)" >&2
  exit 1
fi
