"""Detection results side by side: the paper's table (AP, AP50, AP75 for boxes and masks) in
Markdown, every COCO number in CSV."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from geoharmony.detection.evaluate import AP_KEYS, IOU_TYPES

__all__ = ["ap_lines", "detection_csv", "detection_markdown", "is_detection"]

# The paper's table: AP, AP50 and AP75 of boxes, then of masks.
TABLE_KEYS = ("AP", "AP50", "AP75")
KIND_TITLES = {"bbox": "bb", "segm": "mk"}


def is_detection(result: Mapping[str, Any]) -> bool:
    return result.get("task") == "detection"


def _value(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f}"


def _csv(v: float | None) -> str:
    return "" if v is None else str(v)


def ap_lines(result: Mapping[str, Any]) -> list[str]:
    """One line per kind: ``bbox: AP 31.7  AP50 51.0 ...``."""
    return [
        f"{kind}: " + "  ".join(f"{k} {_value(result[kind][k])}" for k in AP_KEYS)
        for kind in IOU_TYPES
    ]


def detection_markdown(results: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    """A row per run (``labels``), the paper's columns: AP^bb, AP^bb_50, AP^bb_75, AP^mk, ..."""
    columns = [f"{k}^{KIND_TITLES[kind]}" for kind in IOU_TYPES for k in TABLE_KEYS]
    lines = [
        "| run | " + " | ".join(columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for label, r in zip(labels, results, strict=True):
        cells = [_value(r[kind][k]) for kind in IOU_TYPES for k in TABLE_KEYS]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def detection_csv(results: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> str:
    """Every number: ``run,path,bbox_AP,...,segm_APl``."""
    header = ["run", "path"] + [f"{kind}_{k}" for kind in IOU_TYPES for k in AP_KEYS]
    rows = [",".join(header)]
    for label, r in zip(labels, results, strict=True):
        values = [_csv(r[kind][k]) for kind in IOU_TYPES for k in AP_KEYS]
        rows.append(",".join([label, str(r.get("_path", "")), *values]))
    return "\n".join(rows) + "\n"
