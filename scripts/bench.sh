#!/usr/bin/env bash
# bench.sh: this module (Go, examples/bench) against the Python reference (reference/bench_reference.py) on the
# full-size ViT-L/14 checkpoint, on the CPU, with the same thread count on both sides.
#
# Our side runs once per libtorch in BENCH_LIBTORCH (default "2.1.0 2.15.0": gotch's own version and the
# newest on PyPI, each configured by cmd/safety-setup in the per-user cache and built through a go.work of
# its own), so the sides are go@2.1.0, go@2.15.0 and ref.
# Runs (each a fresh process; for every configuration the sides run back to back, go@… then ref, and the
# whole grid is repeated BENCH_ROUNDS times: ABAB):
#   sgemm   a 2048³ float32 (and bfloat16) matmul through gotch and through torch, 3 untimed then 10 timed: the
#           machine's GEMM rate, from the median product
#   load    Load + Close of the 1.2 GB safetensors checkpoint (ours, warm page cache)
#   cold    process start → first verdict of one image, model load included (float32)
#   model   CheckPixels / forward only, for dtype in float32 bfloat16 and batch in 1 8
#   e2e     PNG files → decode + preprocess + model + scores, same grid
#   verdicts  bfloat16 against float32 on ../shared/parity (ours; the tiny model, a few seconds)
# then prints a table and one BENCH line per (libtorch, dtype, batch), each with a libtorch=VERSION field, the
# last one for float32 batch 8 on BENCH_DEFAULT_LIBTORCH (the README's default, 2.1.0).
#
# The machine is shared: before each go/ref pair the script waits (BENCH_QUIET_WAIT seconds at most, out
# of a BENCH_QUIET_BUDGET for the whole run) for the CPUs to be at least BENCH_QUIET_IDLE % idle, and it
# records how idle they were. Medians are over the rounds; "paired" ratios are the median of the per-round
# go/ref ratios, "best" uses each side's fastest run (contention only ever slows a run down).
#
# Environment: BENCH_ROUNDS (3), BENCH_THREADS (nproc), BENCH_DTYPES ("float32 bfloat16"), BENCH_BATCHES
# ("1 8"), BENCH_ITERS_SCALE (1; multiplies the per-configuration iteration counts), BENCH_QUIET_IDLE (85),
# BENCH_QUIET_WAIT (40), BENCH_QUIET_BUDGET (300), BENCH_FULLSIZE (bench-cache/fullsize), BENCH_IMAGES
# (bench-cache/images), BENCH_OUT (out/bench), PARITY (../shared/parity), PY (.venv/bin/python),
# BENCH_LIBTORCH ("2.1.0 2.15.0"), BENCH_DEFAULT_LIBTORCH (2.1.0), BENCH_REF_MKL_INTEL (0; 1 runs the
# reference with MKL told it is on an Intel CPU, as our side is by default on CPUs with AVX-512F: a one-line
# mkl_serv_intel_cpu_true built with cc into $BENCH_OUT and LD_PRELOADed; see docs/performance.md).
# SAFETY_MKL_INTEL_PATH (unset) passes through to our side (0: MKL's own answer, as the reference gets).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
FULL=${BENCH_FULLSIZE:-bench-cache/fullsize}
IMAGES=${BENCH_IMAGES:-bench-cache/images}
OUT=${BENCH_OUT:-out/bench}
PARITY=${PARITY:-../shared/parity}
ROUNDS=${BENCH_ROUNDS:-3}
THREADS=${BENCH_THREADS:-$(nproc)}
DTYPES=${BENCH_DTYPES:-float32 bfloat16}
BATCHES=${BENCH_BATCHES:-1 8}
SCALE=${BENCH_ITERS_SCALE:-1}
QUIET_IDLE=${BENCH_QUIET_IDLE:-85}
QUIET_WAIT=${BENCH_QUIET_WAIT:-40}
QUIET_BUDGET=${BENCH_QUIET_BUDGET:-300}
LIBTORCHES=${BENCH_LIBTORCH:-2.1.0 2.15.0}
DEFAULT_LIBTORCH=${BENCH_DEFAULT_LIBTORCH:-2.1.0}
MODEL="$FULL/model"
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
REF_PRELOAD=""
if [ "${BENCH_REF_MKL_INTEL:-0}" = 1 ]; then
  printf 'int mkl_serv_intel_cpu_true(void) { return 1; }\n' >"$OUT/mkl_intel.c"
  cc -shared -fPIC -O2 -o "$OUT/mkl_intel.so" "$OUT/mkl_intel.c"
  REF_PRELOAD=$(realpath "$OUT/mkl_intel.so")
