#!/usr/bin/env bash
# setup-reference.sh: create the Python reference environment (.venv) idempotently.
#
# Installs the exact versions pinned in reference/requirements.txt (torch, transformers, diffusers,
# safetensors, Pillow, numpy) from PyPI into $ROOT/.venv (git-ignored). On Linux the PyPI torch wheel pulls
# the NVIDIA CUDA wheels (several GB): that happens once. A stamp (.venv/.reference-requirements.sha256) holds
# the sha256 of requirements.txt; when it matches and the imports work, the script does nothing.
#
# Environment: PYTHON (default python3, must be >= 3.10) picks the interpreter for a new venv;
#              REFERENCE_VENV overrides the venv location.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
venv="${REFERENCE_VENV:-$root/.venv}"
req="$root/reference/requirements.txt"
stamp="$venv/.reference-requirements.sha256"
py=${PYTHON:-python3}

want=$(sha256sum "$req" | cut -d' ' -f1)
check_imports() {
  "$venv/bin/python" - <<'PY'
import importlib, sys
for m in ("torch", "transformers", "diffusers", "safetensors", "PIL", "numpy"):
    importlib.import_module(m)
PY
}

if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  if check_imports 2>/dev/null; then
    echo "setup-reference: $venv is up to date with reference/requirements.txt (nothing to do)"
    exit 0
  fi
  echo "setup-reference: $venv has the stamp but imports fail; reinstalling"
fi

if [ ! -x "$venv/bin/python" ]; then
  $py - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"setup-reference: Python >= 3.10 needed, {sys.executable} is {sys.version.split()[0]}")
PY
  echo "setup-reference: creating virtualenv $venv with $($py --version 2>&1)"
  $py -m venv "$venv"
fi

rm -f "$stamp"
echo "setup-reference: upgrading pip"
"$venv/bin/python" -m pip install --quiet --upgrade pip
echo "setup-reference: installing reference/requirements.txt (the first time this downloads several GB)"
"$venv/bin/python" -m pip install --progress-bar off -r "$req"
echo "setup-reference: checking imports"
check_imports
"$venv/bin/python" - <<'PY'
import torch, transformers, diffusers, safetensors, PIL, numpy
print("setup-reference: torch", torch.__version__, "| transformers", transformers.__version__,
      "| diffusers", diffusers.__version__, "| safetensors", safetensors.__version__,
      "| Pillow", PIL.__version__, "| numpy", numpy.__version__)
PY
echo "$want" > "$stamp"
echo "setup-reference: ready ($venv)"
