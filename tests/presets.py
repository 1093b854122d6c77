"""The presets under configs/: pretraining ones (geoharmony pretrain) and detection ones
(geoharmony detect, named ``*_maskrcnn.yaml``), so that each test reads the kind it checks."""

from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DETECTION_SUFFIX = "_maskrcnn.yaml"


def detection_presets() -> list[Path]:
    return sorted(CONFIGS.rglob(f"*{DETECTION_SUFFIX}"))


def pretraining_presets() -> list[Path]:
    return [p for p in sorted(CONFIGS.rglob("*.yaml")) if not p.name.endswith(DETECTION_SUFFIX)]
