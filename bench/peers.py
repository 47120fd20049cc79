"""Summary of bench/peers.sh: peers.py DIR (DIR/round-*/{ceiling,scimd-sqlite,PEER}.txt)."""
import glob
import os
import re
import statistics
import sys

LINE = re.compile(r"^([a-z-]+): ([\d.]+) req/s", re.M)


def figures(path):
    text = open(path).read()
    if os.path.basename(path) == "ceiling.txt":
        return {"ceiling": float(re.search(r"([\d.]+) req/s", text).group(1))}
    return {name: float(rps) for name, rps in LINE.findall(text)}


rounds = []
for d in sorted(glob.glob(os.path.join(sys.argv[1], "round-*"))):
    if os.path.isdir(d):
        rounds.append({os.path.basename(f)[:-4]: figures(f) for f in glob.glob(d + "/*.txt")})
med = statistics.median
ours = "scimd-sqlite"
peers = sorted({p for r in rounds for p in r} - {ours, "ceiling"})
scenarios = [s for s in rounds[0][ours] if s != "spc-no-auth"]
print(f"{len(rounds)} rounds; ceiling (bare axum) {[round(r['ceiling']['ceiling']) for r in rounds]}")
share = [r[ours]["get-by-id"] / r["ceiling"]["ceiling"] for r in rounds if "get-by-id" in r[ours]]
if share:
    print(f"GET by id / ceiling: median {med(share):.2f} {[round(x, 2) for x in share]} (target 0.45)")
head = f"{'scenario':22s}{ours:>14s}" + "".join(f"{p:>16s}{'ratio':>8s}" for p in peers)
print(head)
for s in scenarios:
    row = f"{s:22s}{med(r[ours][s] for r in rounds):14.0f}"
    for p in peers:
        pairs = [(r[ours][s], r[p][s]) for r in rounds if s in r.get(p, {}) and r[p][s] > 0]
        if pairs:
            ratio = med(a / b for a, b in pairs)
            row += f"{med(b for _, b in pairs):16.0f}{ratio:8.2f}"
        else:
            row += f"{'-':>16s}{'-':>8s}"
    print(row)
