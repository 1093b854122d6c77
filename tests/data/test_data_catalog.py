"""The source catalog: every source is one complete, consistent description, the tables that
used to list sources give their old values, and a source registered through one description
loads, normalises, sizes and cuts its profile from it alone."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from geoharmony.config import ConfigError, DataConfig
from geoharmony.data import catalog
from geoharmony.data.build import build_run_data
from geoharmony.data.catalog import SOURCES, Source, file_sources
from geoharmony.data.longtail import PROFILES
from geoharmony.data.normalization import NORM_STATS, norm_stats
from geoharmony.data.pixels import IMAGENET_STATS
from geoharmony.data.sources import (
    DEFAULT_PROFILES,
    NATIVE_SIZES,
    default_profile,
    image_size,
    load_source,
    load_splits,
)
from geoharmony.data.splits import DEFAULT_FILE_SIZE, DataFormatError, ImageArray
from geoharmony.downstream.transfer import TRANSFER_SOURCES, load_transfer_splits
from geoharmony.eval import deficit

CONFIG_FIELDS = {f.name for f in dataclasses.fields(DataConfig)}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_description_is_complete_and_consistent(name: str) -> None:
    source = SOURCES[name]
    assert callable(source.loader)
    assert source.channels in (1, 3)
    # Its normalisation (its own statistics, else ImageNet's) has one value per channel.
    mean, std = norm_stats(name)
    assert len(mean) == len(std) == source.channels
    assert all(s > 0 for s in std)
    if source.files:
        # Files are decoded as RGB, of any size: the model sees data.image_size or 224.
        assert source.native_size is None and source.channels == 3
        assert (mean, std) == (source.stats or IMAGENET_STATS)
    else:
        # An in-memory set has its own size, statistics and balanced per-class count.
        assert source.native_size and source.stats is not None
        assert source.images_per_class and source.images_per_class > 0
    assert source.default_profile in ("none", *PROFILES)
    assert set(source.options) <= CONFIG_FIELDS, "options name DataConfig fields"
    assert source.default_root is None or source.missing_hint
    # The lookups every module uses give the description's values.
    cfg = DataConfig(source=name, profile="auto")
    assert default_profile(cfg) == source.default_profile
    assert image_size(cfg) == (source.native_size or DEFAULT_FILE_SIZE)
    assert image_size(dataclasses.replace(cfg, image_size=64)) == 64


def test_the_former_tables_give_their_old_values() -> None:
    # Each was a literal table before the catalog; the views must read back the same.
    # (glyphs came after the catalog: its values are its description's, pinned here too.)
    sizes = {"cifar10": 32, "cifar100": 32, "fashion_mnist": 28, "glyphs": 32}
    assert dict(NATIVE_SIZES) == sizes
    assert dict(DEFAULT_PROFILES) == {
        "cifar10": "ldam",
        "cifar100": "ldam",
        "fashion_mnist": "ldam",
        "glyphs": "ldam",
    }
    assert dict(NORM_STATS) == {
        "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
        "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
        "fashion_mnist": ((0.2860,), (0.3530,)),
        "glyphs": ((0.1514,), (0.3292,)),
        "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    }
    per_class = {n: s.images_per_class for n, s in SOURCES.items() if s.images_per_class}
    assert per_class == {"cifar10": 5000, "cifar100": 500, "fashion_mnist": 6000, "glyphs": 500}
    assert set(file_sources()) == {"list", "folder"}
    assert TRANSFER_SOURCES == ("folder", "list")
    assert [n for n, s in SOURCES.items() if "download" in s.options] == ["cifar10", "cifar100"]
    roots = {n: s.default_root for n, s in SOURCES.items() if s.default_root}
    assert roots == {
        "fashion_mnist": Path("/usr/share/datasets/fashion-mnist"),
        "glyphs": Path("/usr/share/fonts"),
    }
    assert norm_stats("folder") == norm_stats("unknown") == NORM_STATS["imagenet"]
    assert default_profile(DataConfig(source="unknown", profile="auto")) == "none"
    with pytest.raises(KeyError):
        NATIVE_SIZES["folder"]


# --------------------------------------------------------------------------------------------
# A source added by one description
# --------------------------------------------------------------------------------------------

GLYPH_STATS = ((0.25,), (0.5,))


def _glyph_loader(calls: list[tuple[Path, bool]]) -> Any:
    """A loader of 3 classes of 8 (train) or 2 (test) 12x12 grayscale images; records calls."""

    def load(root: Path, train: bool) -> ImageArray:
        calls.append((root, train))
        per_class = 8 if train else 2
        labels = torch.arange(3).repeat_interleave(per_class)
        gen = torch.Generator().manual_seed(int(train))
        images = torch.randint(0, 256, (len(labels), 1, 12, 12), dtype=torch.uint8, generator=gen)
        return ImageArray(images, labels, ["a", "b", "c"], f"glyphs:{root}:{train}")

    return load


@pytest.fixture
def glyphs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """A ``glyphs`` source registered the way a new source is: one description."""
    calls: list[tuple[Path, bool]] = []
    source = Source(
        loader=_glyph_loader(calls),
        native_size=12,
        channels=1,
        stats=GLYPH_STATS,
        default_profile="ldam",
        images_per_class=6,
        default_root=tmp_path,
        missing_hint="no fonts found",
    )
    monkeypatch.setitem(SOURCES, "glyphs", source)
    return SimpleNamespace(source=source, calls=calls, root=tmp_path)


def test_a_registered_source_loads_from_its_description(glyphs: SimpleNamespace) -> None:
    train, test = load_splits("glyphs", None)  # no root: the description's default root
    assert isinstance(train, ImageArray) and isinstance(test, ImageArray)
    assert train.labels.bincount().tolist() == [8, 8, 8] and len(test) == 6
    assert glyphs.calls == [(glyphs.root, True), (glyphs.root, False)]
    other = glyphs.root / "elsewhere"
    load_source("glyphs", other, train=True)
    assert glyphs.calls[-1] == (other, True)
    # Every lookup finds it, the former tables included.
    cfg = DataConfig(source="glyphs", profile="auto")
    assert default_profile(cfg) == "ldam" and image_size(cfg) == 12
    assert norm_stats("glyphs") == NORM_STATS["glyphs"] == GLYPH_STATS
    assert NATIVE_SIZES["glyphs"] == 12 and DEFAULT_PROFILES["glyphs"] == "ldam"
    assert "glyphs" not in file_sources()


def test_a_registered_source_is_cut_by_its_description(glyphs: SimpleNamespace) -> None:
    cfg = DataConfig(source="glyphs", profile="auto", imbalance_ratio=2.0, num_workers=0)
    data = build_run_data(cfg)
    # images_per_class is the head count: ldam at rho 2 over 3 classes gives 6, 4, 3.
    assert data.class_counts == [6, 4, 3]
    assert data.name == "glyphs-lt (ldam, rho=2)"
    assert data.image_size == 12 and data.stats == GLYPH_STATS and data.in_channels == 1
    with pytest.raises(ConfigError, match=r"data\.download=true fetches cifar10 and cifar100 only"):
        build_run_data(dataclasses.replace(cfg, download=True))


def test_config_options_reach_the_loader_the_description_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[dict[str, Any]] = []

    def load(root: Path, train: bool, **options: Any) -> ImageArray:
        seen.append(options)
        labels = torch.arange(2).repeat_interleave(4)
        return ImageArray(torch.zeros(8, 3, 8, 8, dtype=torch.uint8), labels, ["x", "y"], "f")

    described = Source(loader=load, native_size=8, channels=3, options=("download", "train_list"))
    monkeypatch.setitem(SOURCES, "fetched", described)
    cfg = DataConfig(source="fetched", root=str(tmp_path), download=True, train_list="t.txt")
    data = build_run_data(cfg)
    assert seen == [{"download": True, "train_list": "t.txt"}] * 2
    assert data.name == "fetched" and data.stats == IMAGENET_STATS  # profile none, no stats


def test_a_missing_default_root_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    absent = tmp_path / "absent"
    described = Source(
        loader=_glyph_loader([]),
        native_size=12,
        channels=1,
        default_root=absent,
        missing_hint="no fonts found; install fonts-dejavu",
    )
    monkeypatch.setitem(SOURCES, "glyphs", described)
    with pytest.raises(DataFormatError, match=r"absent: no fonts found; install fonts-dejavu"):
        load_source("glyphs", None, train=True)
    monkeypatch.setitem(SOURCES, "glyphs", dataclasses.replace(described, default_root=None))
    with pytest.raises(ValueError, match=r"source 'glyphs' needs a root directory"):
        load_source("glyphs", None, train=True)


def test_file_sources_come_from_their_descriptions(monkeypatch: pytest.MonkeyPatch) -> None:
    # Deficit references compare a file source's path, a named set's name; transfer probes take
    # the file sources only.
    result = {"data": {"source": "shelf:/data/shelf:train"}}
    assert deficit._dataset(result) == "shelf"
    monkeypatch.setitem(SOURCES, "shelf", dataclasses.replace(SOURCES["folder"]))
    assert deficit._dataset(result) == "shelf:/data/shelf:train"
    assert deficit._dataset({"data": {"source": "cifar10:/a:train"}}) == "cifar10"
    with pytest.raises(ValueError, match=r"transfer source must be folder or list or shelf"):
        load_transfer_splits("cifar10", "/nowhere")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stats": ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))}, r"one mean and one std per channel \(1\)"),
        ({"native_size": None}, r"in-memory source .* needs its native_size"),
        ({"default_profile": "steep"}, r"'steep' is not one of none, ldam"),
        ({"images_per_class": 0}, r"images_per_class must be positive"),
        ({"default_root": Path("/fonts")}, r"default_root needs a missing_hint"),
        ({"channels": 0}, r"channels must be positive"),
    ],
)
def test_a_contradictory_description_is_refused(change: dict[str, Any], message: str) -> None:
    fine = Source(loader=_glyph_loader([]), native_size=32, channels=1, stats=((0.2,), (0.3,)))
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(fine, **change)


def test_the_tables_are_views_of_the_one_list() -> None:
    # Nothing keeps a copy: a lookup reads the registry at the time of the call.
    assert catalog.find_source("cifar10") is SOURCES["cifar10"]
    assert catalog.get_source("folder") is SOURCES["folder"]
    with pytest.raises(ValueError, match=r"unknown data source 'imagenet'.*cifar10.*folder"):
        catalog.get_source("imagenet")
    assert list(NORM_STATS) == ["cifar10", "cifar100", "fashion_mnist", "glyphs", "imagenet"]
    assert len(NATIVE_SIZES) == 4 and "list" not in NATIVE_SIZES
