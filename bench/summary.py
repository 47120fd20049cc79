"""Medians of wrk rounds: summary.py NAME FILE... prints req/s, p50 and p99 latency, and warns about
non-2xx answers (a benchmark of errors is not a benchmark)."""
import re
import statistics
import sys


def ms(text, pct):
    m = re.search(pct + r"%\s+([\d.]+)(us|ms|s)\b", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]


name, files = sys.argv[1], sys.argv[2:]
texts = [open(f).read() for f in files]
rps = [float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1)) for t in texts]
for f, t in zip(files, texts):
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    if m:
        print(f"  WARNING {f}: {m.group(1)} non-2xx responses")
p50 = statistics.median(ms(t, "50") for t in texts)
p99 = statistics.median(ms(t, "99") for t in texts)
print(f"{name:12s} median {statistics.median(rps):9.0f} req/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms   runs {[round(x) for x in rps]}")
