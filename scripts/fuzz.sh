#!/usr/bin/env bash
# Runs the fuzzers for FUZZTIME each and keeps what they found: FuzzDecodeParams (request
# decoding, ./http) and FuzzServePeer (every peer event served by a cluster node, ./actors).
# FUZZTARGETS="pkg:Target ..." picks others.
#
# - Minimization is capped (-fuzzminimizetime, default 1s). Go minimizes every new
#   interesting input before it goes on: trying every byte and then every range of bytes
#   of a string is O(n²) runs, up to 60 s per input by default, and those runs are not
#   counted in the progress line. With both workers minimizing, the fuzzer showed
#   "0 execs/s" for most of its time and found half as much. No input decodes slowly.
# - A stall (three progress lines in a row at 0 execs/s, i.e. >= 6 s without a counted
#   run) fails the run: it means the fuzzer spent its time on something else than fuzzing.
# - With FUZZKEEP=1 (`make fuzz`), new corpus entries (in Go's cache, which a fresh CI
#   machine does not have) are copied to PKG/testdata/fuzz/TARGET, so each run starts from
#   what earlier runs found and plain `go test` replays them; commit them. Without it (the
#   fuzz step of `make test`) the checkout is left as it was: only a failing input, which
#   go test writes to testdata itself, shows up there — to be fixed and committed.
set -euo pipefail
cd "$(dirname "$0")/.."

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
MINIMIZE=${FUZZMINIMIZETIME:-1s}
FUZZTARGETS=${FUZZTARGETS:-"http:FuzzDecodeParams actors:FuzzServePeer"}

fuzz_one() {
  local pkg=$1 target=$2
  local corpus=$pkg/testdata/fuzz/$target
  local log
  log=$(mktemp)
  set +e
  "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$MINIMIZE" "./$pkg/" 2>&1 | tee "$log"
  local status=${PIPESTATUS[0]}
  set -e

  # Keep the corpus, new failing inputs included (go test writes those to testdata itself).
  local cache
  cache="$("$GO" env GOCACHE)/fuzz/roomengine/$pkg/$target"
  if [ "${FUZZKEEP:-0}" = 1 ] && [ -d "$cache" ]; then
    mkdir -p "$corpus"
    local added=0 f
    for f in "$cache"/*; do
      [ -e "$corpus/$(basename "$f")" ] && continue
      [ "$(stat -c %s "$f")" -le 65536 ] || continue # a huge input is not worth keeping
      cp "$f" "$corpus/" && added=$((added + 1))
    done
    echo "fuzz corpus: $added new entries in $corpus ($(ls "$corpus" | wc -l) in all)"
  fi

  local stalls
  stalls=$(awk '/execs: [0-9]+ \(0\/sec\)/ { run++; if (run > max) max = run; next } /execs:/ { run = 0 } END { print max + 0 }' "$log")
  rm -f "$log"
  [ "$status" -eq 0 ] || exit "$status"
  # The last line repeats the final count at 0/sec when the time is up; three in a row is a stall.
  if [ "$stalls" -ge 3 ]; then
    echo "fuzz: $target stalled ($stalls progress lines in a row at 0 execs/s)" >&2
    exit 1
  fi
}

for t in $FUZZTARGETS; do
  fuzz_one "${t%%:*}" "${t##*:}"
done
