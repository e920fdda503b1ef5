#!/usr/bin/env bash
# setup-libtorch.sh: provide libtorch for the gotch build, idempotently.
#
# Result: .deps/libtorch -> a directory with lib/ and include/ (a libtorch tree).
# Sources, in order of preference:
#   1. $LIBTORCH, when set: an existing libtorch tree (lib/ + include/), e.g. /usr with Debian's
#      libtorch-dev, or a torch package directory (…/site-packages/torch).
#   2. The PyTorch $TORCH_VERSION wheel (default 2.1.0, the version gotch v0.9.1 was generated for) from
#      PyPI, checked against the sha256 the index publishes, unpacked into .deps/libtorch-$TORCH_VERSION.
#      Its libtorch_cpu.so needs libcudart and libcupti (for the profiler) even on a machine without a
#      GPU: those two come from the NVIDIA runtime wheels that torch pins, with the same check.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
deps="$root/.deps"
ver="${TORCH_VERSION:-2.1.0}"
py=${PYTHON:-python3}
mkdir -p "$deps"

if [ -n "${LIBTORCH:-}" ]; then
  [ -d "$LIBTORCH/lib" ] || { echo "setup-libtorch: \$LIBTORCH=$LIBTORCH has no lib/ directory" >&2; exit 1; }
  ln -sfn "$LIBTORCH" "$deps/libtorch"
  echo "setup-libtorch: using \$LIBTORCH=$LIBTORCH"
  exit 0
fi

dest="$deps/libtorch-$ver"
if [ -f "$dest/.complete" ]; then
  ln -sfn "$dest" "$deps/libtorch"
  echo "setup-libtorch: libtorch $ver already in $dest"
  exit 0
fi

cache="$deps/cache"
echo "setup-libtorch: fetching torch $ver from PyPI (~670 MB, once)"
whl=$($py "$root/scripts/fetch_wheel.py" torch "$ver" "$cache")

tmp="$dest.tmp"
rm -rf "$tmp"
mkdir -p "$tmp"
echo "setup-libtorch: unpacking torch/lib and torch/include"
# unpack WHEEL PREFIX OUT: extract the members under PREFIX into OUT (PREFIX stripped).
unpack() {
  $py - "$1" "$2" "$3" <<'PY'
import os, shutil, sys, zipfile
whl, prefix, out = sys.argv[1:4]
with zipfile.ZipFile(whl) as z:
    for info in z.infolist():
        n = info.filename
        if info.is_dir() or not n.startswith(prefix):
            continue
        path = os.path.join(out, n[len(prefix):])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with z.open(info) as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
}
unpack "$whl" torch/lib/ "$tmp/lib"
unpack "$whl" torch/include/ "$tmp/include"

# The NVIDIA runtime libraries libtorch_cpu.so is linked against, at the versions torch pins.
deps_needed=$(readelf -d "$tmp/lib/libtorch_cpu.so" | sed -n 's/.*NEEDED.*\[\(lib\(cudart\|cupti\)[^]]*\)\]/\1/p')
if [ -n "$deps_needed" ]; then
  $py - "$whl" <<'PY' > "$tmp/.nvidia-pins"
import re, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
for name in ("nvidia-cuda-runtime-cu12", "nvidia-cuda-cupti-cu12", "nvidia-cuda-runtime-cu11", "nvidia-cuda-cupti-cu11"):
    m = re.search(rf"^Requires-Dist: {name} \(?==([0-9.]+)", meta, re.M)
    if m:
        print(name, m.group(1))
PY
  while read -r name pin; do
    echo "setup-libtorch: $name $pin (for $(echo $deps_needed | tr '\n' ' '))"
    w=$($py "$root/scripts/fetch_wheel.py" "$name" "$pin" "$cache" py3)
    sub=$( [ "${name#*cupti}" != "$name" ] && echo cuda_cupti || echo cuda_runtime )
    unpack "$w" "nvidia/$sub/lib/" "$tmp/lib"
  done < "$tmp/.nvidia-pins"
fi
touch "$tmp/.complete"
rm -rf "$dest"
mv "$tmp" "$dest"
ln -sfn "$dest" "$deps/libtorch"
echo "setup-libtorch: libtorch $ver ready in $dest"
