#!/usr/bin/env bash
# Detection and instance segmentation downstream of GH at CPU scale (issue 40): Mask R-CNN (FPN)
# fine-tuned from a SimCLR and a SimCLR+GH backbone (configs/fmnist_lt, paired: +GH continues
# SimCLR's run from the end of the GH warm-up) on a pasted Fashion-MNIST set, then the AP table.
# One seed shows that the pipeline works; it says nothing about GH.
# Usage: bash scripts/detection_pair.sh [OUTPUT_DIR] [key=value ...]  (overrides of both detect runs)
#   SIMCLR_RUN=DIR GH_RUN=DIR   finished pretraining runs to fine-tune instead of pretraining
#                               the pair here (80 epochs each)
#   IMBALANCE=10                the pasted training set's imbalance ratio (1: balanced)
# Every step is skipped when its output exists; an interrupted step continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
out="${1:-runs/detection_pair}"
shift || true

if [ -z "${SIMCLR_RUN:-}" ] || [ -z "${GH_RUN:-}" ]; then
    SIMCLR_RUN="$out/simclr" GH_RUN="$out/simclr_gh"
    warmup=$(python -c 'from geoharmony.configure import load_config
print(load_config("configs/fmnist_lt/simclr_gh.yaml").gh.warmup_epochs)')
    [ -f "$SIMCLR_RUN/metrics.json" ] ||
        geoharmony pretrain --config configs/fmnist_lt/simclr.yaml --output "$SIMCLR_RUN"
    [ -f "$GH_RUN/metrics.json" ] ||
        geoharmony pretrain --config configs/fmnist_lt/simclr_gh.yaml --output "$GH_RUN" \
            --init-from "$SIMCLR_RUN/checkpoints/epoch_$(printf %05d "$warmup").ckpt"
fi
[ -f "$out/pasted/annotations/instances_val.json" ] ||
    geoharmony detection-set --output "$out/pasted" --imbalance-ratio "${IMBALANCE:-10}"
for pair in "simclr:$SIMCLR_RUN" "simclr_gh:$GH_RUN"; do
    name="${pair%%:*}" run="${pair#*:}"
    [ -f "$out/detect_$name/metrics.json" ] ||
        geoharmony detect --config configs/downstream/pasted_fmnist_maskrcnn.yaml \
            --checkpoint "$run" --data "$out/pasted" --output "$out/detect_$name" "$@"
done
geoharmony compare "$out/detect_simclr" "$out/detect_simclr_gh" --output "$out/ap_table"
python - "$out" <<'PY'
import json, sys
for name in ("simclr", "simclr_gh"):
    r = json.load(open(f"{sys.argv[1]}/detect_{name}/metrics.json"))
    minutes = (r["train_seconds"] + r["eval_seconds"]) / 60
    print(f"{name}: {r['iterations']} iterations, {r['seconds_per_iteration']:.2f} s each, "
          f"{minutes:.1f} min with the evaluation ({r['precision']}, {r['device']})")
PY
