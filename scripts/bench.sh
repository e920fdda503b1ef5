#!/usr/bin/env bash
# bench.sh: this module (Go, examples/bench) against the Python reference (reference/bench_reference.py) on the
# full-size ViT-L/14 checkpoint, on the CPU, with the same thread count on both sides.
#
# Runs (each a fresh process; the two sides alternate, go then ref, for every configuration and round):
#   sgemm   a 2048³ float32 (and bfloat16) matmul through gotch and through torch: the machine's GEMM rate
#   load    Load + Close of the 1.2 GB safetensors checkpoint (ours, warm page cache)
#   cold    process start → first verdict of one image, model load included (float32)
#   model   CheckPixels / forward only, per dtype in float32 bfloat16 and batch in 1 8
#   e2e     PNG files → decode + preprocess + model + scores, same grid
# and prints a table, then one BENCH line per dtype/batch, the last one for float32 batch 8.
#
# Environment: BENCH_ROUNDS (3), BENCH_THREADS (nproc), BENCH_DTYPES ("float32 bfloat16"), BENCH_BATCHES
# ("1 8"), BENCH_ITERS_SCALE (1; multiplies the per-configuration iteration counts), BENCH_FULLSIZE
# (bench-cache/fullsize), BENCH_IMAGES (bench-cache/images), BENCH_OUT (out/bench), PY (.venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
FULL=${BENCH_FULLSIZE:-bench-cache/fullsize}
IMAGES=${BENCH_IMAGES:-bench-cache/images}
OUT=${BENCH_OUT:-out/bench}
ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${BENCH_THREADS:-$(nproc)}
DTYPES=${BENCH_DTYPES:-float32 bfloat16}
BATCHES=${BENCH_BATCHES:-1 8}
SCALE=${BENCH_ITERS_SCALE:-1}
MODEL="$FULL/model"
BIN="$OUT/safety-bench"
RES="$OUT/results.jsonl"

log() { echo "bench: $*" >&2; }

if [ ! -x "$PY" ]; then
  echo "bench: $PY not found: run 'make reference' first" >&2
  exit 1
fi
if [ ! -f "$FULL/.complete" ]; then
  log "creating the full-size checkpoint in $FULL (once, ~1.2 GB)"
  "$PY" reference/fullsize.py "$FULL"
fi
mkdir -p "$OUT"
log "building examples/bench"
go build -o "$BIN" ./examples/bench
n_images=$(find "$IMAGES" -maxdepth 1 -name 'img_*.png' 2>/dev/null | wc -l)
if [ "$n_images" -lt 8 ]; then
  log "writing 8 deterministic 512x512 PNG images into $IMAGES"
  "$BIN" --mode images --images "$IMAGES" --count 8 --size 512 >/dev/null
fi
: >"$RES"

# iters DTYPE BATCH → "ITERS WARMUP" (about 10-25 s of model time per run on a 2-core machine)
iters() {
  local it wu
  case "$1/$2" in
    float32/1) it=4 wu=1 ;;
    float32/8) it=2 wu=1 ;;
    bfloat16/1) it=8 wu=2 ;;
    *) it=3 wu=1 ;;
  esac
  it=$(awk -v a="$it" -v s="$SCALE" 'BEGIN { n = int(a * s + 0.5); print (n < 1 ? 1 : n) }')
  echo "$it $wu"
}

# record SIDE KEY JSON: append one result to $RES
record() {
  local side=$1 key=$2 line=$3
  if ! echo "$line" | grep -q '^{'; then
    log "$side $key: no JSON result; stderr ends with:"
    tail -n 5 "$OUT/last-$side.err" >&2 || true
    return 0
  fi
  echo "{\"side\":\"$side\",\"key\":\"$key\",\"r\":$line}" >>"$RES"
  echo "$line" | "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read()); print("bench:   %-3s %-22s %s" % (sys.argv[1], sys.argv[2], ", ".join("%s=%s" % (k, round(r[k], 3) if isinstance(r[k], float) else r[k]) for k in ("images_per_s", "seconds", "gflops", "load_s", "peak_rss_mb") if k in r)))' "$side" "$key" >&2
}

go_run() { "$BIN" --model "$MODEL" --images "$IMAGES" --threads "$THREADS" "$@" 2>"$OUT/last-go.err" | tail -n 1; }
ref_run() {
  "$PY" reference/bench_reference.py --model "$MODEL" --images "$IMAGES" --threads "$THREADS" "$@" \
    2>"$OUT/last-ref.err" | tail -n 1
}

