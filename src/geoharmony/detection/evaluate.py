"""COCO AP of a detector on a split: its detections in COCO's results format, scored by
pycocotools for boxes (``bbox``) and masks (``segm``).

The six numbers per kind are COCO's first six summary statistics, in percent: AP (IoU
0.50:0.95), AP50, AP75 and AP for small, medium and large objects. pycocotools gives -1 for a size
no ground-truth object has; it is written as ``None``.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np
import torch
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import Tensor, nn

from geoharmony import parallel
from geoharmony.detection.coco import CocoInstances
from geoharmony.detection.dataset import DetectionSplit, collate

__all__ = ["AP_KEYS", "IOU_TYPES", "coco_ap", "detections", "evaluate_detector"]

AP_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
IOU_TYPES = ("bbox", "segm")
MASK_THRESHOLD = 0.5  # torchvision's pasted mask probabilities -> binary masks


def _results_of(output: dict[str, Tensor], image_id: int, category: dict[int, int]) -> list[dict]:
    """One image's detections (torchvision's output) as COCO result entries."""
    boxes = output["boxes"].float().cpu()
    xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()
    masks = (output["masks"][:, 0] > MASK_THRESHOLD).cpu().numpy().astype(np.uint8)
    rles = coco_mask.encode(np.asfortranarray(masks.transpose(1, 2, 0))) if len(masks) else []
    entries = []
    for box, score, label, rle in zip(
        xywh, output["scores"].tolist(), output["labels"].tolist(), rles, strict=True
    ):
        rle["counts"] = rle["counts"].decode("ascii")  # JSON-friendly
        entries.append(
            {
                "image_id": image_id,
                "category_id": category[int(label)],
                "bbox": [round(v, 3) for v in box],
                "score": float(score),
                "segmentation": rle,
            }
        )
    return entries


@torch.no_grad()
def detections(
    model: nn.Module,
    split: DetectionSplit,
    indices: list[int],
    batch_size: int,
    device: torch.device,
    autocast: torch.dtype | None,
) -> list[dict[str, Any]]:
    """COCO result entries of ``split``'s images at ``indices`` (model in eval mode)."""
    model.eval()
    category = {label: cid for cid, label in split.labels.items()}
    entries: list[dict[str, Any]] = []
    for start in range(0, len(indices), batch_size):
        images, targets = collate([split[i] for i in indices[start : start + batch_size]])
        with torch.autocast(device.type, autocast, enabled=autocast is not None):
            outputs = model([im.to(device) for im in images])
        for output, target in zip(outputs, targets, strict=True):
            entries += _results_of(output, int(target["image_id"]), category)
    return entries


def _ground_truth(instances: CocoInstances) -> COCO:
    """pycocotools' index of the checked file (``area`` and ``iscrowd`` filled in)."""
    gt = COCO()
    gt.dataset = {
        "images": [
            {"id": im.id, "file_name": im.file_name, "width": im.width, "height": im.height}
            for im in instances.images
        ],
        "annotations": [
            {
                "id": a.id,
                "image_id": a.image_id,
                "category_id": a.category_id,
                "bbox": list(a.bbox),
                "segmentation": a.segmentation,
                "area": a.area,
                "iscrowd": a.iscrowd,
            }
            for anns in instances.annotations.values()
            for a in anns
        ],
        "categories": [{"id": cid, "name": name} for cid, name in instances.categories.items()],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
    return gt


def coco_ap(instances: CocoInstances, results: list[dict[str, Any]]) -> dict[str, dict]:
    """``{"bbox": {"AP": ..., ...}, "segm": {...}}`` in percent (None: no object that size)."""
    if not results:  # pycocotools cannot load an empty result list; nothing was found
        return {kind: dict.fromkeys(AP_KEYS, 0.0) for kind in IOU_TYPES}
    gt = _ground_truth(instances)
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its tables
        found = gt.loadRes(results)
        for kind in IOU_TYPES:
            evaluation = COCOeval(gt, found, kind)
            evaluation.evaluate()
            evaluation.accumulate()
            evaluation.summarize()
            stats = evaluation.stats[: len(AP_KEYS)]
            out[kind] = {
                k: (None if v < 0 else round(float(v) * 100, 3))
                for k, v in zip(AP_KEYS, stats, strict=True)
            }
    return out


def evaluate_detector(
    model: nn.Module,
    split: DetectionSplit,
    batch_size: int,
    device: torch.device,
    autocast: torch.dtype | None,
) -> dict[str, dict] | None:
    """COCO AP of ``model`` on every image of ``split``, each process taking every
    ``world_size``-th image; the main process gathers and scores (the others get None)."""
    indices = list(range(parallel.rank(), len(split), parallel.world_size()))
    entries = detections(model, split, indices, batch_size, device, autocast)
    if parallel.is_distributed():
        gathered: list[Any] = [None] * parallel.world_size()
        torch.distributed.all_gather_object(gathered, entries)
        entries = [e for part in gathered for e in part]
    if parallel.rank() != 0:
        return None
    return coco_ap(split.instances, entries)
