#!/usr/bin/env bash
# Gather, on this (networked, CPU) machine, what the GPU-scale study needs on a GPU machine that
# can fetch nothing and has no Debian package: Fashion-MNIST's IDX files under .carry/fmnist and
# wheels of the dependencies its image lacks under .carry/whl (about 37 MB together; .carry/ is
# gitignored, so the device tool must be told to carry it).
#
#   bash benchmarks/quality/gpu_prepare.sh
#   then, on the GPU machine, from the repo root: bash benchmarks/quality/gpu_study.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=${FASHION_MNIST_ROOT:-/usr/share/datasets/fashion-mnist}
PY=${PYTHON:-.venv/bin/python}
PY_TARGET=${GPU_PYTHON_VERSION:-3.12}  # the GPU image's python3

for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -f "$SRC/$f.gz" ] || [ -f "$SRC/$f" ] || {
    echo "missing $SRC/$f(.gz): install the Debian package dataset-fashion-mnist" >&2
    exit 1
  }
done
mkdir -p .carry/fmnist .carry/whl
cp "$SRC"/*-ubyte* .carry/fmnist/
# Same versions as this environment, so both machines run the same code.
pins=$("$PY" - <<'PYEOF'
from importlib.metadata import version
print(" ".join(f"{n}=={version(n)}" for n in ("omegaconf", "kornia", "kornia_rs")))
PYEOF
)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PY_TARGET" \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d .carry/whl $pins
du -sh .carry
