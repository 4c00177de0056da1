# benchlib.sh — helpers the bench scripts share (sourced by bench.sh, bigroom-bench.sh and
# cluster-bench.sh).

# jget KEY reads a number or boolean field of the JSON line on stdin (the loadgen's per-node
# array, whose keys repeat the totals' names, is cut off first).
jget() { sed 's/,"nodes":\[.*//' | sed -n 's/.*"'"$1"'":\([^,}]*\).*/\1/p' | head -n 1; }

# median of the numbers on stdin ("n/a" when there are none); the mean of the middle two
# for an even count.
median() {
  grep -E '^-?[0-9.eE+-]+$' | sort -g | awk '{a[NR]=$1} END {
    if (NR == 0) { print "n/a"; exit }
    if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
