"""Where a run starts: its own newest valid checkpoint, another run's (``--init-from``), or
nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from geoharmony.config import Config, ConfigError, config_differences
from geoharmony.configure import from_dict
from geoharmony.engine.checkpoint import latest_valid_checkpoint, list_checkpoints, load_checkpoint

__all__ = ["RESUME_POLICIES", "RUNTIME_KEYS", "StartingPoint", "TrainState", "starting_point"]

RESUME_POLICIES = ("auto", "never", "must")

# The data record's keys that must match for a checkpoint's per-sample state (the GH bank, the
# loss averages, the allocation memory) to mean the same images; the data's location may move.
DATA_KEYS = ("dataset", "num_pretrain_images", "class_counts", "class_order", "bad_files")

# Config keys that may change between a run and its resumption without changing the result.
RUNTIME_KEYS = {
    "train.device",
    "train.threads",
    "train.progress",
    "train.checkpoint_every",
    "train.keep_checkpoints",
    "train.log_every",
    "data.num_workers",
    "data.root",
    "eval.monitor_every",
}


@dataclass
class TrainState:
    """Where a run stands: completed epochs and optimizer steps."""

    epoch: int = 0
    global_step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class StartingPoint:
    """A checkpoint to start from (``state`` is None for a fresh run).

    ``own``: the run's own checkpoint (a resumption: everything is restored); otherwise another
    run's, whose model the method adopts, keeping what it adds (e.g. the GH term).
    """

    path: Path | None = None
    state: dict[str, Any] | None = None
    own: bool = False


def starting_point(
    checkpoint_dir: Path,
    cfg: Config,
    device: torch.device,
    resume: str = "auto",
    init_from: str | Path | None = None,
    data_record: dict[str, Any] | None = None,
) -> StartingPoint:
    """Apply the resume policy.

    Args:
        resume: ``auto`` continues from the newest valid checkpoint in ``checkpoint_dir`` if
            there is one; ``never`` refuses a directory that has checkpoints; ``must`` requires
            one.
        init_from: another run's checkpoint, used when this run has none of its own.
        data_record: this run's :meth:`RunData.record`; a checkpoint made on other data (the
            :data:`DATA_KEYS` both records hold) is refused.

    Raises:
        ConfigError: the run's own checkpoint was made with another config (outside
            :data:`RUNTIME_KEYS`), or either checkpoint on other data.
        RuntimeError: the policy forbids what was found, or every checkpoint is corrupt.
    """
    if resume not in RESUME_POLICIES:
        raise ValueError(f"resume must be auto, never or must, got {resume!r}")
    found = latest_valid_checkpoint(checkpoint_dir, device)
    if found is None and list_checkpoints(checkpoint_dir):
        raise RuntimeError(f"no valid checkpoint in {checkpoint_dir}: all are corrupt")
    if found is not None:
        if resume == "never":
            raise RuntimeError(
                f"{checkpoint_dir.parent} already holds checkpoints; resume it or pick a new "
                "output directory"
            )
        path, state = found
        diffs = config_differences(from_dict(state["config"]), cfg, RUNTIME_KEYS)
        if diffs:
            raise ConfigError(
                f"cannot resume {path}: the config differs from the stored one: " + "; ".join(diffs)
            )
        _check_same_data(path, state, data_record)
        return StartingPoint(path, state, own=True)
    if resume == "must":
        raise RuntimeError(f"resume was required but {checkpoint_dir} has no checkpoint")
    if init_from is not None:
        state = load_checkpoint(init_from, device)
        _check_same_data(Path(init_from), state, data_record)
        return StartingPoint(Path(init_from), state, own=False)
    return StartingPoint()


def _check_same_data(path: Path, state: dict[str, Any], data_record: dict[str, Any] | None) -> None:
    """Refuse a checkpoint whose data record differs from this run's in a :data:`DATA_KEYS`
    entry that both hold (older checkpoints lack some keys: those are not compared)."""
    stored = state.get("data")
    if data_record is None or not isinstance(stored, dict):
        return
    diffs = [
        f"data {key}: {_short(stored[key])} in the checkpoint, {_short(data_record[key])} now"
        for key in DATA_KEYS
        if key in stored and key in data_record and stored[key] != data_record[key]
    ]
    if diffs:
        raise ConfigError(
            f"cannot start from {path}: it was made on other data (images added, removed or "
            "left out as unreadable since?): " + "; ".join(diffs)
        )


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
