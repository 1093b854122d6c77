"""The one list of data sources: a :class:`Source` description per name in :data:`SOURCES`.

Everything the code knows about a source is a field of its description: how to load it, where
it lives by default, its native image size and channels, its normalisation statistics, the
long-tail profile ``data.profile=auto`` gives it, its images per class, the config options its
loader takes, and whether its files (not its name) are the data set. Loading
(:mod:`~geoharmony.data.sources`), normalisation (:mod:`~geoharmony.data.normalization`), the
pretraining cut (:mod:`~geoharmony.data.build`), deficit references and transfer probes look
their source up here; none of them keeps a table of its own. A new source is one entry in
:data:`SOURCES` plus its loader function (docs/design.md, "Adding a data source").

The catalog is a module of its own so that every reader can import it without a cycle: it
imports only the loaders and split types below it, and nothing that reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from geoharmony.data.cifar import cifar10_split, cifar100_split
from geoharmony.data.fashion_mnist import (
    FASHION_MNIST_DEBIAN_ROOT,
    FASHION_MNIST_MISSING,
    load_fashion_mnist,
)
from geoharmony.data.files import folder_split, list_split
from geoharmony.data.glyphs import GLYPHS_DEFAULT_ROOT, GLYPHS_MISSING, load_glyphs
from geoharmony.data.longtail import PROFILES
from geoharmony.data.pixels import Stats
from geoharmony.data.splits import ImageSplit

__all__ = [
    "SOURCES",
    "Loader",
    "Source",
    "SourceTable",
    "file_sources",
    "find_source",
    "get_source",
]

# ``loader(root, train, **options) -> split``: ``root`` is a Path (the default root when the
# config gives none); None means the source has no such split (an image folder without test/).
Loader = Callable[..., "ImageSplit | None"]


@dataclass(frozen=True, kw_only=True)
class Source:
    """Everything about one data source.

    Attributes:
        loader: ``(root: Path, train: bool, **options) -> ImageSplit | None``; in-memory
            sources give an ``ImageArray`` (uint8 ``[N, channels, native_size, native_size]``),
            file sources a ``FileList``.
        native_size: side of its stored images; None for files of any size (the model then sees
            ``data.image_size``, else 224-pixel crops).
        channels: channels the model sees (1 grayscale, 3 RGB; files are decoded as RGB).
        stats: per-channel ``(mean, std)`` of its training images, pixels scaled to [0, 1], one
            value per channel each; None: ImageNet's (list files, image folders).
        default_profile: the long-tail profile ``data.profile=auto`` cuts (``none``: the images
            as they are).
        images_per_class: images of each class in its balanced training split, the profile's
            head count when ``data.n_max`` is unset; None: the smallest class's count.
        default_root: where it lives when ``data.root`` is unset; None: a root is required.
        missing_hint: what to say when ``default_root`` does not exist (how to install it).
        options: the ``DataConfig`` fields its loader takes as keyword arguments, e.g.
            ``("train_list", "test_list")``; ``"download"`` marks a downloadable source.
        files: its images are files decoded per item, so its location, not its name, is the data
            set (deficit references compare the path; transfer probes take only such sources).
    """

    loader: Loader
    native_size: int | None
    channels: int
    stats: Stats | None = None
    default_profile: str = "none"
    images_per_class: int | None = None
    default_root: Path | None = None
    missing_hint: str = ""
    options: tuple[str, ...] = ()
    files: bool = False

    def __post_init__(self) -> None:
        # A description that contradicts itself fails where it is written, not in a run.
        if self.channels < 1:
            raise ValueError(f"channels must be positive, got {self.channels}")
        if self.native_size is None and not self.files:
            raise ValueError("an in-memory source (files=False) needs its native_size")
        if self.native_size is not None and self.native_size < 1:
            raise ValueError(f"native_size must be positive, got {self.native_size}")
        if self.stats is not None and not len(self.stats[0]) == len(self.stats[1]) == self.channels:
            raise ValueError(
                f"stats need one mean and one std per channel ({self.channels}), got {self.stats}"
            )
        if self.default_profile != "none" and self.default_profile not in PROFILES:
            valid = ", ".join(("none", *PROFILES))
            raise ValueError(f"default_profile {self.default_profile!r} is not one of {valid}")
        if self.images_per_class is not None and self.images_per_class < 1:
            raise ValueError(f"images_per_class must be positive, got {self.images_per_class}")
        if self.default_root is not None and not self.missing_hint:
            raise ValueError("a default_root needs a missing_hint (how to install the data)")


SOURCES: dict[str, Source] = {
    "cifar10": Source(
        loader=cifar10_split,
        native_size=32,
        channels=3,
        stats=((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        default_profile="ldam",
        images_per_class=5000,
        options=("download",),
    ),
    "cifar100": Source(
        loader=cifar100_split,
        native_size=32,
        channels=3,
        stats=((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        default_profile="ldam",
        images_per_class=500,
        options=("download",),
    ),
    "fashion_mnist": Source(
        loader=load_fashion_mnist,
        native_size=28,
        channels=1,
        stats=((0.2860,), (0.3530,)),  # measured on the 60,000 training images
        default_profile="ldam",
        images_per_class=6000,
        default_root=FASHION_MNIST_DEBIAN_ROOT,
        missing_hint=FASHION_MNIST_MISSING,
    ),
    "glyphs": Source(
        loader=load_glyphs,
        native_size=32,
        channels=1,
        # Measured once: pixel mean and std (pixels scaled to [0, 1]) over every image of the
        # rendered training split, 115 classes x 500 = 57,500 images from the fonts of
        # scripts/install_glyph_fonts.sh (glyphs.pixel_stats; each cache's manifest.json
        # records the value for its own fonts)
        stats=((0.1514,), (0.3292,)),
        default_profile="ldam",  # CIFAR-100-LT's: n_max 500, rho from data.imbalance_ratio
        images_per_class=500,
        default_root=GLYPHS_DEFAULT_ROOT,
        missing_hint=GLYPHS_MISSING,
    ),
    "list": Source(
        loader=list_split,
        native_size=None,
        channels=3,
        options=("train_list", "test_list"),
        files=True,
    ),
    "folder": Source(
        loader=folder_split,
        native_size=None,
        channels=3,
        options=("labels",),
        files=True,
    ),
}


def find_source(name: str) -> Source | None:
    """The description of source ``name``; None for a name that is not registered."""
    return SOURCES.get(name)


def get_source(name: str) -> Source:
    """The description of source ``name``.

    Raises:
        ValueError: ``name`` is not registered (the message lists the valid names).
    """
    source = SOURCES.get(name)
    if source is None:
        raise ValueError(f"unknown data source {name!r}; valid names: {sorted(SOURCES)}")
    return source


def file_sources() -> tuple[str, ...]:
    """Names of the sources whose images are files (``files=True``), in registry order."""
    return tuple(name for name, source in SOURCES.items() if source.files)


T = TypeVar("T")


class SourceTable(Mapping[str, T]):
    """A read-only ``{name: value}`` view of one field of every registered source that has it
    (``read`` gives None where it does not), plus fixed ``extra`` entries.

    It reads :data:`SOURCES` at every access, so a source registered later (or in a test) shows
    up: the tables that modules used to keep (``NATIVE_SIZES``, ``NORM_STATS``...) are such
    views, not copies.
    """

    def __init__(
        self, read: Callable[[Source], T | None], extra: Mapping[str, T] | None = None
    ) -> None:
        self._read = read
        self._extra = dict(extra or {})

    def _own(self) -> dict[str, T]:
        found = {}
        for name, source in SOURCES.items():
            value = self._read(source)
            if value is not None:
                found[name] = value
        return found

    def __getitem__(self, name: str) -> T:
        source = SOURCES.get(name)
        value = None if source is None else self._read(source)
        if value is not None:
            return value
        return self._extra[name]  # KeyError for a name without one

    def __iter__(self) -> Iterator[str]:
        own = self._own()
        return iter([*own, *(name for name in self._extra if name not in own)])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self)!r})"
