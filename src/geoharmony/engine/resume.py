"""Where a run starts: its own newest valid checkpoint, another run's (``--init-from``), or
nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from geoharmony.config import Config, ConfigError, config_differences, from_dict
from geoharmony.engine.checkpoint import latest_valid_checkpoint, list_checkpoints, load_checkpoint

__all__ = ["RESUME_POLICIES", "RUNTIME_KEYS", "StartingPoint", "TrainState", "starting_point"]

RESUME_POLICIES = ("auto", "never", "must")

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
) -> StartingPoint:
    """Apply the resume policy.

    Args:
        resume: ``auto`` continues from the newest valid checkpoint in ``checkpoint_dir`` if
            there is one; ``never`` refuses a directory that has checkpoints; ``must`` requires
            one.
        init_from: another run's checkpoint, used when this run has none of its own.

    Raises:
        ConfigError: the run's own checkpoint was made with another config (outside
            :data:`RUNTIME_KEYS`).
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
        return StartingPoint(path, state, own=True)
    if resume == "must":
        raise RuntimeError(f"resume was required but {checkpoint_dir} has no checkpoint")
    if init_from is not None:
        return StartingPoint(Path(init_from), load_checkpoint(init_from, device), own=False)
    return StartingPoint()
