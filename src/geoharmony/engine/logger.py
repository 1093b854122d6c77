"""Run logs: one JSON object per line (``log.jsonl``) and TensorBoard scalars (``tb/``)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
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
        self._path = directory / "log.jsonl"
        self._jsonl = open(self._path, "a", buffering=1)
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

    def rewind(self, last_step: Mapping[str, int]) -> None:
        """Drop the records a resumed run will write again.

        ``last_step`` maps a kind to the last step the checkpoint holds (``{"train": global
        step, "epoch": epoch}``); records of that kind beyond it, and a line torn by a kill,
        are removed, so a resumed run's log lists every step once. Other kinds are kept.
        """
        if self._jsonl is None:
            return
        self._jsonl.close()
        kept = []
        for line in self._path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # only the last line, cut mid-write by a kill
                continue
            limit = last_step.get(record.get("kind"))
            if limit is None or record.get("step", 0) <= limit:
                kept.append(line + "\n")
        partial = self._path.with_name(self._path.name + ".partial")
        partial.write_text("".join(kept))
        os.replace(partial, self._path)
        self._jsonl = open(self._path, "a", buffering=1)

    def close(self) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
