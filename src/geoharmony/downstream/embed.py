"""Backbone features of every image of a folder, for users' own analysis.

Output: ``FILE.npy`` (float32 ``[N, D]``) or ``FILE.safetensors`` (tensor ``features``), and
``FILE.json`` beside it with the image paths (row order; relative to the folder), the folder,
the checkpoint and the input preparation. A safetensors file also carries the paths in its
metadata (key ``paths``, a JSON list). Images are listed recursively in sorted order and fed
through the evaluation transform in eval mode, so a rerun gives the same file. Every file is
decoded once first (the preflight, with the checkpoint's run's cache): unreadable files stop
the command with their list, or with ``skip_bad_files`` are left out and listed in
``FILE.json`` under ``unreadable``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from geoharmony.data.preflight import preflight
from geoharmony.data.sources import list_images
from geoharmony.data.splits import FileList
from geoharmony.downstream.backbone import load_backbone
from geoharmony.downstream.images import file_features, resolve_device
from geoharmony.pretrained import preflight_cache_of

__all__ = ["EMBED_SUFFIXES", "embed_folder", "load_embeddings"]

EMBED_SUFFIXES = (".npy", ".safetensors")


def _check_output(output: Path) -> None:
    if output.suffix not in EMBED_SUFFIXES:
        raise ValueError(f"output {output} must end with .npy or .safetensors")


def embed_folder(
    checkpoint: str | Path,
    images: str | Path,
    output: str | Path,
    *,
    batch_size: int = 256,
    workers: int = 2,
    device: str = "auto",
    overrides: list[str] | tuple[str, ...] = (),
    skip_bad_files: bool = False,
) -> dict[str, Any]:
    """Write the features of every image under ``images`` to ``output`` (+ ``.json`` sidecar).

    Returns:
        The sidecar record (paths, shape, checkpoint summary).
    """
    output = Path(output)
    _check_output(output)
    pb = load_backbone(checkpoint, overrides)
    root = Path(images)
    found = list_images(root)
    files = FileList(root, found, np.full(len(found), -1, dtype=np.int64), [], f"embed:{root}")
    (readable,), unreadable = preflight(
        [files],
        skip_bad_files,
        preflight_cache_of(pb.path),
        workers,
        progress=True,
        skip_hint="add --skip-bad-files to leave them out (listed in the .json beside the output)",
    )
    paths = readable.paths
    feats = file_features(pb, root, paths, resolve_device(device), batch_size, workers)
    output.parent.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "features": str(output),
        "shape": list(feats.shape),
        "images_root": str(root.resolve()),
        "paths": paths,
        "unreadable": unreadable,
        "input": {"size": pb.size, "channels": pb.in_channels, "mean": pb.mean, "std": pb.std},
        "source": pb.summary(),
    }
    if output.suffix == ".npy":
        np.save(output, feats.numpy().astype(np.float32))
    else:
        from safetensors.torch import save_file

        save_file(
            {"features": feats.contiguous()},
            str(output),
            metadata={"paths": json.dumps(paths), "images_root": record["images_root"]},
        )
    output.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    return record


def load_embeddings(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """Read what :func:`embed_folder` wrote: features ``[N, D]`` and the N image paths."""
    path = Path(path)
    _check_output(path)
    paths = json.loads(path.with_suffix(".json").read_text())["paths"]
    if path.suffix == ".npy":
        return np.load(path), paths
    from safetensors.torch import load_file

    return load_file(str(path))["features"].numpy(), paths