fi
GOWORK=off go build -o "$OUT/safety-setup" ./cmd/safety-setup
gover=$(go env GOVERSION)
for v in $LIBTORCHES; do
  log "libtorch $v: configuring (once, minutes) and building examples/bench"
  dir=$("$OUT/safety-setup" -q -torch "$v" -no-edit)
  mkdir -p "$OUT/libtorch-$v"
  printf 'go %s\n\nuse %s\n\nreplace github.com/sugarme/gotch v0.9.1 => %s\n' "${gover#go}" "$PWD" "$dir" >"$OUT/libtorch-$v/go.work"
  GOWORK="$PWD/$OUT/libtorch-$v/go.work" go build -o "$OUT/safety-bench-$v" ./examples/bench
done
BIN="$OUT/safety-bench-$DEFAULT_LIBTORCH"
[ -x "$BIN" ] || BIN="$OUT/safety-bench-${LIBTORCHES%% *}"
GOWORK="$PWD/$OUT/libtorch-$(basename "$BIN" | sed 's/safety-bench-//')/go.work" go build -o "$OUT/safetycheck" ./examples/safetycheck
# (find fails when the folder does not exist yet, as on a fresh clone: that is a count of 0, not an error)
n_images=$( { find "$IMAGES" -maxdepth 1 -name 'img_*.png' 2>/dev/null || true; } | wc -l)
if [ "$n_images" -lt 8 ]; then
  log "writing 8 deterministic 512x512 PNG images into $IMAGES"
  "$BIN" --mode images --images "$IMAGES" --count 8 --size 512 >/dev/null
fi
: >"$RES"

# iters DTYPE BATCH → "ITERS WARMUP" (a few seconds to ~15 s of model time per run on a 2-core machine)
iters() {
  local it wu
  case "$1/$2" in
    float32/1) it=3 wu=1 ;;
    float32/8) it=1 wu=1 ;;
    bfloat16/1) it=6 wu=1 ;;
    *) it=2 wu=1 ;;
  esac
  it=$(awk -v a="$it" -v s="$SCALE" 'BEGIN { n = int(a * s + 0.5); print (n < 1 ? 1 : n) }')
  echo "$it $wu"
}

# idle_pct: percentage of CPU time idle over the next second (all CPUs)
idle_pct() {
  local a b
  read -r -a a < <(head -n 1 /proc/stat)
  sleep 1
  read -r -a b < <(head -n 1 /proc/stat)
  local t=0 i
  for i in 1 2 3 4 5 6 7 8; do t=$((t + b[i] - a[i])); done
  local idle=$((b[4] + b[5] - a[4] - a[5]))
  echo $((t > 0 ? 100 * idle / t : 100))
}

IDLE=100
quiet_spent=0
# wait_quiet: wait for an idle machine (bounded per call and in total); sets IDLE
wait_quiet() {
  local waited=0
  IDLE=$(idle_pct)
  while [ "$IDLE" -lt "$QUIET_IDLE" ] && [ "$waited" -lt "$QUIET_WAIT" ] && [ "$quiet_spent" -lt "$QUIET_BUDGET" ]; do
    IDLE=$(idle_pct)
    waited=$((waited + 1))
    quiet_spent=$((quiet_spent + 1))
  done
  if [ "$IDLE" -lt "$QUIET_IDLE" ]; then
    log "  (CPUs only ${IDLE}% idle after waiting ${waited} s; measuring anyway)"
  fi
}

ROUND=0
# record SIDE KEY JSON: append one result to $RES
record() {
  local side=$1 key=$2 line=$3
  if ! echo "$line" | grep -q '^{'; then
    log "$side $key: no JSON result; stderr ends with:"
    tail -n 5 "$OUT/last-$side.err" >&2 || true
    return 0
  fi
  echo "{\"side\":\"$side\",\"key\":\"$key\",\"round\":$ROUND,\"idle_before\":$IDLE,\"r\":$line}" >>"$RES"
  echo "$line" | "$PY" -c 'import json,sys; r=json.loads(sys.stdin.read()); print("bench:   %-3s %-18s %s" % (sys.argv[1], sys.argv[2], ", ".join("%s=%s" % (k, round(r[k], 3) if isinstance(r[k], float) else r[k]) for k in ("images_per_s", "seconds", "gflops", "load_s", "peak_rss_mb") if k in r)))' "$side" "$key" >&2
}

