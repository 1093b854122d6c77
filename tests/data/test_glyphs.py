"""The glyphs source on the two small font packages scripts/setup.sh installs (fonts-dejavu-core,
fonts-liberation2): four design families, a handful of classes, a few images per class.

Every test renders into its own temporary cache folder; a folder of symbolic links to the
packages' files is the font root, so the fonts other packages add do not change the data.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from geoharmony.data import glyphs
from geoharmony.data.glyph_classes import CANDIDATES, DROPPED, GlyphClass, dropped_characters
from geoharmony.data.glyphs import (
    GlyphSettings,
    Jitter,
    family_key,
    glyph_crop,
    load_glyphs,
    open_font,
    render_glyph,
)
from geoharmony.data.sources import load_splits
from geoharmony.data.splits import DataFormatError
from glyph_fonts import DEJAVU, LIBERATION, SMALL_FONTS, font_folder, needs_small_fonts

# A few classes of each script; one family of four is held out for the test split.
TINY = GlyphSettings(
    classes=("A", "Q", "a", "g", "3", "Γ", "λ", "Ж", "?", "&"),
    train_per_class=6,
    test_per_class=5,
    test_variants=2,
    min_train_families=2,
    min_test_families=1,
    min_classes=5,
    test_fraction=0.25,
)


@pytest.fixture
def font_root(tmp_path: Path) -> Path:
    """A folder of links to the small packages' font files."""
    return font_folder(tmp_path / "fonts")


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / glyphs.IMAGES_CSV).open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _folder(cache: Path) -> Path:
    (folder,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    return folder


# --------------------------------------------------------------------------------------------
# The class table and the families (no fonts needed)
# --------------------------------------------------------------------------------------------


def test_the_class_table_drops_each_shape_once() -> None:
    chars = [c.char for c in CANDIDATES]
    assert len(chars) == len(set(chars)) == 120
    dropped = [c for group in DROPPED for c in group.chars]
    assert len(dropped) == len(set(dropped)), "a character is dropped by one group only"
    assert not set(chars) & set(dropped)
    # Each group names a kept class (or none) and says why.
    assert all((g.kept is None or g.kept in chars) and g.why for g in DROPPED)
    for same_shape in ("c", "o", "0", "s", "v", "w", "x", "z", "l", "1", "p", "d", "А", "Α"):
        assert same_shape in dropped_characters()
    with pytest.raises(ValueError, match=r"'c' is no glyph class: c is C at x-height"):
        GlyphSettings(classes=("C", "c"))


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("DejaVu Sans Mono", "dejavu sans"),
        ("DejaVu Serif", "dejavu serif"),
        ("TeX Gyre Heros Cn", "helvetica"),
        ("Nimbus Sans Narrow", "helvetica"),
        ("FreeSans", "helvetica"),
        ("Liberation Sans", "arimo"),
        ("Arimo", "arimo"),
        ("Latin Modern Roman Slanted", "computer modern"),
        ("CMU Serif", "computer modern"),
        ("Noto Sans Armenian", "noto sans"),
        ("Bocuma Angle Dent BRK", "bocuma"),
        ("Open Sans Condensed", "open sans"),
        ("Go Medium", "go"),
        ("Accanthis ADF Std No2", "accanthis adf"),
        ("Go Smallcaps", None),
        ("Linux Biolinum Keyboard O", None),
    ],
)
def test_files_group_into_design_families(name: str, family: str | None) -> None:
    assert family_key(name) == family


@pytest.mark.parametrize("method", ["simclr", "focal", "sdclr", "dnc", "bcl"])
def test_the_presets_pair_each_baseline_with_its_gh_run(method: str) -> None:
    from geoharmony.configure import load_config
    from geoharmony.engine.schedules import learning_rate
    from geoharmony.methods.dnc import StagePlan

    presets = Path(__file__).resolve().parents[2] / "configs" / "glyphs_lt"
    base = load_config(presets / f"{method}.yaml")
    gh = load_config(presets / f"{method}_gh.yaml")
    assert base.method.name == gh.method.name == method
    assert not base.gh.enabled and gh.gh.enabled
    for cfg in (base, gh):
        assert cfg.data.source == "glyphs" and cfg.data.n_max == 500
        assert cfg.gh.num_anchors == 115  # the class count of the full font set
        assert 2 * cfg.gh.warmup_epochs == cfg.optim.epochs
    # One schedule for both, so that the +GH run can continue its baseline's checkpoint.
    for epoch in range(base.optim.epochs):
        assert learning_rate(base, epoch) == learning_rate(gh, epoch)
    if method == "dnc":
        plan = StagePlan.from_config(base)
        assert plan.base_end == base.gh.warmup_epochs and plan.distill_epochs >= 1


def test_settings_refuse_contradictions() -> None:
    with pytest.raises(ValueError, match="leaves no box"):
        GlyphSettings(size=32, margin=16)
    with pytest.raises(ValueError, match="test_fraction"):
        GlyphSettings(test_fraction=1.0)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@needs_small_fonts
