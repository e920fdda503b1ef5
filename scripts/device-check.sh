#!/usr/bin/env bash
# device-check.sh: the CUDA check, in one run on the GPU machine (docs/cuda.md has the exact device call).
# That machine has python3 with PyTorch (CUDA) and transformers, g++ and nvcc, but no Go and no network;
# scripts/pack-device.sh (run here first) put a Go toolchain, gotch's source, the other modules and the parity
# fixture into .device/, which the call carries. Run from anywhere; results go to $OUT.
#
# Steps, each time-boxed (the whole run fits DEVICE_CHECK_BUDGET seconds, default 470; a step that would not
# fit is skipped and said so), each logged to $WORK/logs/STEP.log:
#   facts       GPU, driver, torch, compiler
#   unpack      Go from .device/go.tar.xz, the module cache, gotch's source
#   make-model  (in the background, from the start) reference/bench_cuda.py make-model: a random-weight
#               ViT-L/14 checker, 8 inputs and transformers' answers for them on this GPU in float32
#   configure   go run ./cmd/safety-setup against this python3's torch: LIBTORCH=torch's folder,
#               GOTCH_CXX11_ABI from torch.compiled_with_cxx11_abi(), GOTCH_CUDA=1, GOTCH_SRC=the shipped
#               source; as many compile jobs as cores, stubbing wrappers this libtorch does not compile
#   build       go test -c of the root package and internal/gotchutil
#   smoke       gotchutil: a matmul through gotch, the SDPA probe
#   cuda-tests  TestCUDAAutoSelect, TestCUDAParityFloat32 (parity fixture + golden models, within 1e-3),
#               TestCUDAHalfVerdicts (float16, bfloat16), TestCUDAMemoryStable (tiny model); when the
#               float32 parity fails, once more with NVIDIA_TF32_OVERRIDE=0 to tell TF32 convolutions
#               (cuDNN's default for float32) from real differences
#   fullsize    TestCUDAFullSize: ViT-L/14 against transformers on the same GPU (float32 within 1e-3,
#               float16/bfloat16 verdicts); on failure again with NVIDIA_TF32_OVERRIDE=0
#   bench-ref   reference/bench_cuda.py bench: transformers' CLIPVisionModel (SDPA) + diffusers' head
#   bench-go    TestCUDABenchmark: CheckPixels, same inputs, dtypes and batches
#   combine     side by side, BENCH lines
#   memory      TestCUDAMemoryStable on ViT-L/14 in float16: 1,000 checks, GPU memory and live tensors
# $OUT gets (at most 8 files come back): device-check.log (this transcript), summary.txt, bench.txt,
# logs.tgz (every step's log, the JSON Lines, BUILD_INFO.json, the reference's expected.json).
# The last line printed is the float16 batch-128 BENCH line.
#
# Environment: OUT (default out/device-check), DEVICE_CHECK_BUDGET (470), DEVICE_PYTHON (python3),
# DEVICE_WORK (/tmp/device-check), DEVICE_GOCACHE (a fresh $WORK/gocache), GOTCH_OPT (-O1),
# DEVICE_CHECK_SLOW (1: a factor on every step's own limit, for a dry run on a slow machine),
# BENCH_BATCHES (1,8,32,128), BENCH_DTYPES (float16,bfloat16), BENCH_SECONDS (1.5),
# DEVICE_CHECK_DRYRUN=1: on a machine without a GPU, the same steps on the CPU at toy sizes (a tiny model,
# batches 1 and 4), the GPU-only tests skipping: checks the script, the packed toolchain and the plumbing.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1

DRY=${DEVICE_CHECK_DRYRUN:-0}
BUDGET=${DEVICE_CHECK_BUDGET:-470}
PY=${DEVICE_PYTHON:-python3}
WORK=${DEVICE_WORK:-/tmp/device-check}
export SAFETY_CACHE_DIR=${SAFETY_CACHE_DIR:-$WORK/safety-cache} # cmd/safety-setup's cache: libtorch is the machine's torch, gotch is configured here
OUT=${OUT:-$root/out/device-check}
LOGS=$WORK/logs
RESERVE=12 # seconds kept for packing the results
SLOW=${DEVICE_CHECK_SLOW:-1} # multiplies every step's own limit (a dry run on a small machine)
START=$(date +%s)
if [ "$DRY" = 1 ]; then
  DEV=cpu PRESET=tiny
  BENCH_BATCHES=${BENCH_BATCHES:-1,4} BENCH_SECONDS=${BENCH_SECONDS:-0.3} MEM_CHECKS=50