LT=$DEFAULT_LIBTORCH # the libtorch go_run uses
go_run() { "$OUT/safety-bench-$LT" --model "$MODEL" --images "$IMAGES" --threads "$THREADS" "$@" 2>"$OUT/last-go.err" | tail -n 1; }
ref_run() {
  env ${REF_PRELOAD:+LD_PRELOAD=$REF_PRELOAD} "$PY" reference/bench_reference.py --model "$MODEL" --images "$IMAGES" --threads "$THREADS" "$@" \
    2>"$OUT/last-ref.err" | tail -n 1
}

torch_gemm() { # DTYPE ITERS: the same product through torch in the venv
  env ${REF_PRELOAD:+LD_PRELOAD=$REF_PRELOAD} "$PY" - "$1" "$2" "$THREADS" 2>"$OUT/last-ref.err" <<'PY'
import json, resource, sys, time
import torch
dt = {"float32": torch.float32, "bfloat16": torch.bfloat16}[sys.argv[1]]
iters, threads = int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(1)
a = (torch.rand(2048, 2048, generator=g) - 0.5).to(dt)
b = (torch.rand(2048, 2048, generator=g) - 0.5).to(dt)
with torch.inference_mode():
    for _ in range(3):
        a @ b
    all_s = []
    for _ in range(iters):
        t = time.perf_counter()
        a @ b
        all_s.append(time.perf_counter() - t)
med = sorted(all_s)[len(all_s) // 2] if len(all_s) % 2 else sum(sorted(all_s)[len(all_s) // 2 - 1:len(all_s) // 2 + 1]) / 2
print(json.dumps({"mode": "sgemm", "dtype": sys.argv[1], "seconds": sum(all_s), "iters": iters, "all_s": all_s,
                  "threads": torch.get_num_threads(), "gflops": 2 * 2048 ** 3 / med / 1e9, "torch": torch.__version__,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
PY
}

start=$(date +%s)
log "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs, threads=$THREADS, rounds=$ROUNDS; load: $(cut -d' ' -f1-3 /proc/loadavg)"
log "warming the page cache with $MODEL/model.safetensors"
cat "$MODEL/model.safetensors" >/dev/null

for round in $(seq 1 "$ROUNDS"); do
  ROUND=$round
  log "round $round/$ROUNDS (load average $(cut -d' ' -f1 /proc/loadavg), $(($(date +%s) - start)) s so far)"
  for dt in float32 bfloat16; do
    wait_quiet
    for LT in $LIBTORCHES; do
      record "go@$LT" "sgemm/$dt" "$(go_run --mode sgemm --dtype "$dt" --iters 10 --warmup 3)"
    done
    record ref "sgemm/$dt" "$(torch_gemm "$dt" 10)"
  done
  for LT in $LIBTORCHES; do
    wait_quiet
    record "go@$LT" load "$(go_run --mode load --dtype float32 --iters 1)"
  done
  wait_quiet
  for LT in $LIBTORCHES; do
    t0=$(date +%s.%N)
    record "go@$LT" cold "$(go_run --mode cold --dtype float32 --t0 "$t0" --iters 1)"
  done
  t0=$(date +%s.%N)
  record ref cold "$(ref_run --mode cold --dtype float32 --t0 "$t0" --iters 1)"
  for dt in $DTYPES; do
    for b in $BATCHES; do
      read -r it wu < <(iters "$dt" "$b")
      for mode in model e2e; do
        key="$mode/$dt/$b"
        wait_quiet
        for LT in $LIBTORCHES; do
          record "go@$LT" "$key" "$(go_run --mode "$mode" --dtype "$dt" --batch "$b" --iters "$it" --warmup "$wu")"
        done
        record ref "$key" "$(ref_run --mode "$mode" --dtype "$dt" --batch "$b" --iters "$it" --warmup "$wu")"
      done
    done
  done
done
log "timed runs done in $(($(date +%s) - start)) s (waited ${quiet_spent} s for quiet); load average $(cut -d' ' -f1-3 /proc/loadavg)"

# bfloat16 against float32 on the parity fixture: same verdicts, scores within 5e-3 (a verdict may only
# flip where float32's unrounded score is within 5e-3 of the edge).
verdicts="n/a"
if [ -d "$PARITY/images" ] && [ -d "$PARITY/model" ]; then
  for dt in float32 bfloat16; do
    "$OUT/safetycheck" -q -json -device cpu -dtype "$dt" -threads "$THREADS" -model "$PARITY/model" \
      "$PARITY/images" >"$OUT/parity-$dt.jsonl" 2>"$OUT/last-go.err" || true
  done
  verdicts=$("$PY" - "$OUT/parity-float32.jsonl" "$OUT/parity-bfloat16.jsonl" <<'PY'
import json, sys
f32 = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
bf = [json.loads(l) for l in open(sys.argv[2]) if l.strip()]
if not f32 or len(f32) != len(bf) or any("error" in r for r in f32 + bf):
    print("error")
    sys.exit()
same = diff = 0
worst = 0.0
for a, b in zip(f32, bf):
    sa, sb = a["concept_scores"] + a["special_scores"], b["concept_scores"] + b["special_scores"]
    worst = max(worst, max(abs(x - y) for x, y in zip(sa, sb)))
    edge = min(abs(x) for x in a["concept_scores"])
    if a["nsfw"] == b["nsfw"] and a["bad_concepts"] == b["bad_concepts"]:
        same += 1
    elif edge < 5e-3:
        same += 1  # allowed flip: float32's score is within 5e-3 of the edge
    else:
        diff += 1
print(f"{same}/{same + diff} images with float32's verdicts, max score difference {worst:.4f}")
PY
)
fi
log "bfloat16 vs float32 on $PARITY: $verdicts"

"$PY" - "$RES" "$DTYPES" "$BATCHES" "$verdicts" "$LIBTORCHES" "$DEFAULT_LIBTORCH" "${BENCH_REF_MKL_INTEL:-0}" <<'PY'
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
dtypes, batches = sys.argv[2].split(), [int(b) for b in sys.argv[3].split()]
verdicts = sys.argv[4]
libtorches, default_lt = sys.argv[5].split(), sys.argv[6]
ref_mkl = int(sys.argv[7] == "1")
nan = float("nan")


def vals(side, key, field):
    return [r["r"][field] for r in rows if r["side"] == side and r["key"] == key and r["r"].get(field) is not None]


def med(side, key, field):
    v = vals(side, key, field)
    return statistics.median(v) if v else nan


def best(side, key, field, low=False):
    v = vals(side, key, field)
    return (min(v) if low else max(v)) if v else nan


def paired(go, key, field, inverse=False):
    """median over rounds of go/ref (ref/go with inverse), go being one of the go@VERSION sides."""
    by = {}
    for r in rows:
        if r["key"] == key and r["r"].get(field):
            by.setdefault(r["round"], {})[r["side"]] = r["r"][field]
    q = [(p["ref"] / p[go] if inverse else p[go] / p["ref"]) for p in by.values() if go in p and "ref" in p]
    return statistics.median(q) if q else nan


def fmt(x, nd=2):
    return "n/a" if x != x else f"{x:.{nd}f}"


def ratio(a, b):
    return a / b if b and a == a and b == b else nan


lines = []
for lt in libtorches:
    go = "go@" + lt
    print()
    print(f"## libtorch {lt}" + (" (the default)" if lt == default_lt else ""))
    sg_go, sg_ref = med(go, "sgemm/float32", "gflops"), med("ref", "sgemm/float32", "gflops")
    bg_go, bg_ref = med(go, "sgemm/bfloat16", "gflops"), med("ref", "sgemm/bfloat16", "gflops")
    cold_go, cold_ref = med(go, "cold", "seconds"), med("ref", "cold", "seconds")
    cold_ratio = ratio(cold_ref, cold_go)
    load_go = med(go, "load", "load_s")
    go_mkl = int(any(r["r"].get("mkl_intel_path") for r in rows if r["side"] == go))
    idle = [r["idle_before"] for r in rows]
    print()
    print(f"CPU idle before the runs: median {statistics.median(idle) if idle else 'n/a'}%, min {min(idle) if idle else 'n/a'}%")
    print(f"GEMM 2048^3 GFLOP/s (median; best): float32 gotch {fmt(sg_go, 1)}; {fmt(best(go, 'sgemm/float32', 'gflops'), 1)}, "
          f"torch {fmt(sg_ref, 1)}; {fmt(best('ref', 'sgemm/float32', 'gflops'), 1)} | bfloat16 gotch {fmt(bg_go, 1)}; "
          f"{fmt(best(go, 'sgemm/bfloat16', 'gflops'), 1)}, torch {fmt(bg_ref, 1)}; {fmt(best('ref', 'sgemm/bfloat16', 'gflops'), 1)}")
    print(f"cold start s (median; best): go {fmt(cold_go)}; {fmt(best(go, 'cold', 'seconds', True))} "
          f"(start-up {fmt(med(go, 'cold', 'startup_s'))}, load {fmt(med(go, 'cold', 'load_s'))}, "
          f"first image {fmt(med(go, 'cold', 'first_batch_s'))}), ref {fmt(cold_ref)}; {fmt(best('ref', 'cold', 'seconds', True))}; "
          f"ratio {fmt(cold_ratio)}, paired {fmt(paired(go, 'cold', 'seconds', True))}")
    print(f"load of the 1.2 GB safetensors (go, warm page cache): median {fmt(load_go)} s, "
          f"all {[round(x, 2) for x in vals(go, 'load', 'load_s')]}")
    print(f"bfloat16 vs float32 verdicts on the parity fixture: {verdicts}")
    print(f"MKL told it runs on an Intel CPU (AVX-512 kernels): go {'yes' if go_mkl else 'no'}, ref {'yes' if ref_mkl else 'no'}")
    print()
    hdr = ("dtype", "batch", "go e2e img/s", "ref e2e img/s", "e2e ratio (paired; best)", "go model img/s", "ref model img/s",
           "model ratio (paired; best)", "go GFLOP/s (at 162)", "go RSS MB", "ref RSS MB", "rss ratio")
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    for dt in dtypes:
        for b in batches:
            ke, km = f"e2e/{dt}/{b}", f"model/{dt}/{b}"
            e_go, e_ref = med(go, ke, "images_per_s"), med("ref", ke, "images_per_s")
            m_go, m_ref = med(go, km, "images_per_s"), med("ref", km, "images_per_s")
            gf, gf162 = med(go, km, "gflops"), med(go, km, "gflops_162")
            rss_go, rss_ref = med(go, km, "peak_rss_mb"), med("ref", km, "peak_rss_mb")
            e_r, m_r = ratio(e_go, e_ref), ratio(m_go, m_ref)
            e_b = ratio(best(go, ke, "images_per_s"), best("ref", ke, "images_per_s"))
            m_b = ratio(best(go, km, "images_per_s"), best("ref", km, "images_per_s"))
            print("| " + " | ".join([dt, str(b), fmt(e_go, 3), fmt(e_ref, 3),
                                     f"{fmt(e_r)} ({fmt(paired(go, ke, 'images_per_s'))}; {fmt(e_b)})", fmt(m_go, 3), fmt(m_ref, 3),
                                     f"{fmt(m_r)} ({fmt(paired(go, km, 'images_per_s'))}; {fmt(m_b)})", f"{fmt(gf, 1)} ({fmt(gf162, 1)})",
                                     fmt(rss_go, 0), fmt(rss_ref, 0), fmt(ratio(rss_ref, rss_go))]) + " |")
            lines.append((lt, dt, b, f"BENCH device=cpu libtorch={lt} dtype={dt} batch={b} e2e_ratio={fmt(e_r)} model_ratio={fmt(m_r)} "
                                 f"cold_ratio={fmt(cold_ratio)} rss_ratio={fmt(ratio(rss_ref, rss_go))} go_img_s={fmt(e_go, 3)} "
                                 f"ref_img_s={fmt(e_ref, 3)} model_gflops={fmt(gf, 1)} sgemm_gflops={fmt(sg_go, 1)} "
                                 f"mkl_intel_path={go_mkl} ref_mkl_intel_path={ref_mkl}"))
    print()
    print("(medians over the rounds; go_img_s/ref_img_s: end-to-end images/s; model_gflops: our model-only rate on the "
          "156.4 GFLOP per image we execute (in brackets: at the reference's 162.0 GFLOP per image); sgemm_gflops: "
          "2048^3 float32 matmul through gotch; RSS: peak of the model-mode process, load included; cold_ratio: "
          "float32, one image)")

lines.sort(key=lambda x: (x[0] == default_lt and x[1] == "float32" and x[2] == 8, x[0] == default_lt, x[1] == "float32", x[2]))
for _, _, _, l in lines:
    print(l)
PY
