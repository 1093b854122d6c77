"""Fashion-MNIST from IDX files (the MNIST format), gzip-compressed or not."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np
import torch

from geoharmony.data.splits import DataFormatError, ImageArray

__all__ = [
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEBIAN_ROOT",
    "FASHION_MNIST_MISSING",
    "load_fashion_mnist",
    "read_idx",
]

# Where the Debian/Ubuntu package `dataset-fashion-mnist` installs its files
# (`dpkg -L dataset-fashion-mnist`).
FASHION_MNIST_DEBIAN_ROOT = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]

# Said when the default location holds no data set.
FASHION_MNIST_MISSING = (
    "Fashion-MNIST not found; install it with "
    "`apt-get install dataset-fashion-mnist` or pass the directory of the IDX files"
)


def read_idx(path: str | Path, expected_ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzip-compressed or not.

    Layout: two zero bytes, a type byte (only 0x08 = unsigned byte is supported), the number of
    dimensions, then each dimension as a big-endian uint32, then the data.

    Returns:
        uint8 array with the file's dimensions.
    """
    path = Path(path)
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic: decide by content, not by file name
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataFormatError(f"{path}: corrupt or truncated gzip data ({e})") from e
    if len(raw) < 4:
        raise DataFormatError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    if raw[0] != 0 or raw[1] != 0:
        raise DataFormatError(f"{path}: bad IDX magic number {raw[:4].hex()}")
    if raw[2] != 0x08:
        raise DataFormatError(f"{path}: IDX type 0x{raw[2]:02x} unsupported (need 0x08 ubyte)")
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise DataFormatError(f"{path}: IDX file has {ndim} dimensions, expected {expected_ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(f"{path}: truncated IDX header")
    dims = [int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4)]
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise DataFormatError(
            f"{path}: {len(raw)} bytes but dimensions {dims} need {expected} "
            f"({'truncated' if len(raw) < expected else 'trailing data'})"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _idx_file(root: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    raise DataFormatError(f"{root / (stem + '.gz')}: file not found (nor {root / stem})")


def load_fashion_mnist(root: str | Path | None, train: bool) -> ImageArray:
    """Load Fashion-MNIST from IDX files (``train-images-idx3-ubyte.gz`` etc., or uncompressed).

    Args:
        root: directory with the four IDX files; None uses ``FASHION_MNIST_DEBIAN_ROOT``, where
            ``apt-get install dataset-fashion-mnist`` puts them.
        train: the 60,000-image training set, else the 10,000-image test set.

    Returns:
        ImageArray with images uint8 [N, 1, 28, 28].
    """
    if root is None:
        root = FASHION_MNIST_DEBIAN_ROOT
        if not root.is_dir():
            raise DataFormatError(f"{root}: {FASHION_MNIST_MISSING}")
    root = Path(root)
    prefix = "train" if train else "t10k"
    img_path = _idx_file(root, f"{prefix}-images-idx3-ubyte")
    lab_path = _idx_file(root, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(img_path, expected_ndim=3)
    labels = read_idx(lab_path, expected_ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise DataFormatError(
            f"{img_path}: {images.shape[0]} images but {lab_path} has {labels.shape[0]} labels"
        )
    if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
        raise DataFormatError(f"{lab_path}: label {labels.max()} outside [0, 10)")
    return ImageArray(
        images=torch.from_numpy(images.copy()).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        class_names=list(FASHION_MNIST_CLASSES),
        source=f"fashion_mnist:{root}:{'train' if train else 'test'}",
    )
