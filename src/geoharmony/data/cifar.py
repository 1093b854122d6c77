"""CIFAR-10 and CIFAR-100 in the python-pickle layout, read safely; the optional download."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoharmony.data.splits import DataFormatError, ImageArray

__all__ = ["cifar10_split", "cifar100_split", "download_cifar", "load_cifar"]

_CIFAR_LAYOUT = {
    10: (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        "labels",
        "label_names",
    ),
    100: ("cifar-100-python", ["train"], ["test"], "meta", "fine_labels", "fine_label_names"),
}

# The CIFAR pickles hold dicts of lists, bytes and numpy arrays. Unpickling can run arbitrary code,
# so only the globals needed to rebuild numpy arrays (and, in files re-pickled by Python 3 with
# protocol 2, bytes objects via _codecs.encode) are allowed.
_PICKLE_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR file")
        return super().find_class(module, name)


def _load_pickle(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    try:
        with path.open("rb") as f:
            obj = _SafeUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as e:
        raise DataFormatError(f"{path}: not a readable CIFAR pickle ({e})") from e
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: expected a pickled dict, got {type(obj).__name__}")
    # Files written by Python 2 have bytes keys once loaded with encoding="bytes".
    return {k.decode() if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _cifar_dir(root: Path, num_classes: int) -> Path:
    subdir, train_files, *_ = _CIFAR_LAYOUT[num_classes]
    for candidate in (root / subdir, root):
        if (candidate / train_files[0]).is_file():
            return candidate
    raise DataFormatError(
        f"{root}: no CIFAR-{num_classes} data found; expected {root / subdir / train_files[0]} "
        f"or {root / train_files[0]} (python-pickle layout); with internet access, "
        "data.download=true fetches it there"
    )


def download_cifar(root: str | Path, num_classes: int) -> None:
    """Fetch CIFAR-10 or CIFAR-100 into ``root`` (python-pickle layout) unless it is there.

    torchvision's downloader does the work: it checks the archive against the MD5 that
    torchvision's CIFAR class declares and unpacks it. Needs internet access.
    """
    try:
        _cifar_dir(Path(root), num_classes)
        return
    except DataFormatError:
        pass
    from torchvision.datasets import CIFAR10, CIFAR100, utils

    dataset = CIFAR10 if num_classes == 10 else CIFAR100
    utils.download_and_extract_archive(
        dataset.url, str(root), filename=dataset.filename, md5=dataset.tgz_md5
    )


def load_cifar(root: str | Path, num_classes: int, train: bool) -> ImageArray:
    """Load CIFAR-10 or CIFAR-100 from the standard python-pickle layout.

    Args:
        root: the directory holding ``cifar-10-batches-py`` / ``cifar-100-python``, or that
            directory itself.
        num_classes: 10 or 100 (CIFAR-100 uses the fine labels).
        train: the 50,000-image training set, else the 10,000-image test set.

    Returns:
        ImageArray with images uint8 [N, 3, 32, 32].
    """
    if num_classes not in _CIFAR_LAYOUT:
        raise ValueError(f"num_classes must be 10 or 100, got {num_classes}")
    _, train_files, test_files, meta_file, label_key, names_key = _CIFAR_LAYOUT[num_classes]
    base = _cifar_dir(Path(root), num_classes)

    meta_path = base / meta_file
    meta = _load_pickle(meta_path)
    names = meta.get(names_key)
    if not isinstance(names, list) or len(names) != num_classes:
        raise DataFormatError(
            f"{meta_path}: expected {num_classes} class names under {names_key!r}"
        )
    class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    images, labels = [], []
    for name in train_files if train else test_files:
        path = base / name
        batch = _load_pickle(path)
        if "data" not in batch or label_key not in batch:
            raise DataFormatError(
                f"{path}: missing key 'data' or {label_key!r} (found {sorted(batch)})"
            )
        data = batch["data"]
        if (
            not isinstance(data, np.ndarray)
            or data.dtype != np.uint8
            or data.ndim != 2
            or data.shape[1] != 3 * 32 * 32
        ):
            shape = getattr(data, "shape", None)
            raise DataFormatError(f"{path}: 'data' must be a uint8 [N, 3072] array, got {shape}")
        lab = np.asarray(batch[label_key])
        if lab.shape != (data.shape[0],) or not np.issubdtype(lab.dtype, np.integer):
            raise DataFormatError(
                f"{path}: {label_key!r} must hold {data.shape[0]} integers, got {lab.shape}"
            )
        if lab.size and (lab.min() < 0 or lab.max() >= num_classes):
            raise DataFormatError(f"{path}: labels outside [0, {num_classes})")
        # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major.
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(lab.astype(np.int64))
    return ImageArray(
        images=torch.from_numpy(np.concatenate(images)),
        labels=torch.from_numpy(np.concatenate(labels)),
        class_names=class_names,
        source=f"cifar{num_classes}:{base}:{'train' if train else 'test'}",
    )


def cifar10_split(root: Path, train: bool, download: bool = False) -> ImageArray:
    """The ``cifar10`` source's loader: :func:`load_cifar` with 10 classes, fetched first when
    ``download`` (``data.download``)."""
    if download:
        download_cifar(root, 10)
    return load_cifar(root, 10, train)


def cifar100_split(root: Path, train: bool, download: bool = False) -> ImageArray:
    """The ``cifar100`` source's loader: :func:`load_cifar` with 100 (fine) classes."""
    if download:
        download_cifar(root, 100)
    return load_cifar(root, 100, train)
