#!/usr/bin/env bash
# scimd on SQLite against the bare axum ceiling and the peers, in paired rounds. Each round is one
# run of ../shared/peer-bench/scimd-vs-peers.sh as it is (the ceiling, scimd on a fresh store with
# OAuth on, then each peer through the same harness); bench/peers.py then prints, per scenario,
# the median of scimd's figure, of each peer's, and of the per-round ratios scimd/peer, and
# scimd's GET by id as a share of the ceiling measured in the same round.
# Targets (issue 17): every scenario ahead of the scim-server crate; GET by id >= 45 % of the ceiling.
# Usage: bench/peers.sh   (needs wrk and a release build: cargo build --release)
# Knobs: ROUNDS=3, PEERS="scim-server-rs" (space separated, empty for none); N, DURATION, SCENARIOS,
# ... go to the harness as they are. Outputs in bench/out/peers/round-R/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}; PEERS=${PEERS-scim-server-rs}
OUT=bench/out/peers; rm -rf $OUT; mkdir -p $OUT
for r in $(seq $ROUNDS); do
  echo "== round $r of $ROUNDS (load average $(cut -d' ' -f1-3 /proc/loadavg))"
  skip=0; [ -n "$PEERS" ] || skip=1
  # shellcheck disable=SC2086
  OUT=$PWD/$OUT/round-$r SKIP_PEERS=$skip ../shared/peer-bench/scimd-vs-peers.sh target/release/scimd $PEERS \
    > $OUT/round-$r.log 2>&1 || { tail -20 $OUT/round-$r.log; exit 1; }
  grep -h -E "^(ceiling|[a-z-]+: [0-9.]+ req/s)" $OUT/round-$r/*.txt | head -40
done
python3 bench/peers.py $OUT
