"""Image files for downstream commands: listing a folder, the evaluation transform, features."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from geoharmony.config import ConfigError
from geoharmony.data.sources import NATIVE_SIZES
from geoharmony.data.splits import DataFormatError
from geoharmony.downstream.backbone import PretrainedBackbone
from geoharmony.eval import extract_features

__all__ = ["ImageFiles", "file_features", "input_transform", "resolve_device"]


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first GPU if there is one, else the CPU; otherwise ``torch.device(name)``."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ConfigError(f"invalid device {name!r}: {err}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} asked for but CUDA is not available (use --device cpu, or the "
            "override train.device=cpu for finetune)"
        )
    return device


def input_transform(pb: PretrainedBackbone) -> v2.Compose:
    """PIL image -> normalised float32 ``[C, S, S]`` as the checkpoint's backbone expects.

    Checkpoints trained on whole small images (CIFAR, Fashion-MNIST) get the whole image:
    short side resized to S, centre crop S. Others get the large-image evaluation transform
    (``data.augment.eval_transform``: short side to S / 0.875, centre crop S).
    """
    size = pb.size
    resize = size if pb.cfg.data.source in NATIVE_SIZES else round(size / 0.875)
    return v2.Compose(
        [
            v2.ToImage(),
            v2.Resize(resize, antialias=True),
            v2.CenterCrop(size),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(list(pb.mean), list(pb.std)),
        ]
    )


class ImageFiles(Dataset[tuple[Tensor, int]]):
    """Image files under ``root`` -> ``(transform(image), label)``; images are decoded as
    grayscale for 1-channel models and RGB otherwise."""

    def __init__(
        self,
        root: str | Path,
        paths: Sequence[str],
        transform: Callable[[Image.Image], Tensor],
        in_channels: int,
        labels: Sequence[int] | None = None,
    ) -> None:
        if in_channels not in (1, 3):
            raise ValueError(f"image files can feed 1- or 3-channel models, not {in_channels}")
        self.root = Path(root)
        self.paths = list(paths)
        self.labels = list(labels) if labels is not None else [-1] * len(self.paths)
        self.transform = transform
        self.mode = "L" if in_channels == 1 else "RGB"

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        path = self.root / self.paths[i]
        try:
            with Image.open(path) as im:
                image = im.convert(self.mode)
        except (OSError, SyntaxError, ValueError) as e:
            raise DataFormatError(f"{path}: cannot read image ({e})") from e
        return self.transform(image), int(self.labels[i])


def file_features(
    pb: PretrainedBackbone,
    root: str | Path,
    paths: Sequence[str],
    device: torch.device,
    batch_size: int = 256,
    workers: int = 2,
) -> Tensor:
    """Backbone features ``[N, D]`` (float32, CPU) of the images ``root/paths`` in order."""
    dataset = ImageFiles(root, paths, input_transform(pb), pb.in_channels)
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, shuffle=False)
    pb.backbone.to(device)
    return extract_features(pb.backbone, loader, device=device, preprocess=None)
