#!/usr/bin/env bash
# Install the optional benchmark/test peer `torchsort` (CPU-only build) into the
# current Python environment. Used by benchmarks/bench_isotonic.py and
# tests/test_isotonic.py::test_against_torchsort (which skips if it's missing).
#
# Why this is needed: a plain `pip install torchsort` fails on these machines because
#   (a) its build isolation installs an unpinned `torch` into a throwaway build env
#       (a multi-GB CUDA build from PyPI), and
#   (b) torchsort's setup.py adds a CUDAExtension whenever an `nvcc` executable is on
#       PATH (this image ships a CUDA 13 toolkit at /usr/local/bin/nvcc but has no GPU),
#       and the CUDA extension build then fails.
# Fix: build against the already-installed CPU torch (--no-build-isolation) with nvcc
# hidden from PATH, so only torchsort.isotonic_cpu is compiled. No source patch.
#
# Usage: bash benchmarks/install_torchsort.sh   (with the target venv active, or
#        PYTHON=/path/to/python bash benchmarks/install_torchsort.sh)
set -euo pipefail

PY=$(command -v "${PYTHON:-python}")          # absolute path: PATH is filtered below
TORCH_VERSION=${TORCH_VERSION:-2.13.0}         # CPU wheel lies in /opt/wheels on this image
TORCHSORT_VERSION=${TORCHSORT_VERSION:-0.1.10}

# 1. CPU torch (skip if some torch is already importable; don't install it twice).
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install "torch==${TORCH_VERSION}"
fi
"$PY" -m pip install "setuptools>=61"

# 2. PATH without any directory that holds an nvcc executable.
nvcc_free_path=$(
  IFS=:
  for d in $PATH; do
    [ -x "$d/nvcc" ] || printf '%s:' "$d"
  done
)
nvcc_free_path=${nvcc_free_path%:}

# 3. Build torchsort's C++ (OpenMP) extension against the installed torch.
PATH="$nvcc_free_path" "$PY" -m pip install --no-build-isolation \
  "torchsort==${TORCHSORT_VERSION}"

# 4. Smoke check: L2 soft ranks of [0.3,-1.2,2.5,0.4] at strength 0.5 are [2.4,1,4,2.6].
"$PY" - <<'EOF'
import torch, torchsort
x = torch.tensor([[0.3, -1.2, 2.5, 0.4]], dtype=torch.float64)
r = torchsort.soft_rank(x, regularization_strength=0.5)
assert torch.allclose(r, torch.tensor([[2.4, 1.0, 4.0, 2.6]], dtype=torch.float64)), r
print("torch", torch.__version__, "| torchsort OK:", r.tolist())
EOF
