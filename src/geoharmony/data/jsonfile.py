"""Strict JSON files written atomically: the data layer's own writer (the preflight cache).

It sits in ``data/`` so that nothing here reaches up into ``eval/``; its behaviour is that of
``geoharmony.eval.results.write_json``, which can import it from here.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["json_safe", "write_json"]


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf as None and numpy scalars/arrays and tensors as plain values."""
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray | torch.Tensor):
        return json_safe(obj.tolist())
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def write_json(
    path: str | os.PathLike[str], data: Mapping[str, Any], indent: int | None = 2
) -> None:
    """Write ``data`` as strict JSON, atomically (temp file in the same folder + os.replace).

    NaN/inf become ``null``; numpy scalars/arrays and tensors become plain JSON values. Readers
    never see a partial file, and a crash leaves the previous file intact. ``indent=None``
    writes it compactly (large machine-read files).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(json_safe(data), f, indent=indent, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