def test_renders_are_deterministic_for_a_font_file_and_seed(tmp_path: Path) -> None:
    source = DEJAVU / "DejaVuSerif.ttf"
    moved = tmp_path / "elsewhere.ttf"
    shutil.copyfile(source, moved)  # the same bytes at another path: the same images

    def image(path: Path, seed: int, variant: int) -> np.ndarray:
        settings = GlyphSettings(seed=seed)
        jitter = Jitter.draw(settings, glyphs.file_sha256(path), "Ж", variant)
        crop = glyph_crop(open_font(path), "Ж")
        assert crop is not None
        return render_glyph(crop, jitter, settings)

    first = image(source, 0, 0)
    assert first.dtype == np.uint8 and first.shape == (32, 32)
    assert np.array_equal(first, image(source, 0, 0))
    assert np.array_equal(first, image(moved, 0, 0))
    assert not np.array_equal(first, image(source, 0, 1)), "variants differ"
    assert not np.array_equal(first, image(source, 1, 0)), "seeds differ"


@needs_small_fonts
def test_the_jitter_stays_in_its_ranges_and_the_glyph_in_the_image() -> None:
    settings = GlyphSettings()
    crop = glyph_crop(open_font(DEJAVU / "DejaVuSans-Bold.ttf"), "W")
    assert crop is not None
    for variant in range(40):
        jitter = Jitter.draw(settings, "ab" * 32, "W", variant)
        assert 0.7 <= jitter.scale <= 1.0 and abs(jitter.rotation) <= 15
        assert max(abs(v) for v in jitter.offset) <= 3 and abs(jitter.stroke) <= 1
        image = render_glyph(crop, jitter, settings)
        assert image.max() > 200, "a glyph is drawn"
        # Fitted with its offset clipped: no ink is cut off at the border.
        border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
        assert border.max() < 128


@needs_small_fonts
def test_a_font_draws_only_the_classes_it_truly_has(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = GlyphSettings()
    mono = glyphs.scan_font(DEJAVU / "DejaVuSansMono.ttf", settings)
    assert mono.family == "dejavu sans" and {"A", "Γ", "Ж", "λ"} <= set(mono.drawings)
    # A character the font's cmap lacks comes out as its .notdef box (tofu): never a class.
    path = LIBERATION / "LiberationSans-Regular.ttf"
    font = open_font(path)
    notdef, tofu = glyph_crop(font, glyphs.NOTDEF_PROBE), glyph_crop(font, "\u4e00")
    assert notdef is not None and tofu is not None and tofu.tobytes() == notdef.tobytes()
    with_cjk = (*CANDIDATES, GlyphClass("\u4e00", "cjk"))
    monkeypatch.setattr(glyphs, "CANDIDATES", with_cjk)
    scan = glyphs.scan_font(path, settings)
    assert "\u4e00" not in scan.drawings and "A" in scan.drawings
    for char in scan.drawings:
        crop = glyph_crop(font, char)
        assert crop is not None and crop.tobytes() != notdef.tobytes()


# --------------------------------------------------------------------------------------------
# The splits and the cache
# --------------------------------------------------------------------------------------------


@needs_small_fonts
def test_train_and_test_families_are_disjoint_and_the_test_split_balanced(
    font_root: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    train = load_glyphs(font_root, True, settings=TINY, cache_dir=cache)
    test = load_glyphs(font_root, False, settings=TINY, cache_dir=cache)
    assert train.images.shape == (6 * train.num_classes, 1, 32, 32)
    assert train.images.dtype == torch.uint8 and train.in_channels == 1
    assert train.class_names == test.class_names
    assert train.num_classes >= 5
    # Balanced: the same count of every class; the test count is stated in the manifest.
    manifest = json.loads((_folder(cache) / glyphs.MANIFEST).read_text())
    per_test = manifest["per_class"]["test"]
    assert test.labels.bincount().tolist() == [per_test] * test.num_classes
    assert train.labels.bincount().tolist() == [6] * train.num_classes
    rows = _rows(_folder(cache))
    families = {s: {r["family"] for r in rows if r["split"] == s} for s in ("train", "test")}
    assert families["train"] and families["test"]
    assert not families["train"] & families["test"], "no test typeface is seen in training"
    assert families["test"] == set(manifest["test_families"])
    files = {s: {r["font"] for r in rows if r["split"] == s} for s in ("train", "test")}
    assert not files["train"] & files["test"]


@needs_small_fonts
def test_dropped_and_merged_characters_are_no_class(font_root: Path, tmp_path: Path) -> None:
    wide = GlyphSettings(
        train_per_class=1, test_per_class=1, min_train_families=1, min_test_families=1
    )
    train = load_glyphs(font_root, True, settings=wide, cache_dir=tmp_path / "cache")
    assert not set(train.class_names) & dropped_characters()
    assert train.class_names == [c.char for c in CANDIDATES if c.char in train.class_names]
    assert {"C", "O", "I", "b", "N", "R"} <= set(train.class_names)


@needs_small_fonts
def test_the_cache_round_trip_gives_the_same_images(
    font_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    first = load_glyphs(font_root, True, settings=TINY, cache_dir=cache)

    def no_rendering(*args: object) -> None:
        raise AssertionError("the second load must read the cache")

    monkeypatch.setattr(glyphs, "render_plan", no_rendering)
    again = load_glyphs(font_root, True, settings=TINY, cache_dir=cache)
    assert torch.equal(first.images, again.images)
    assert torch.equal(first.labels, again.labels)
    assert first.class_names == again.class_names and first.source == again.source
    folder = _folder(cache)
    rows = [r for r in _rows(folder) if r["split"] == "train"]
    assert len(rows) == len(first)
    assert {r["sha256"] for r in rows} <= {glyphs.file_sha256(p) for p in SMALL_FONTS}
    manifest = json.loads((folder / glyphs.MANIFEST).read_text())
    assert manifest["settings"] == TINY.record()
    assert manifest["stats"][0][0] == pytest.approx(first.images.float().mean().item() / 255, 1e-3)


@needs_small_fonts
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "manifest.json").write_text("{not json"), r"manifest\.json: unreadable"),
        (lambda f: (f / "manifest.json").write_text("[]"), r"manifest\.json: not a glyph"),
        (lambda f: (f / "images.csv").write_text("split,index\n"), r"images\.csv: the header"),
        (lambda f: _truncate_rows(f / "images.csv"), r"images\.csv: train rows are not 6"),
        (lambda f: np.save(f / "train.npy", np.zeros((3, 1, 32, 32), np.uint8)), r"train\.npy"),
    ],
)
def test_a_corrupt_cache_is_a_named_error(
    font_root: Path, tmp_path: Path, damage, message: str
) -> None:
    cache = tmp_path / "cache"
    load_glyphs(font_root, True, settings=TINY, cache_dir=cache)
    folder = _folder(cache)
    damage(folder)
    with pytest.raises(DataFormatError, match=message) as err:
        load_glyphs(font_root, True, settings=TINY, cache_dir=cache)
    assert f"delete {folder}" in str(err.value)


