"""Run logs: one JSON object per line (``log.jsonl``) and TensorBoard scalars (``tb/``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

__all__ = ["RunLogger"]


class RunLogger:
    """Writes only on the main process; elsewhere every call is a no-op."""

    def __init__(self, directory: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self._jsonl = None
        self._tb: Any = None
        if not enabled:
            return
        directory.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(directory / "log.jsonl", "a", buffering=1)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional at run time
                self._tb = None
            else:
                self._tb = SummaryWriter(str(directory / "tb"))

    def log(self, kind: str, step: int, values: dict[str, Any]) -> None:
        """Record ``values`` (floats, ints, short lists) under ``kind`` (train, epoch, ...)."""
        if self._jsonl is None:
            return
        record = {"kind": kind, "step": step, **values}
        self._jsonl.write(json.dumps(record, default=float) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                if isinstance(value, int | float) and math.isfinite(float(value)):
                    self._tb.add_scalar(f"{kind}/{key}", float(value), step)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
