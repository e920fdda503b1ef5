#!/usr/bin/env bash
# bench-serving.sh: the serving benchmarks of issue 15 in one run, with their ratios.
#   BenchmarkConcurrentCallers  in-process: 1/4/8/16 goroutines of single images with batching on, one caller
#                               at batch 8, one caller of single images with batching off
#   BenchmarkHTTP               safetyd on loopback at concurrency 1/8/32 against the same work in-process
# Within each benchmark the configurations run in short segments that alternate (ABC CBA ...) for several
# rounds, so that the shared machine's changing load falls on all of them alike; the tables and ratios are
# over all the segments. The model is bench-cache/fullsize when `make fullsize` made it (SAFETY_FULLSIZE
# overrides: any directory with model/ and .complete), else the tiny parity model; the output names it.
# Environment: SAFETY_BENCH_ROUNDS (10 in-process, 6 HTTP), SAFETY_BENCH_SEGMENT (0.5 s / 1 s; 20 s on the
# full-size model), SAFETY_BENCH_WINDOW (5ms), SAFETY_BENCH_CONFIGS (a comma-separated subset of the configuration
# names, e.g. batch8/off/callers=1,single/on/callers=8 for a focused comparison), SAFETY_BENCH_ON_FIRST=1 (load the
# batching checker before the other one: the checker loaded second ran a few per cent slower here), OUT
# (out/bench-serving).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/bench-serving}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
go test -c -o "$OUT/safety.test" .
go test -c -o "$OUT/safetyd.test" ./cmd/safetyd
{
  echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(uptime)"
  "$OUT/safety.test" -test.run '^$' -test.bench 'BenchmarkConcurrentCallers' -test.benchtime 1x -test.v
  echo "$(uptime)"
  (cd cmd/safetyd && "$OUT/safetyd.test" -test.run '^$' -test.bench 'BenchmarkHTTP' -test.benchtime 1x -test.v)
  echo "$(uptime)"
} 2>&1 | tee "$OUT/bench.txt"