def _truncate_rows(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").splitlines()
    path.write_text("\n".join(lines[:-1] if lines[-1].startswith("train") else lines[:2]) + "\n")


@needs_small_fonts
def test_a_changed_missing_or_new_font_file_is_a_named_error(
    font_root: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    load_glyphs(font_root, True, settings=TINY, cache_dir=cache)
    link = font_root / "DejaVuSerif.ttf"
    link.unlink()
    shutil.copyfile(DEJAVU / "DejaVuSerif.ttf", link)
    with link.open("ab") as f:
        f.write(b"\0")  # the same file name, other bytes
    with pytest.raises(DataFormatError, match=r"DejaVuSerif\.ttf: font file changed since"):
        load_glyphs(font_root, True, settings=TINY, cache_dir=cache)
    link.unlink()
    with pytest.raises(DataFormatError, match=r"DejaVuSerif\.ttf: font file missing.*install"):
        load_glyphs(font_root, False, settings=TINY, cache_dir=cache)
    shutil.copyfile(DEJAVU / "DejaVuSerif.ttf", link)
    (font_root / "Extra.ttf").symlink_to(DEJAVU / "DejaVuSans.ttf")
    load_glyphs(font_root, True, settings=TINY, cache_dir=cache)  # a link to a known file
    shutil.copyfile(DEJAVU / "DejaVuSans.ttf", font_root / "Copy.ttf")
    with pytest.raises(DataFormatError, match=r"Copy\.ttf: font file not among the 18"):
        load_glyphs(font_root, True, settings=TINY, cache_dir=cache)


@needs_small_fonts
def test_too_few_fonts_name_the_install_script(font_root: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataFormatError, match=r"no \.ttf/\.otf font files.*install_glyph_fonts"):
        load_glyphs(empty, True, settings=TINY, cache_dir=tmp_path / "cache")
    # Four families are far from the 20 training families a class needs by default.
    with pytest.raises(DataFormatError, match=r"0 classes are drawn by at least 20 .*install_gl"):
        load_glyphs(font_root, True, cache_dir=tmp_path / "cache")


@needs_small_fonts
def test_the_source_loads_through_load_splits(font_root: Path, tmp_path: Path) -> None:
    train, test = load_splits("glyphs", font_root, settings=TINY, cache_dir=tmp_path / "cache")
    assert test is not None
    assert train.native_size == test.native_size == 32
    assert train.class_names == test.class_names
    assert str(train.source).startswith(f"glyphs:{font_root}:")
    sheet = np.concatenate(list(train.images[::6, 0].numpy()), axis=1)
    Image.fromarray(sheet).save(tmp_path / "sheet.png")  # one image of each class, to look at