torch_gemm() { # DTYPE ITERS: the same product through torch in the venv
  "$PY" - "$1" "$2" "$THREADS" <<'PY'
import json, resource, sys, time
import torch
dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[sys.argv[1]]
iters, threads = int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(1)
a = (torch.rand(2048, 2048, generator=g) - 0.5).to(dt)
b = (torch.rand(2048, 2048, generator=g) - 0.5).to(dt)
with torch.inference_mode():
    a @ b
    t = time.perf_counter()
    for _ in range(iters):
        a @ b
    s = time.perf_counter() - t
print(json.dumps({"mode": "sgemm", "dtype": sys.argv[1], "seconds": s, "iters": iters, "threads": torch.get_num_threads(),
                  "gflops": 2 * 2048 ** 3 * iters / s / 1e9, "torch": torch.__version__,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
PY
}

start=$(date +%s)
log "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs, threads=$THREADS, rounds=$ROUNDS; load: $(cut -d' ' -f1-3 /proc/loadavg)"
log "warming the page cache with $MODEL/model.safetensors"
cat "$MODEL/model.safetensors" >/dev/null

for round in $(seq 1 "$ROUNDS"); do
  log "round $round/$ROUNDS (load average $(cut -d' ' -f1 /proc/loadavg))"
  for dt in float32 bfloat16; do
    record go "sgemm/$dt" "$(go_run --mode sgemm --dtype "$dt" --iters 10 --warmup 2)"
    record ref "sgemm/$dt" "$(torch_gemm "$dt" 10)"
  done
  record go load "$(go_run --mode load --dtype float32 --iters 1)"
  t0=$(date +%s.%N)
  record go cold "$(go_run --mode cold --dtype float32 --t0 "$t0" --iters 1)"
  t0=$(date +%s.%N)
  record ref cold "$(ref_run --mode cold --dtype float32 --t0 "$t0" --iters 1)"
  for dt in $DTYPES; do
    for b in $BATCHES; do
      read -r it wu < <(iters "$dt" "$b")
      for mode in model e2e; do
        key="$mode/$dt/$b"
        record go "$key" "$(go_run --mode "$mode" --dtype "$dt" --batch "$b" --iters "$it" --warmup "$wu")"
        record ref "$key" "$(ref_run --mode "$mode" --dtype "$dt" --batch "$b" --iters "$it" --warmup "$wu")"
      done
    done
  done
done
log "all runs done in $(($(date +%s) - start)) s; load average $(cut -d' ' -f1-3 /proc/loadavg)"

"$PY" - "$RES" "$DTYPES" "$BATCHES" <<'PY'
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
dtypes, batches = sys.argv[2].split(), [int(b) for b in sys.argv[3].split()]


def vals(side, key, field):
    return [r["r"][field] for r in rows if r["side"] == side and r["key"] == key and r["r"].get(field) is not None]


def med(side, key, field):
    v = vals(side, key, field)
    return statistics.median(v) if v else float("nan")


def fmt(x, nd=2):
    return "n/a" if x != x else f"{x:.{nd}f}"


def ratio(a, b):
    return a / b if b and a == a and b == b else float("nan")


sg_go, sg_ref = med("go", "sgemm/float32", "gflops"), med("ref", "sgemm/float32", "gflops")
bg_go, bg_ref = med("go", "sgemm/bfloat16", "gflops"), med("ref", "sgemm/bfloat16", "gflops")
cold_go, cold_ref = med("go", "cold", "seconds"), med("ref", "cold", "seconds")
cold_ratio = ratio(cold_ref, cold_go)
load_go = med("go", "load", "load_s")
print()
print(f"GEMM 2048^3 GFLOP/s (median): float32 gotch {fmt(sg_go, 1)} torch {fmt(sg_ref, 1)}; "
      f"bfloat16 gotch {fmt(bg_go, 1)} torch {fmt(bg_ref, 1)}")
print(f"cold start (s, median): go {fmt(cold_go)} (load {fmt(med('go', 'cold', 'load_s'))}, "
      f"first image {fmt(med('go', 'cold', 'first_batch_s'))}), ref {fmt(cold_ref)}; ratio {fmt(cold_ratio)}")
print(f"load of the 1.2 GB safetensors (go, warm page cache, median): {fmt(load_go)} s; "
      f"all: {[round(x, 2) for x in vals('go', 'load', 'load_s')]}")
print()
hdr = ("dtype", "batch", "go e2e img/s", "ref e2e img/s", "e2e ratio", "go model img/s", "ref model img/s",
       "model ratio", "go GFLOP/s", "go RSS MB", "ref RSS MB", "rss ratio")
print("| " + " | ".join(hdr) + " |")
print("|" + "---|" * len(hdr))
lines = []
for dt in dtypes:
    for b in batches:
        e_go, e_ref = med("go", f"e2e/{dt}/{b}", "images_per_s"), med("ref", f"e2e/{dt}/{b}", "images_per_s")
        m_go, m_ref = med("go", f"model/{dt}/{b}", "images_per_s"), med("ref", f"model/{dt}/{b}", "images_per_s")
        gf = med("go", f"model/{dt}/{b}", "gflops")
        rss_go, rss_ref = med("go", f"model/{dt}/{b}", "peak_rss_mb"), med("ref", f"model/{dt}/{b}", "peak_rss_mb")
        print("| " + " | ".join([dt, str(b), fmt(e_go, 3), fmt(e_ref, 3), fmt(ratio(e_go, e_ref)), fmt(m_go, 3),
                                 fmt(m_ref, 3), fmt(ratio(m_go, m_ref)), fmt(gf, 1), fmt(rss_go, 0), fmt(rss_ref, 0),
                                 fmt(ratio(rss_ref, rss_go))]) + " |")
        lines.append((dt, b, f"BENCH device=cpu dtype={dt} batch={b} e2e_ratio={fmt(ratio(e_go, e_ref))} "
                             f"model_ratio={fmt(ratio(m_go, m_ref))} cold_ratio={fmt(cold_ratio)} "
                             f"rss_ratio={fmt(ratio(rss_ref, rss_go))} go_img_s={fmt(e_go, 3)} "
                             f"ref_img_s={fmt(e_ref, 3)} model_gflops={fmt(gf, 1)} sgemm_gflops={fmt(sg_go, 1)}"))
print()
print("(go_img_s/ref_img_s: end-to-end images/s; model_gflops: our model-only rate at 162.0 GFLOP per image; "
      "sgemm_gflops: 2048^3 float32 matmul through gotch; RSS: peak of the model-mode process, load included; "
      "cold_ratio: float32, batch 1)")
lines.sort(key=lambda x: (x[0] == "float32" and x[1] == 8, x[0] == "float32", x[1]))
for _, _, l in lines:
    print(l)
PY
