"""Writers of small data files in the true on-disk formats (CIFAR pickles, IDX, images).

The suite runs with ``--import-mode=importlib``, so test modules cannot import a helper module;
the writers reach them through the ``fakes`` fixture.
"""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image


def cifar_rows(images: np.ndarray) -> np.ndarray:
    """[N, 3, 32, 32] uint8 -> [N, 3072] rows: 1024 red, 1024 green, 1024 blue (row-major)."""
    return np.stack(
        [np.concatenate([im[0].ravel(), im[1].ravel(), im[2].ravel()]) for im in images]
    )


def write_pickle(path: Path, obj: object, protocol: int = 2) -> None:
    # Protocol 2 with bytes keys, as the original Python 2 files were written.
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def make_cifar10(
    root: Path, per_batch: int = 4, seed: int = 0, protocol: int = 2
) -> dict[str, np.ndarray]:
    """Write cifar-10-batches-py under root; returns the images and labels written."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    out: dict[str, list[np.ndarray]] = {"train_x": [], "train_y": [], "test_x": [], "test_y": []}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        x = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        y = rng.integers(0, 10, per_batch).tolist()
        write_pickle(
            base / name,
            {
                b"batch_label": name.encode(),
                b"labels": y,
                b"data": cifar_rows(x),
                b"filenames": [f"img{i}.png".encode() for i in range(per_batch)],
            },
            protocol,
        )
        split = "test" if name == "test_batch" else "train"
        out[f"{split}_x"].append(x)
        out[f"{split}_y"].append(np.asarray(y))
    write_pickle(
        base / "batches.meta",
        {
            b"num_cases_per_batch": per_batch,
            b"label_names": [f"class{i}".encode() for i in range(10)],
            b"num_vis": 3072,
        },
        protocol,
    )
    return {k: np.concatenate(v) for k, v in out.items()}


def make_cifar100(root: Path, n: int = 6, seed: int = 0) -> dict[str, np.ndarray]:
    """Write cifar-100-python under root; returns the images and fine labels written."""
    rng = np.random.default_rng(seed)
    base = root / "cifar-100-python"
    base.mkdir(parents=True)
    out = {}
    for split in ("train", "test"):
        x = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
        fine = rng.integers(0, 100, n).tolist()
        write_pickle(
            base / split,
            {
                b"filenames": [f"f{i}.png".encode() for i in range(n)],
                b"batch_label": split.encode(),
                b"fine_labels": fine,
                b"coarse_labels": [f // 5 for f in fine],
                b"data": cifar_rows(x),
            },
        )
        out[f"{split}_x"], out[f"{split}_y"] = x, np.asarray(fine)
    write_pickle(
        base / "meta",
        {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    )
    return out


def idx_bytes(array: np.ndarray) -> bytes:
    """IDX encoding of a uint8 array: 0, 0, type 0x08, ndim, big-endian dims, data."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_fashion_mnist(
    root: Path, n_train: int = 12, n_test: int = 5, compress: bool = True, seed: int = 0
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        for kind, arr, nd in (("images", x, 3), ("labels", y, 1)):
            data = idx_bytes(arr)
            name = f"{prefix}-{kind}-idx{nd}-ubyte"
            if compress:
                (root / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (root / name).write_bytes(data)
        out[f"{prefix}_x"], out[f"{prefix}_y"] = x, y
    return out


def write_image(path: Path, seed: int = 0, size: tuple[int, int] = (12, 10)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)  # format from the suffix: PNG or JPEG


@pytest.fixture
def fakes() -> SimpleNamespace:
    """The file writers of this module."""
    return SimpleNamespace(
        cifar_rows=cifar_rows,
        write_pickle=write_pickle,
        make_cifar10=make_cifar10,
        make_cifar100=make_cifar100,
        idx_bytes=idx_bytes,
        make_fashion_mnist=make_fashion_mnist,
        write_image=write_image,
    )
