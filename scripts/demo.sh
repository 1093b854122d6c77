#!/usr/bin/env bash
# The main job on a fresh machine: what the long tail costs the rare classes of Fashion-MNIST-LT
# (imbalance 100), and what GH changes. Three runs: SimCLR on the long-tailed set; SimCLR+GH
# paired with it (it continues SimCLR's run from the end of the GH warm-up, so the difference is
# GH's alone); SimCLR on a balanced set of the same image count, the reference that takes class
# difficulty out of the comparison. Then the tables, the per-class deficit plot and a reading.
# About 8 minutes on 2 free CPU cores with native bf16 (README.md gives the measured time).
# Usage: bash scripts/demo.sh [OUTPUT_DIR] [key=value ...]   (overrides apply to all three runs)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
out="${1:-runs/demo}"
shift || true
# 50 epochs instead of the preset's 80, so that three runs fit the time; the GH warm-up (the
# pairing point, and the split of the two-stage schedule) stays at half. Later overrides win.
set -- optim.epochs=50 gh.warmup_epochs=25 "$@"
warmup=$(python -c 'import sys; from geoharmony.configure import load_config
print(load_config("configs/fmnist_lt/simclr_gh.yaml", sys.argv[1:]).gh.warmup_epochs)' "$@")

geoharmony pretrain --config configs/fmnist_lt/simclr.yaml --output "$out/simclr" "$@"
geoharmony pretrain --config configs/fmnist_lt/simclr_gh.yaml --output "$out/simclr_gh" \
    --init-from "$out/simclr/checkpoints/epoch_$(printf %05d "$warmup").ckpt" "$@"
# The balanced reference: every class the same count, the total within one image per class of
# the long-tailed run's (2,480 against 2,478 for the preset), read from that run's record.
n_max=$(python -c 'import json, sys; d = json.load(open(sys.argv[1]))["data"]
print(round(d["num_pretrain_images"] / len(d["class_counts"])))' "$out/simclr/metrics.json")
geoharmony pretrain --config configs/fmnist_lt/simclr.yaml --output "$out/balanced" "$@" \
    data.imbalance_ratio=1 "data.n_max=$n_max"
geoharmony compare "$out/simclr" "$out/simclr_gh" --reference "$out/balanced" \
    --output "$out/comparison"

python - "$out/comparison" <<'EOF'
import json
import sys

prefix = sys.argv[1]
deficits = json.load(open(f"{prefix}_deficit.json"))["runs"]
print("\n== The demo's result ==")
print(f"tables, deficit tables and their reading: {prefix}.md")
print(f"per-class deficit plot:                   {prefix}_deficit.png")
print("Few deficit (balanced reference minus run, points; above 0: accuracy the tail lost):")
print(f"  {'':<10}{'kNN':>8}{'linear':>8}")
for run in deficits:
    knn, linear = run["knn"]["deficit_few"], run["linear"]["deficit_few"]
    print(f"  {run['run']:<10}{knn:>8.2f}{linear:>8.2f}")
EOF