else
  DEV=cuda PRESET=vitl14
  BENCH_BATCHES=${BENCH_BATCHES:-1,8,32,128} BENCH_SECONDS=${BENCH_SECONDS:-1.5} MEM_CHECKS=1000
fi
BENCH_DTYPES=${BENCH_DTYPES:-float16,bfloat16}
export PYTHONUNBUFFERED=1

mkdir -p "$OUT" "$LOGS"
rm -f "$OUT/summary.txt" "$OUT/bench.txt" "$OUT/device-check.log" "$OUT/logs.tgz"
SUMMARY=$OUT/summary.txt

elapsed() { echo $(($(date +%s) - START)); }
note() { echo "$*" >> "$SUMMARY"; echo "## $*"; }

# step NAME MAX_SECONDS CMD...: run CMD (a program or an exported function) under a time limit of
# min(MAX_SECONDS, what is left of the budget), its output in $LOGS/NAME.log (the last lines shown here).
step() {
  local name=$1 max=$2
  shift 2
  local left=$((BUDGET - $(elapsed) - RESERVE))
  max=$((max * SLOW))
  local lim=$((max < left ? max : left))
  if [ "$lim" -lt 5 ]; then
    note "SKIP    $name: out of time ($(elapsed)s of ${BUDGET}s used)"
    return 99
  fi
  echo "=== $name (limit ${lim}s, at $(elapsed)s)"
  local t0 rc
  t0=$(date +%s)
  timeout -k 5 "$lim" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  tail -n "${TAIL:-12}" "$LOGS/$name.log" | cut -c1-400
  local dt=$(($(date +%s) - t0))
  case $rc in
    0) note "OK      $name (${dt}s)" ;;
    124 | 137) note "TIMEOUT $name after ${dt}s (limit ${lim}s)" ;;
    *) note "FAIL    $name rc=$rc (${dt}s): see logs/$name.log" ;;
  esac
  return $rc
}

# --- the steps (functions, exported for `timeout bash -c`) ---

facts() {
  echo "date: $(date -u +%FT%TZ)  host: $(uname -srm)  cores: $(nproc)"
  free -g 2>/dev/null | head -2
  nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used,clocks.sm,clocks.max.sm --format=csv 2>&1 || true
  "$PY" - <<'PY' || true
import os, sys, torch
print("python", sys.version.split()[0], sys.executable)
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      "cxx11abi", torch.compiled_with_cxx11_abi(), "dir", os.path.dirname(torch.__file__))
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, "sm", f"{p.major}.{p.minor}", "multiprocessors", p.multi_processor_count,
          "memory_gib", round(p.total_memory / 2**30, 1))
try:
    import transformers
    print("transformers", transformers.__version__)
except ImportError as e:
    print("transformers missing:", e)
try:
    import diffusers
    print("diffusers", diffusers.__version__)
except ImportError:
    print("diffusers: not installed (bench_cuda.py uses its line-by-line copy of the head)")
PY
  ${CXX:-g++} --version | head -1
  for t in readelf nm xz tar timeout; do printf '%s: %s\n' "$t" "$(command -v $t || echo MISSING)"; done
  df -h "$WORK" | tail -1
}

unpack() {
  set -e
  local dev=$root/.device
  for f in go.tar.xz gotch.tar.xz gomodcache.tar; do
    [ -f "$dev/$f" ] || { echo "no $dev/$f: run scripts/pack-device.sh here and carry .device"; return 1; }
  done
  rm -rf "$WORK/go" "$WORK/gotch" "$WORK/gomodcache"
  mkdir -p "$WORK/gomodcache"
  untar() { # tar with xz, else Python's tarfile (no xz on the machine)
    tar -xf "$1" -C "$2" 2>/dev/null || "$PY" -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$1" "$2"
  }
  untar "$dev/go.tar.xz" "$WORK"
  untar "$dev/gotch.tar.xz" "$WORK"
  untar "$dev/gomodcache.tar" "$WORK/gomodcache"
  "$WORK/go/bin/go" version
  du -sh "$WORK/go" "$WORK/gotch" "$WORK/gomodcache"
}

make_model() {
  "$PY" reference/bench_cuda.py make-model "$WORK/model-$PRESET" --preset "$PRESET" --device "$DEV"
}

