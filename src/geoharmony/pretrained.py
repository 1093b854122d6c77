"""Rebuild a pretrained method from its checkpoint: its config, its data and its weights.

:func:`load_pretrained` is the one way every command and benchmark turns a checkpoint back into
a method with its data: ``geoharmony evaluate``, the quality study's probes and prior checks.
(Downstream commands that need only the backbone read it without the data,
:func:`geoharmony.downstream.backbone.load_backbone`, from the same :func:`stored_config`.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from geoharmony.config import Config, ConfigError
from geoharmony.configure import from_dict, load_config
from geoharmony.data.build import RunData, build_run_data
from geoharmony.data.preflight import PREFLIGHT_CACHE
from geoharmony.engine.checkpoint import CheckpointError, read_checkpoint
from geoharmony.methods import DataInfo, Method, build_method

__all__ = ["Pretrained", "load_pretrained", "preflight_cache_of", "stored_config"]


def preflight_cache_of(checkpoint: Path) -> Path | None:
    """The preflight cache of the run that wrote ``checkpoint`` (``RUN/checkpoints/X.ckpt``), so
    that rebuilding its data decodes no file again; None for a checkpoint outside a run."""
    if checkpoint.parent.name != "checkpoints":
        return None
    return checkpoint.parent.parent / PREFLIGHT_CACHE


def stored_config(path: Path, state: dict[str, Any], overrides: Sequence[str] = ()) -> Config:
    """A checkpoint's config with ``key=value`` ``overrides`` (e.g. ``data.root=...``) applied.

    Raises:
        CheckpointError: the stored config is not a valid geoharmony config.
        ConfigError: an override is invalid.
    """
    try:
        stored = from_dict(state["config"])
    except ConfigError as err:
        raise CheckpointError(f"{path}: {err}") from None
    return load_config(None, list(overrides), base=stored)


@dataclass
class Pretrained:
    """A checkpoint's run rebuilt: its config, data and method (weights loaded, eval mode)."""

    path: Path
    epoch: int
    cfg: Config
    data: RunData
    method: Method
    state: dict[str, Any]


def load_pretrained(
    checkpoint: str | Path,
    overrides: Sequence[str] = (),
    device: torch.device | str = "cpu",
) -> Pretrained:
    """Rebuild the method of ``checkpoint`` (a file, or a run directory: its newest valid
    checkpoint) on its pretraining data, with config ``overrides``, on ``device``.

    Raises:
        CheckpointError: unreadable, or not a geoharmony pretraining checkpoint.
        ConfigError: a bad override.
    """
    path, state = read_checkpoint(checkpoint)
    cfg = stored_config(path, state, overrides)
    data = build_run_data(cfg.data, preflight_cache_of(path))
    method = build_method(cfg, DataInfo.of(data))
    method.load_state_dict(state["model"])
    method.to(device).eval()
    return Pretrained(path, int(state["epoch"]), cfg, data, method, state)
