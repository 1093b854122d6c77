#!/usr/bin/env bash
# The GPU-scale SimCLR vs SimCLR+GH comparison (issue 7), for one GPU in about 10 minutes.
# Run from the repo root on the GPU machine after benchmarks/quality/gpu_prepare.sh has filled
# .carry/ (here) and .carry/ has travelled with the working tree. Resumable: rerun to continue.
# Writes runs/quality_gpu/ and the runs' records, benchmarks/results/quality_gpu/*.json; when $OUT
# is set (the device tool), copies the records to $OUT/quality_gpu/ and the small run files (logs,
# no checkpoints) to $OUT/quality_gpu_runs.tar.gz. Back here, copy the records into
# benchmarks/results/quality_gpu/ (committed); `python -m benchmarks.quality report` then adds
# their tables to docs/results.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if [ -d .carry/whl ] && ! "$PY" -c "import omegaconf, kornia" 2>/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/geoharmony-site .carry/whl/*.whl
  export PYTHONPATH=/tmp/geoharmony-site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
[ -d .carry/fmnist ] || { echo "no .carry/fmnist: run benchmarks/quality/gpu_prepare.sh first" >&2; exit 1; }
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv || true
start=$(date +%s)
status=0
"$PY" -m benchmarks.quality run --gpu --workers "${WORKERS:-4}" || status=$?
echo "GPU study: $(( $(date +%s) - start )) s, exit $status"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT/quality_gpu"
  cp benchmarks/results/quality_gpu/*.json "$OUT/quality_gpu/" 2>/dev/null || true
  # Small files only (no checkpoints), for a reader of the logs.
  (cd runs && find quality_gpu -maxdepth 2 \( -name '*.json' -o -name '*.jsonl' -o -name '*.txt' \
    -o -name '*.log' -o -name 'config.yaml' \) -print0 |
    tar czf "$OUT/quality_gpu_runs.tar.gz" --null -T -)
  ls -la "$OUT"
fi
exit $status