configure() {
  set -e
  LIBTORCH=$("$PY" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
  GOTCH_CXX11_ABI=$("$PY" -c 'import torch; print(int(torch.compiled_with_cxx11_abi()))')
  export LIBTORCH GOTCH_CXX11_ABI
  export GOTCH_CUDA=${GOTCH_CUDA:-1} GOTCH_SRC=$WORK/gotch GOTCH_OPT=${GOTCH_OPT:--O1}
  echo "LIBTORCH=$LIBTORCH GOTCH_CXX11_ABI=$GOTCH_CXX11_ABI GOTCH_CUDA=$GOTCH_CUDA GOTCH_OPT=$GOTCH_OPT"
  # the same Go setup command as `make setup` and applications use (cmd/safety-setup): go.work here
  go run ./cmd/safety-setup
  cat "$SAFETY_CACHE_DIR"/gotch/*/BUILD_INFO.json
}

build() {
  set -e
  go env GOROOT GOVERSION GOMODCACHE GOCACHE GOFLAGS GOPROXY
  go test -c -vet=off -o "$WORK/safety.test" .
  go test -c -vet=off -o "$WORK/gotchutil.test" ./internal/gotchutil
  ls -la "$WORK/safety.test" "$WORK/gotchutil.test"
  ldd "$WORK/safety.test" | grep -E 'gotchwrap|torch|c10|cudart|cublas|not found' || true
}

smoke() {
  cd internal/gotchutil && "$WORK/gotchutil.test" -test.v -test.count=1 -test.run 'TestSmoke|TestSDPAProbe'
}

gotest() { # gotest REGEXP: the root package's CUDA tests (run from the package folder, as go test does)
  "$WORK/safety.test" -test.v -test.count=1 -test.timeout 10m -test.run "$1"
}
cuda_tests() { gotest 'TestCUDA(AutoSelect|ParityFloat32|HalfVerdicts|MemoryStable)$'; }
cuda_tests_notf32() { NVIDIA_TF32_OVERRIDE=0 gotest 'TestCUDAParityFloat32$'; }
fullsize() { SAFETY_CUDA_FULLSIZE=$WORK/model-$PRESET gotest 'TestCUDAFullSize$'; }
fullsize_notf32() { NVIDIA_TF32_OVERRIDE=0 fullsize; }
memory() {
  SAFETY_CUDA_MEM_MODEL=$WORK/model-$PRESET/model SAFETY_CUDA_MEM_DTYPE=float16 SAFETY_CUDA_MEM_CHECKS=$MEM_CHECKS \
    gotest 'TestCUDAMemoryStable$'
}
bench_ref() {
  rm -f "$WORK/ref.jsonl"
  "$PY" reference/bench_cuda.py bench --model "$WORK/model-$PRESET/model" --inputs "$WORK/model-$PRESET/inputs.f32" \
    --dtypes "$BENCH_DTYPES" --batches "$BENCH_BATCHES" --seconds "$BENCH_SECONDS" --device "$DEV" --out "$WORK/ref.jsonl"
}
bench_go() {
  rm -f "$WORK/go.jsonl"
  SAFETY_CUDA_BENCH_MODEL=$WORK/model-$PRESET/model SAFETY_CUDA_BENCH_INPUTS=$WORK/model-$PRESET/inputs.f32 \
    SAFETY_CUDA_BENCH_OUT=$WORK/go.jsonl SAFETY_CUDA_BENCH_DTYPES=$BENCH_DTYPES SAFETY_CUDA_BENCH_BATCHES=$BENCH_BATCHES \
    SAFETY_CUDA_BENCH_SECONDS=$BENCH_SECONDS gotest 'TestCUDABenchmark$'
}
combine() { "$PY" reference/bench_cuda.py combine --go "$WORK/go.jsonl" --ref "$WORK/ref.jsonl"; }

export -f facts unpack make_model configure build smoke gotest cuda_tests cuda_tests_notf32 fullsize fullsize_notf32 memory \
  bench_ref bench_go combine
export root WORK PY DEV PRESET BENCH_BATCHES BENCH_DTYPES BENCH_SECONDS MEM_CHECKS
export SAFETY_PARITY_DIR=$root/.device/parity
[ "$DRY" = 1 ] && export SAFETY_CUDA_ALLOW_CPU=1

main() {
  echo "device-check: $(date -u +%FT%TZ) budget ${BUDGET}s, work $WORK, out $OUT, dry run: $DRY"
  note "device-check started $(date -u +%FT%TZ) (dry run: $DRY, budget ${BUDGET}s)"
  TAIL=40 step facts 30 bash -c facts

  # the model and the reference's answers need only the GPU: made while gotch compiles
  ( timeout -k 5 $((BUDGET / 2)) bash -c make_model > "$LOGS/make-model.log" 2>&1; echo $? > "$WORK/make-model.rc" ) &
  local mm=$!

  if ! step unpack 90 bash -c unpack; then
    note "ABORT: no Go toolchain"
    return 1
  fi
  export GOROOT=$WORK/go PATH=$WORK/go/bin:$PATH GOTOOLCHAIN=local GOPROXY=off GOSUMDB=off
  export GOFLAGS="-modcacherw -buildvcs=false" GOMODCACHE=$WORK/gomodcache GOCACHE=${DEVICE_GOCACHE:-$WORK/gocache}
  export CGO_ENABLED=1

  local built=0
  if TAIL=20 step configure 300 bash -c configure && step build 240 bash -c build; then
    built=1
  fi
  if [ $built = 1 ]; then
    step smoke 60 bash -c smoke
    if ! TAIL=40 step cuda-tests 180 bash -c cuda_tests; then
      grep -q -- '--- FAIL: TestCUDAParityFloat32' "$LOGS/cuda-tests.log" && TAIL=25 step cuda-tests-notf32 60 bash -c cuda_tests_notf32
    fi
  else
    note "SKIP    the Go tests and benchmark: no build"
  fi

  # the model (waits for the background job)
  local left=$((BUDGET - $(elapsed) - RESERVE))
  while kill -0 $mm 2> /dev/null && [ "$left" -gt 0 ]; do sleep 1; left=$((BUDGET - $(elapsed) - RESERVE)); done
  tail -n 3 "$LOGS/make-model.log"
  if [ "$(cat "$WORK/make-model.rc" 2>/dev/null)" = 0 ]; then
    note "OK      make-model ($PRESET on $DEV, in the background)"
    if [ $built = 1 ] && ! TAIL=20 step fullsize 120 bash -c fullsize; then
      grep -q -- '--- FAIL: TestCUDAFullSize' "$LOGS/fullsize.log" && TAIL=20 step fullsize-notf32 90 bash -c fullsize_notf32
    fi
    TAIL=20 step bench-ref 170 bash -c bench_ref
    [ $built = 1 ] && TAIL=20 step bench-go 150 bash -c bench_go
    TAIL=30 step combine 20 bash -c combine
    cp "$LOGS/combine.log" "$OUT/bench.txt" 2>/dev/null
    [ $built = 1 ] && [ "$DRY" != 1 ] && TAIL=8 step memory 90 bash -c memory
  else
    note "FAIL    make-model rc=$(cat "$WORK/make-model.rc" 2>/dev/null || echo '(still running)'): see logs/make-model.log"
  fi
  return 0
}

report() {
  # the findings worth reading first, then every step's status, then the BENCH lines (fp16 batch 128 last)
  {
    echo "--- findings (every test log line; the full logs are in logs.tgz)"
    grep -h -E 'configure-gotch: (done|gotch .* already)|libtorch .* wrappers stubbed' "$LOGS"/configure.log \
      "$LOGS"/smoke.log 2>/dev/null
    for f in cuda-tests cuda-tests-notf32 fullsize fullsize-notf32 bench-go memory; do
      [ -f "$LOGS/$f.log" ] || continue
      echo "[$f]"
      grep -h -E 'cuda_test.go:[0-9]+:|--- (FAIL|PASS|SKIP): TestCUDA|^panic|^FAIL' "$LOGS/$f.log" | head -60
    done | sed 's/^ *//' | cut -c1-300
  } >> "$SUMMARY"
  nvidia-smi --query-gpu=name,memory.used,clocks.sm --format=csv,noheader >> "$SUMMARY" 2>/dev/null
  echo "total $(elapsed)s of ${BUDGET}s" >> "$SUMMARY"
  cp -f "$SAFETY_CACHE_DIR"/gotch/*/BUILD_INFO.json "$LOGS/" 2>/dev/null
  cp -f "$WORK/model-$PRESET/expected.json" "$LOGS/reference-expected.json" 2>/dev/null
  cp -f "$WORK/ref.jsonl" "$WORK/go.jsonl" "$LOGS/" 2>/dev/null
  tar -czf "$OUT/logs.tgz" -C "$WORK" logs 2>/dev/null
  echo "======== summary"
  grep -v '^BENCH' "$SUMMARY"
  grep '^BENCH' "$LOGS/combine.log" 2>/dev/null || echo "BENCH device=$DEV dtype=float16 batch=128 ratio=nan go_img_s=nan ref_img_s=nan tflops=nan (no benchmark)"
  ! grep -q -E '^(FAIL|TIMEOUT|ABORT)' "$SUMMARY"
}

{
  main
  report
} 2>&1 | tee "$OUT/device-check.log"
exit "${PIPESTATUS[0]}"
