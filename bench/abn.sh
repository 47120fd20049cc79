#!/usr/bin/env bash
# Interleaved A/B: PAIRS times, one round of BINARY_A then one of BINARY_B, each on a fresh copy of SRC;
# prints each pair's requests/s and B/A ratio, then the median ratio. On this noisy shared machine the
# median of paired ratios is steadier than comparing medians of separate runs.
# Usage: SRC=/path/to/data-dir bench/abn.sh BINARY_A BINARY_B SCRIPT.lua [PAIRS]
set -euo pipefail
A=$1; B=$2; LUA=$3; PAIRS=${4:-6}
ratios=()
for i in $(seq "$PAIRS"); do
  a=$(bash "$(dirname "$0")/ab.sh" "$A" "$LUA" 1 | tr -d ' ')
  b=$(bash "$(dirname "$0")/ab.sh" "$B" "$LUA" 1 | tr -d ' ')
  r=$(python3 -c "print(round($b/$a, 3))")
  echo "pair $i: A $a  B $b  B/A $r"
  ratios+=("$r")
done
python3 -c "import statistics,sys; print('median B/A', statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}"
