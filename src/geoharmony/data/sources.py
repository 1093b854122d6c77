"""Loading a named source: its training and test splits, its default profile and image size.

What each source is (loader, default location, native size, statistics, profile) is its
description in :mod:`geoharmony.data.catalog`; this module only reads it. The loaders themselves
live by format: :mod:`~geoharmony.data.cifar` (python pickle), :mod:`~geoharmony.data.fashion_mnist`
(IDX), :mod:`~geoharmony.data.files` (list files, image folders); their names are re-exported here,
where callers have always found them.

Small-image sources load fully into memory as an :class:`ImageArray`; large-image sources are
described by a :class:`FileList` and decoded per item. Every bad input raises
:class:`DataFormatError` with a message that names the offending file.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from geoharmony.config import ConfigError
from geoharmony.data import catalog
from geoharmony.data.catalog import SOURCES, Source, SourceTable
from geoharmony.data.cifar import download_cifar, load_cifar
from geoharmony.data.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DEBIAN_ROOT,
    load_fashion_mnist,
    read_idx,
)
from geoharmony.data.files import (
    IMAGE_EXTENSIONS,
    list_images,
    load_image_folder,
    load_list_file,
)
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
    "Source",
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


def _root(name: str, source: Source, root: str | Path | None) -> Path:
    """The folder to load ``name`` from: ``root``, else the source's default root."""
    if root is not None:
        return Path(root)
    if source.default_root is None:
        # A ConfigError (a ValueError) so the command line says it without a traceback.
        raise ConfigError(
            f"source {name!r} needs a root directory (data.root, or --root for inspect)"
        )
    if not source.default_root.is_dir():
        raise DataFormatError(f"{source.default_root}: {source.missing_hint}")
    return source.default_root


def _load(name: str, root: str | Path | None, train: bool, **options: Any) -> ImageSplit | None:
    # Looked up at call time through the module: a source registered later is found too.
    source = catalog.get_source(name)
    return source.loader(_root(name, source, root), train, **options)


def load_source(name: str, root: str | Path | None, train: bool, **options: Any) -> ImageSplit:
    """Load a named source's training or test split (a key of ``SOURCES``).

    Args:
        name: a registered source: "cifar10", "cifar100", "fashion_mnist", "list", "folder".
        root: data directory (None: the source's ``default_root``, e.g. the Debian package
            location of "fashion_mnist"; an error for sources without one).
        train: training split, else test split.
        **options: source-specific options ("list": ``train_list``, ``test_list``,
            ``check_files``; "folder": ``labels``; "cifar10"/"cifar100": ``download``).

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

    ``labels`` reaches the loader of a source whose description lists the ``labels`` option
    (an image folder reads its classes from sub-folders); other sources' labels are dropped
    afterwards. A labelled test split's classes are matched to the training split's by name (a
    folder's test split may lack a class, which would shift its label ids).

    Raises:
        DataFormatError: a test class that the training split does not have.
    """
    takes_labels = "labels" in catalog.get_source(name).options
    read = {"labels": labels} if takes_labels else {}
    train = _load(name, root, True, **read, **options)
    assert train is not None
    if labels == "none" or train.num_classes == 0:
        return train.without_labels(), None
    test = _load(name, root, False, **read, **options)
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


# Long-tail profile each source gets with ``data.profile=auto`` (sources whose default is
# ``none`` are left out, as this table always left them): a live view of the catalog.
DEFAULT_PROFILES: SourceTable[str] = SourceTable(
    lambda s: None if s.default_profile == "none" else s.default_profile
)


def default_profile(cfg: DataConfig) -> str:
    """``data.profile`` as run: ``auto`` resolves to the source's default (``none`` for
    unlabeled data, list files and image folders); other values are returned as given."""
    if cfg.profile != "auto":
        return cfg.profile
    if cfg.labels == "none":
        return "none"
    source = catalog.find_source(cfg.source)
    return "none" if source is None else source.default_profile


# Side of the images of the in-memory sources: a live view of the catalog.
NATIVE_SIZES: SourceTable[int] = SourceTable(lambda s: s.native_size)


def image_size(cfg: DataConfig) -> int:
    """Side of the images a model of this data sees: ``data.image_size``, else the source's
    own (in-memory sources), else 224 (crops of decoded files)."""
    source = catalog.find_source(cfg.source)
    native = None if source is None else source.native_size
    return int(cfg.image_size or native or DEFAULT_FILE_SIZE)
