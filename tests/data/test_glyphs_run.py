"""The glyphs source end to end: a tiny ``geoharmony pretrain`` of its preset, and ``inspect``'s
report, on the two small font packages scripts/setup.sh installs.

The config has no field for the loader's settings, so the tests register the source with a
tiny :class:`GlyphSettings` the way a new source is registered: one description.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path

import pytest

from geoharmony.data import glyphs
from geoharmony.data.catalog import SOURCES
from geoharmony.data.glyphs import GlyphSettings, load_glyphs
from glyph_fonts import SMALL_FONTS, font_folder, needs_small_fonts
from tiny_runs import REPO

_REGULAR = {
    "DejaVuSans",
    "DejaVuSansMono",
    "DejaVuSerif",
    "LiberationSans-Regular",
    "LiberationSerif-Regular",
    "LiberationMono-Regular",
}

# One regular face of each small font file family: fewer fonts to render for a whole run.
REGULAR_FONTS = [p for p in SMALL_FONTS if p.stem in _REGULAR]

pytestmark = needs_small_fonts

TINY = GlyphSettings(
    classes=("A", "Q", "a", "g", "3", "Γ", "Ж", "?"),
    train_per_class=8,
    test_per_class=4,
    test_variants=2,
    min_train_families=2,
    min_test_families=1,
    min_classes=4,
    test_fraction=0.25,
)


@pytest.fixture
def tiny_glyphs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The glyphs source with TINY settings and a temporary cache; returns its font root."""
    root = font_folder(tmp_path / "fonts", REGULAR_FONTS)
    loader = functools.partial(load_glyphs, settings=TINY, cache_dir=tmp_path / "cache")
    monkeypatch.setitem(SOURCES, "glyphs", dataclasses.replace(SOURCES["glyphs"], loader=loader))
    return root


def test_a_tiny_pretrain_of_the_preset_finishes(tiny_glyphs: Path, tmp_path: Path) -> None:
    from geoharmony.cli import main

    out = tmp_path / "run"
    args = [
        "pretrain",
        "--config",
        str(REPO / "configs" / "glyphs_lt" / "simclr.yaml"),
        "--output",
        str(out),
        f"data.root={tiny_glyphs}",
        "data.n_max=8",
        "data.imbalance_ratio=2",
        "model.width=0.0625",
        "model.projector_hidden=16",
        "model.projector_dim=8",
        "optim.batch_size=8",
        "optim.epochs=1",
        "eval.monitor_every=0",
        "eval.probe_shots=null",
        "eval.probe_epochs=5",
        "eval.knn_k=5",
        "train.threads=1",
        "train.progress=false",
        "train.precision=fp32",
    ]
    assert main(args) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["data"]["source"].startswith(f"glyphs:{tiny_glyphs}:")
    counts = metrics["data"]["class_counts"]
    assert counts[0] == 8 and counts[-1] == 4  # ldam at rho 2 from the head class's 8


def test_inspect_describes_the_in_memory_splits(tiny_glyphs: Path) -> None:
    from geoharmony.data.overview import format_report, inspect_source

    report = inspect_source("glyphs", tiny_glyphs, progress=False)
    assert report["train"]["class_counts"] == [8] * len(report["train"]["class_names"])
    assert report["train"]["imbalance_ratio"] == 1.0
    assert report["test"]["sizes"]["most_common"] == [[32, 32, report["test"]["images"]]]
    text = format_report(report)
    assert "images in memory" in text and "unreadable" not in text
    assert glyphs.GLYPHS_DEFAULT_ROOT == Path("/usr/share/fonts")
