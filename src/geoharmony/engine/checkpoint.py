"""Atomic, checksummed checkpoints and recovery of the newest valid one.

File layout: a header line ``GEOHARMONY-CKPT 1 <sha256 of payload>\n`` followed by the payload
written by ``torch.save``. A truncated or corrupted file fails its checksum and is skipped.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "CheckpointError",
    "checkpoint_path",
    "latest_valid_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_checkpoint",
    "resolve_checkpoint",
    "save_checkpoint",
]

# Every parameter of a method's backbone is stored under this prefix.
BACKBONE_PREFIX = "backbone."

log = logging.getLogger(__name__)
_MAGIC = b"GEOHARMONY-CKPT 1 "
_NAME = re.compile(r"epoch_(\d+)\.ckpt$")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupted or of another format."""


def checkpoint_path(directory: Path, epoch: int) -> Path:
    return directory / f"epoch_{epoch:05d}.ckpt"


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temp file, fsync, rename)."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    digest = hashlib.sha256(payload).hexdigest().encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(_MAGIC + digest + b"\n")
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read and verify a checkpoint written by :func:`save_checkpoint`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from err
    header, sep, payload = raw.partition(b"\n")
    if not sep or not header.startswith(_MAGIC):
        raise CheckpointError(f"{path} is not a geoharmony checkpoint (bad header)")
    expected = header[len(_MAGIC) :].decode(errors="replace")
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected:
        raise CheckpointError(
            f"{path} is corrupt or truncated: checksum {actual[:12]}... != {expected[:12]}..."
        )
    state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=False)
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} does not hold a checkpoint dictionary")
    return state


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints in ``directory``, oldest epoch first."""
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.search(p.name))]
    return [p for _, p in sorted(found)]


def latest_valid_checkpoint(
    directory: Path, map_location: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint that passes its checksum, falling back past corrupt ones."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, load_checkpoint(path, map_location)
        except CheckpointError as err:
            log.warning("skipping checkpoint: %s; falling back to the previous one", err)
    return None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the newest valid checkpoint of a run directory."""
    p = Path(path)
    if p.is_dir():
        for directory in (p / "checkpoints", p):
            found = latest_valid_checkpoint(directory)
            if found is not None:
                return found[0]
        raise CheckpointError(f"{p}: no valid checkpoint in {p / 'checkpoints'} or {p}")
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p


def read_checkpoint(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Load and check a geoharmony pretraining checkpoint (file or run directory).

    Raises:
        CheckpointError: not a geoharmony checkpoint, corrupt, or without a backbone.
    """
    resolved = resolve_checkpoint(path)
    state = load_checkpoint(resolved)
    model, config = state.get("model"), state.get("config")
    if not isinstance(model, dict) or not isinstance(config, dict):
        raise CheckpointError(
            f"{resolved} is a geoharmony file but not a pretraining checkpoint "
            "(no 'model' and 'config' entries)"
        )
    if not any(str(k).startswith(BACKBONE_PREFIX) for k in model):
        raise CheckpointError(
            f"{resolved}: the checkpoint's model has no '{BACKBONE_PREFIX}*' weights"
        )
    return resolved, state
