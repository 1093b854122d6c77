"""Export a checkpoint's backbone as a plain torchvision-layout ResNet state dict.

Our ResNet's parameter names are torchvision's and it has no ``fc``, so the exported dict of an
ImageNet-stem, width-1, 3-channel ResNet-18/50 loads with ``strict=True`` into
``torchvision.models.resnet18()`` / ``resnet50()`` once ``model.fc = nn.Identity()``. Other
variants (the CIFAR stem, other widths, 1-channel input) are exported all the same; the JSON
sidecar says which changes of the torchvision model they need, and a warning is logged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from geoharmony.downstream.backbone import (
    ArchitectureError,
    ArchitectureInfo,
    PretrainedBackbone,
    load_backbone,
)

__all__ = ["export_backbone", "export_record", "loading_snippet", "sidecar_path"]

log = logging.getLogger(__name__)


def sidecar_path(output: str | Path) -> Path:
    """``FILE.pt`` -> ``FILE.json``."""
    return Path(output).with_suffix(".json")


def loading_snippet(arch: ArchitectureInfo, backbone: str, width: float, filename: str) -> str:
    """Python lines that rebuild the exported backbone and load the file strictly."""
    load = (
        f"model.load_state_dict(safetensors.torch.load_file({filename!r}))"
        if filename.endswith(".safetensors")
        else f"model.load_state_dict(torch.load({filename!r}, weights_only=True))"
    )
    if arch.torchvision_name is not None and arch.width == 1:
        lines = [
            f"model = torchvision.models.{arch.torchvision_name}()",
            "model.fc = torch.nn.Identity()",
        ]
        lines += [m.replace("nn.", "torch.nn.") for m in arch.modifications if "=" in m]
    else:
        lines = [
            f"model = geoharmony.models.build_backbone({backbone!r}, "
            f"in_channels={arch.in_channels}, width={width:g})"
        ]
    return "\n".join([*lines, load])


def export_record(pb: PretrainedBackbone, files: dict[str, str]) -> dict[str, Any]:
    """The sidecar's content: architecture, input preparation, source checkpoint, how to load."""
    arch = pb.arch
    first = next(iter(files.values()))
    return {
        "format": "torchvision-resnet-state-dict",
        "architecture": {"backbone": pb.cfg.model.backbone, **arch.to_dict()},
        "input": {
            "size": pb.size,
            "channels": arch.in_channels,
            "mean": list(pb.mean),
            "std": list(pb.std),
        },
        "source": pb.summary(),
        "files": files,
        "load_with": loading_snippet(arch, pb.cfg.model.backbone, pb.cfg.model.width, first),
    }


def export_backbone(
    checkpoint: str | Path,
    output: str | Path,
    safetensors_path: str | Path | None = None,
    expect: str | None = None,
    require_torchvision: bool = False,
) -> dict[str, Any]:
    """Write the backbone's state dict to ``output`` (``torch.save``) and optionally to a
    ``.safetensors`` file, plus the JSON sidecar ``output`` with suffix ``.json``.

    Args:
        checkpoint: a geoharmony checkpoint file or run directory.
        output: the ``.pt`` file.
        safetensors_path: also write this ``.safetensors`` file.
        expect: required backbone name (``resnet18``, ``resnet50``, ``cifar_resnet18``).
        require_torchvision: make a torchvision-incompatible architecture an error instead of
            a warning.

    Returns:
        The sidecar record.

    Raises:
        CheckpointError: not a geoharmony checkpoint; ArchitectureError: wrong architecture.
    """
    pb = load_backbone(checkpoint, expect=expect)
    arch = pb.arch
    if not arch.torchvision_compatible:
        message = (
            f"{pb.path}: the {pb.cfg.model.backbone} backbone (width {arch.width:g}, "
            f"{arch.stem} stem, {arch.in_channels}-channel input) does not load into an "
            "unmodified torchvision ResNet: " + "; ".join(arch.modifications)
        )
        if require_torchvision:
            raise ArchitectureError(message)
        log.warning("%s (recorded in %s)", message, sidecar_path(output))
    state: dict[str, Tensor] = {
        k: v.detach().cpu().clone().contiguous() for k, v in pb.backbone.state_dict().items()
    }
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    files = {"torch": str(output)}
    torch.save(state, output)
    if safetensors_path is not None:
        from safetensors.torch import save_file

        safetensors_path = Path(safetensors_path)
        safetensors_path.parent.mkdir(parents=True, exist_ok=True)
        files["safetensors"] = str(safetensors_path)
    record = export_record(pb, files)
    if safetensors_path is not None:
        meta = {"format": "pt", "geoharmony": json.dumps(record["architecture"])}
        save_file(state, str(safetensors_path), metadata=meta)
    sidecar_path(output).write_text(json.dumps(record, indent=2) + "\n")
    return record
