"""Image sources: CIFAR-10/100 (python pickle), Fashion-MNIST (IDX), list files, image folders.

Small-image sources load fully into memory as an :class:`ImageArray`; large-image sources are
described by a :class:`FileList` and decoded per item. Every bad input raises
:class:`DataFormatError` with a message that names the offending file.
"""

from __future__ import annotations

import gzip
import os
import pickle
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from geoharmony.data.splits import (
    DEFAULT_FILE_SIZE,
    DataFormatError,
    FileList,
    ImageArray,
    ImageSplit,
)

if TYPE_CHECKING:
    from geoharmony.config import DataConfig

__all__ = [
    "DEFAULT_PROFILES",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DEBIAN_ROOT",
    "IMAGE_EXTENSIONS",
    "NATIVE_SIZES",
    "SOURCES",
    "DataFormatError",
    "FileList",
    "ImageArray",
    "default_profile",
    "download_cifar",
    "image_size",
    "list_images",
    "load_cifar",
    "load_fashion_mnist",
    "load_image_folder",
    "load_list_file",
    "load_source",
    "load_splits",
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

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


# --------------------------------------------------------------------------------------------
# CIFAR (python pickle layout)
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Fashion-MNIST (IDX)
# --------------------------------------------------------------------------------------------


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
            raise DataFormatError(
                f"{root}: Fashion-MNIST not found; install it with "
                "`apt-get install dataset-fashion-mnist` or pass the directory of the IDX files"
            )
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


# --------------------------------------------------------------------------------------------
# Large-image sources: list files and image folders
# --------------------------------------------------------------------------------------------


def load_list_file(
    root: str | Path,
    list_file: str | Path,
    check_files: bool = True,
    class_names: Sequence[str] | None = None,
) -> FileList:
    """Load an OLTR-style list file (ImageNet-LT, Places-LT): ``relative/path.jpg label`` a line.

    Args:
        root: directory the listed paths are relative to.
        list_file: the list file (absolute, or relative to the working directory).
        check_files: check up front that every listed file exists (else errors surface when an
            image is read).
        class_names: optional names; default ``["0", "1", ...]`` up to the largest label.

    Returns:
        FileList in the order of the file.
    """
    root, list_file = Path(root), Path(list_file)
    if not list_file.is_file():
        raise DataFormatError(
            f"{list_file}: list file not found. The ImageNet-LT and Places-LT splits are not "
            "downloaded for you: the official GH code's split/ folder (github.com/"
            "MediaBrain-SJTU/Geometric-Harmonization) holds ImageNet_LT_train.txt, "
            "ImageNet_LT_test.txt, Places_LT_train.txt and Places_val.txt (OLTR's lists)"
        )
    paths: list[str] = []
    labels: list[int] = []
    with list_file.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            parts = line.rsplit(maxsplit=1)  # from the right: a path may contain spaces
            if len(parts) != 2 or not (parts[1].isascii() and parts[1].isdigit()):
                raise DataFormatError(
                    f"{list_file}:{lineno}: expected 'relative/path label' with a non-negative "
                    f"integer label, got {line.rstrip()!r}"
                )
            paths.append(parts[0].strip())
            labels.append(int(parts[1]))
    if not paths:
        raise DataFormatError(f"{list_file}: no entries")
    n_classes = max(labels) + 1
    if class_names is None:
        names = [str(c) for c in range(n_classes)]
    else:
        names = list(class_names)
        if len(names) < n_classes:
            raise DataFormatError(
                f"{list_file}: label {n_classes - 1} but only {len(names)} class names given"
            )
    if check_files:
        missing = [(i, p) for i, p in enumerate(paths) if not (root / p).is_file()]
        if missing:
            shown = ", ".join(f"{p!r}" for _, p in missing[:3])
            raise DataFormatError(
                f"{list_file}: {len(missing)} listed files not found under {root} (e.g. {shown})"
            )
    return FileList(
        root=root,
        paths=paths,
        labels=np.asarray(labels, dtype=np.int64),
        class_names=names,
        source=f"list:{list_file}:root={root}",
    )


def list_images(root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[str]:
    """Every image under ``root`` (recursively, following links, hidden entries skipped), as
    sorted POSIX paths relative to ``root``.

    Raises:
        DataFormatError: ``root`` is not a folder or holds no image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: image folder not found")
    exts = {e.lower() for e in extensions}
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root)
        found += [
            (rel / fn).as_posix()
            for fn in filenames
            if not fn.startswith(".") and os.path.splitext(fn)[1].lower() in exts
        ]
    if not found:
        raise DataFormatError(f"{root}: no images with extensions {sorted(exts)}")
    return sorted(found)


def load_image_folder(
    root: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS, labels: str = "auto"
) -> FileList:
    """Load an image folder, labelled by its class sub-folders or unlabeled.

    ``labels="auto"``: ``root/<class_name>/**/<image>``, classes the sorted sub-folder names.
    With fewer than two class sub-folders (images directly in ``root``, or all in one
    sub-folder) the images carry no class information and are returned unlabeled.
    ``labels="folders"``: every sub-folder is a class, however many (a test split).
    ``labels="none"``: every image under ``root``, recursively, unlabeled. Hidden entries are
    ignored; extensions match case-insensitively.

    Returns:
        FileList with paths sorted within each class (unlabeled: sorted).
    """
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: image folder not found")
    class_dirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if labels == "folders" and not class_dirs:
        raise DataFormatError(f"{root}: no class sub-folders; expected {root}/<class_name>/<image>")
    if labels == "none" or (labels == "auto" and len(class_dirs) < 2):
        everything = list_images(root, extensions)
        unlabeled = np.full(len(everything), -1, dtype=np.int64)
        return FileList(root, everything, unlabeled, [], f"folder:{root}:unlabeled")
    exts = {e.lower() for e in extensions}
    loose = sorted(
        p.name
        for p in root.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in exts
    )
    if loose:
        raise DataFormatError(
            f"{root}: {len(loose)} images (e.g. {loose[0]!r}) lie directly in the folder beside "
            f"the class sub-folders {class_dirs[:5]}; move them into a class folder, or set "
            "data.labels=none to use every image unlabeled"
        )
    paths: list[str] = []
    label_ids: list[int] = []
    for label, name in enumerate(class_dirs):
        try:
            found = [f"{name}/{path}" for path in list_images(root / name, extensions)]
        except DataFormatError:
            raise DataFormatError(
                f"{root / name}: class folder holds no images with extensions {sorted(exts)}"
            ) from None
        paths += found
        label_ids += [label] * len(found)
    return FileList(
        root=root,
        paths=paths,
        labels=np.asarray(label_ids, dtype=np.int64),
        class_names=class_dirs,
        source=f"folder:{root}",
    )


# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

Loader = Callable[..., "ImageArray | FileList | None"]


def _list_source(
    root: Path,
    train: bool,
    train_list: str | Path | None = None,
    test_list: str | Path | None = None,
    check_files: bool = True,
) -> FileList:
    list_file = train_list if train else test_list
    if list_file is None:
        raise ValueError(
            f"source 'list' needs {'train_list' if train else 'test_list'}=<path to list file>"
        )
    return load_list_file(root, list_file, check_files=check_files)


def _folder_source(root: Path, train: bool, labels: str = "auto") -> FileList | None:
    # `root/train` and `root/test` (or `root/val`) split folders when present; else `root` is the
    # training set and there is no test split (None), as there is none for unlabeled images.
    # A test split is labelled by its sub-folders, even by one (a test set of a single class).
    for split in ("train",) if train else ("test", "val"):
        if (root / split).is_dir():
            return load_image_folder(root / split, labels=labels if train else "folders")
    return load_image_folder(root, labels=labels) if train else None


def _cifar10_source(root: Path, train: bool, download: bool = False) -> ImageArray:
    if download:
        download_cifar(root, 10)
    return load_cifar(root, 10, train)


def _cifar100_source(root: Path, train: bool, download: bool = False) -> ImageArray:
    if download:
        download_cifar(root, 100)
    return load_cifar(root, 100, train)


SOURCES: dict[str, Loader] = {
    "cifar10": _cifar10_source,
    "cifar100": _cifar100_source,
    "fashion_mnist": load_fashion_mnist,
    "list": _list_source,
    "folder": _folder_source,
}


def _load(name: str, root: str | Path | None, train: bool, **options: Any) -> ImageSplit | None:
    if name not in SOURCES:
        raise ValueError(f"unknown data source {name!r}; valid names: {sorted(SOURCES)}")
    if root is None and name != "fashion_mnist":
        raise ValueError(f"source {name!r} needs a root directory")
    return SOURCES[name](None if root is None else Path(root), train, **options)


def load_source(name: str, root: str | Path | None, train: bool, **options: Any) -> ImageSplit:
    """Load a named source's training or test split (a key of ``SOURCES``).

    Args:
        name: "cifar10", "cifar100", "fashion_mnist", "list" or "folder".
        root: data directory (None is allowed for "fashion_mnist": the Debian package location).
        train: training split, else test split.
        **options: source-specific options ("list": ``train_list``, ``test_list``,
            ``check_files``; "folder": ``labels``).

    Raises:
        DataFormatError: the source has no such split (an image folder without a test split).
    """
    split = _load(name, root, train, **options)
    if split is None:
        raise DataFormatError(f"{root}: no test split folder ({root}/test or {root}/val)")
    return split


def load_splits(
    name: str, root: str | Path | None, labels: str = "auto", **options: Any
) -> tuple[ImageSplit, ImageSplit | None]:
    """A source's training split and its test split, None where it has none (an image folder
    without ``test/`` or ``val/``; unlabeled images). ``labels="none"`` drops the labels.

    A labelled test split's classes are matched to the training split's by name (a folder's
    test split may lack a class, which would shift its label ids).

    Raises:
        DataFormatError: a test class that the training split does not have.
    """
    folder = {"labels": labels} if name == "folder" else {}
    train = _load(name, root, True, **folder, **options)
    assert train is not None
    if labels == "none" or train.num_classes == 0:
        return train.without_labels(), None
    test = _load(name, root, False, **folder, **options)
    if test is None or test.class_names == train.class_names:
        return train, test
    index = {name: i for i, name in enumerate(train.class_names)}
    unknown = sorted(set(test.class_names) - set(index))
    if unknown:
        raise DataFormatError(
            f"{test.source}: test classes {unknown[:5]} do not occur in the training split"
        )
    mapping = np.asarray([index[c] for c in test.class_names], dtype=np.int64)
    assert isinstance(test, FileList)  # the in-memory sources' splits share their classes
    relabelled = mapping[test.labels_of()]
    return train, FileList(test.root, test.paths, relabelled, list(train.class_names), test.source)


# Long-tail profile each source gets with ``data.profile=auto``: the balanced in-memory sets are
# cut to the paper's protocol; files (list files, image folders) are taken as they are.
DEFAULT_PROFILES = {"cifar10": "ldam", "cifar100": "ldam", "fashion_mnist": "ldam"}


def default_profile(cfg: DataConfig) -> str:
    """``data.profile`` as run: ``auto`` resolves to the source's default (``none`` for
    unlabeled data, list files and image folders); other values are returned as given."""
    if cfg.profile != "auto":
        return cfg.profile
    if cfg.labels == "none":
        return "none"
    return DEFAULT_PROFILES.get(cfg.source, "none")


# Side of the images of the in-memory sources.
NATIVE_SIZES = {"cifar10": 32, "cifar100": 32, "fashion_mnist": 28}


def image_size(cfg: DataConfig) -> int:
    """Side of the images a model of this data sees: ``data.image_size``, else the source's
    own (in-memory sources), else 224 (crops of decoded files)."""
    return int(cfg.image_size or NATIVE_SIZES.get(cfg.source, DEFAULT_FILE_SIZE))
