"""Seconds per training iteration of ``geoharmony detect``'s presets on this machine.

* ``coco``: the protocol's Mask R-CNN R50-FPN (configs/downstream/coco_maskrcnn.yaml) at 2
  images per iteration, one process (what one GPU of the 8 does in the 1x schedule), on
  COCO-sized images: 640x480 pixels resized to 800 on the shorter side (the test size; the
  training sizes 640-800 average 720), with 7 objects each (COCO's mean is 7.3). The backbone
  is a randomly initialised ResNet-50: the cost does not depend on the weights.
* ``pasted``: the CPU preset (configs/downstream/pasted_fmnist_maskrcnn.yaml) on a pasted
  Fashion-MNIST set, beside the same preset with the protocol's proposal and sampling counts
  (1000 proposals, 512 samples per image): the saving its smaller counts buy.

Each case runs ``--warmup`` untimed iterations, then ``--iterations`` timed ones, one after the
other in one process. Writes benchmarks/results/detection_iteration.json (with the machine).

    python benchmarks/detection_iteration.py --pasted-data /tmp/pasted --checkpoint RUN
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from _common import record
from geoharmony.detection.config import load_detection_config
from geoharmony.detection.dataset import collate
from geoharmony.detection.model import DetectionBackbone, load_detection_backbone
from geoharmony.detection.train import build_detector, load_sets
from geoharmony.engine.runtime import autocast_dtype
from geoharmony.models import build_backbone

REPO = Path(__file__).resolve().parents[1]
PRESETS = REPO / "configs" / "downstream"


def _coco_like_batch(n: int, seed: int) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    """``n`` 480x640 RGB noise images with 7 rectangular objects each."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(n):
        images.append(torch.rand(3, 480, 640, generator=g))
        xy = torch.rand(7, 2, generator=g) * torch.tensor([500.0, 360.0])
        wh = 16 + torch.rand(7, 2, generator=g) * 120
        boxes = torch.cat([xy, xy + wh], 1)
        masks = torch.zeros(7, 480, 640, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.round().int().tolist()):
            masks[k, y1:y2, x1:x2] = 1
        labels = torch.randint(1, 81, (7,), generator=g)
        targets.append({"boxes": boxes, "labels": labels, "masks": masks})
    return images, targets


def _time(
    model: torch.nn.Module,
    batch: tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]],
    autocast: torch.dtype | None,
    warmup: int,
    iterations: int,
) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    model.train()
    times = []
    for i in range(warmup + iterations):
        torch.manual_seed(i)
        started = time.perf_counter()
        with torch.autocast("cpu", autocast, enabled=autocast is not None):
            losses = model(*batch)
        sum(losses.values()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return times


def coco_case(args: argparse.Namespace, precision: str) -> dict[str, Any]:
    cfg = load_detection_config(PRESETS / "coco_maskrcnn.yaml", ["data.train_min_sizes=[800]"])
    body = build_backbone("resnet50", in_channels=3, width=1.0)
    imagenet = DetectionBackbone(body, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), {})
    model = build_detector(cfg, imagenet, 80)
    autocast = autocast_dtype(precision, torch.device("cpu"))
    times = _time(model, _coco_like_batch(2, 0), autocast, args.warmup, args.iterations)
    return {"case": f"coco R50-FPN, batch 2, 800 x 1067, {precision}", "seconds": times}


def pasted_case(args: argparse.Namespace, overrides: list[str], label: str) -> dict[str, Any]:
    cfg = load_detection_config(PRESETS / "pasted_fmnist_maskrcnn.yaml", overrides)
    backbone = load_detection_backbone(args.checkpoint)
    sets = load_sets(args.pasted_data, cfg, backbone.body.in_channels)
    model = build_detector(cfg, backbone, sets.num_classes)
    batch = collate([sets.train[i] for i in range(cfg.optim.batch_size)])
    autocast = autocast_dtype(cfg.train.precision, torch.device("cpu"))
    times = _time(model, batch, autocast, args.warmup, args.iterations)
    return {"case": f"pasted CPU preset, batch {cfg.optim.batch_size}, {label}", "seconds": times}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pasted-data", help="a set written by geoharmony detection-set")
    p.add_argument("--checkpoint", help="a fmnist_lt pretraining run (for the pasted case)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cases = [coco_case(args, "fp32"), coco_case(args, "bf16")]
    if args.pasted_data and args.checkpoint:
        cases.append(pasted_case(args, [], "its counts (500 proposals, 128 samples)"))
        protocol = ["model.rpn_proposals_train=1000", "model.roi_samples_per_image=512"]
        cases.append(pasted_case(args, protocol, "the protocol's counts (1000, 512)"))
    for case in cases:
        case["median_seconds"] = statistics.median(case["seconds"])
        print(f"{case['case']}: {case['median_seconds']:.2f} s per iteration")
    print(f"wrote {record('detection_iteration', {'cases': cases})}")


if __name__ == "__main__":
    main()
