#!/usr/bin/env bash
# bench-serving.sh: the serving benchmarks (issue 15) in one run, and their ratios.
#   BenchmarkConcurrentCallers  in-process: 1/4/8/16 goroutines of single images with batching on,
#                               one caller at batch 8, one caller of single images with batching off
#   BenchmarkHTTP               safetyd on loopback at concurrency 1/8/32 against the same work in-process
# Each benchmark runs with -count ROUNDS, so its configurations alternate (ABCABC...); the table gives the
# median of each metric over the rounds and the ratios of those medians.
# The model is bench-cache/fullsize when `make fullsize` made it (SAFETY_FULLSIZE overrides), else the tiny
# parity model (the benchmarks log which).
# Environment: ROUNDS (5), BENCHTIME (2s), SAFETY_BENCH_WINDOW (5ms), OUT (out/bench-serving).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
BENCHTIME=${BENCHTIME:-2s}
OUT=${OUT:-out/bench-serving}
mkdir -p "$OUT"
go test -run '^$' -bench 'BenchmarkConcurrentCallers' -benchtime "$BENCHTIME" -count "$ROUNDS" -v . | tee "$OUT/inproc.txt"
go test -run '^$' -bench 'BenchmarkHTTP' -benchtime "$BENCHTIME" -count "$ROUNDS" -v ./cmd/safetyd | tee "$OUT/http.txt"
python3 - "$OUT/inproc.txt" "$OUT/http.txt" <<'PY'
import re, statistics, sys
runs = {}
for path in sys.argv[1:]:
    for line in open(path):
        m = re.match(r"^(Benchmark\S+?)-\d+\s+\d+\s+\d+ ns/op\s+(.*)$", line)
        if not m:
            continue
        vals = dict((k, float(v)) for v, k in re.findall(r"([\d.]+) (\S+)", m.group(2)))
        runs.setdefault(m.group(1), []).append(vals)
med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in runs.items()}
def get(name, k):
    return med.get(name, {}).get(k, float("nan"))
print(f"\n{'benchmark':55s} {'images/s':>9s} {'p50 ms':>8s} {'p99 ms':>8s} {'img/batch':>9s}  (median of {max(len(r) for r in runs.values())} rounds)")
for name, m in med.items():
    print(f"{name:55s} {m['images/s']:9.1f} {m['p50-ms']:8.2f} {m['p99-ms']:8.2f} {m.get('images/batch', float('nan')):9.2f}")
cc = "BenchmarkConcurrentCallers/"
b8 = get(cc + "batch8/off/callers=1", "images/s")
print()
for n in (1, 4, 8, 16):
    print(f"in-process, {n:2d} callers of single images, batching on: {get(cc + f'single/on/callers={n}', 'images/s') / b8:.2f}x the batch-8 throughput")
print(f"lone caller, batching on vs off: {get(cc + 'single/on/callers=1', 'images/s') / get(cc + 'single/off/callers=1', 'images/s'):.3f}x")
for c in (1, 8, 32):
    h, i = get(f"BenchmarkHTTP/http/conc={c}", "images/s"), get(f"BenchmarkHTTP/inproc/conc={c}", "images/s")
    print(f"HTTP at concurrency {c:2d}: {h:.1f} images/s, {h / i:.2f}x in-process (overhead {100 * (1 - h / i):+.1f}%)")
PY
