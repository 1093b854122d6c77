"""The glyphs source: characters rendered from the typefaces of Debian's font packages, 32x32
grayscale, a many-class data set whose test typefaces are never seen in training.

The way from font files to an :class:`ImageArray` (docs/glyphs.md tells the same for a reader):

1. **Fonts.** Every TrueType/OpenType file under the root (``/usr/share/fonts`` by default; with
   that default also ``/usr/share/texmf/fonts/opentype``, where fonts-texgyre and fonts-lmodern
   put theirs) is opened with Pillow's FreeType binding.
2. **Coverage.** A font draws a candidate class (:mod:`~geoharmony.data.glyph_classes`) when its
   glyph is not empty, is not the font's ``.notdef`` drawing (what FreeType shows for a
   character the font's cmap lacks: tofu), and is not the shape of an earlier class in the same
   font once both are fitted to a box (an all-capitals font maps ``a`` to ``A``). Fonts whose
   letters are told apart by a few pixels only (block display faces) and families that are no
   plain letters (key caps, small capitals, dingbats) draw nothing.
3. **Families.** Files are grouped into design families: the family name of the font's name
   table, without weight, width and style words, with the clones of one design across packages
   (Nimbus Sans, TeX Gyre Heros and FreeSans are one Helvetica) mapped to one family. Families,
   not files, are split into training and test families (seeded), so a test typeface is never
   seen in training. Within a family a drawing that another file repeats is used once.
4. **Classes.** A candidate is a class where at least ``min_train_families`` training families
   and ``min_test_families`` test families draw it; fewer than ``min_classes`` such classes is an
   error that names scripts/install_glyph_fonts.sh.
5. **Images.** Each class takes ``train_per_class`` training images, round-robin over the
   training fonts that draw it (a font draws ``ceil(n / fonts)`` jittered variants at most), and
   the same number of test images per class, the largest every class can have from
   ``test_variants`` variants per test font, at most ``test_per_class``.
6. **Rendering.** The glyph's bounding box is scaled to fill the box inside a margin, then
   jittered per image from a seed of (settings seed, font file sha256, character, variant):
   scale, rotation, offset, stroke weight.
7. **Cache.** Both splits are rendered once, into ``<cache>/<key>`` (``.npy`` arrays, a JSON
   manifest and a CSV row per image); later loads read them and check them against the font
   files on disk (a missing, changed or new font file is an error naming it).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from geoharmony.data.glyph_classes import CANDIDATES, GlyphClass, candidate
from geoharmony.data.jsonfile import write_json
from geoharmony.data.splits import DataFormatError, ImageArray

__all__ = [
    "GLYPHS_DEFAULT_ROOT",
    "GLYPHS_MISSING",
    "FontScan",
    "GlyphPlan",
    "GlyphSettings",
    "Jitter",
    "build_plan",
    "cache_folder",
    "family_key",
    "find_font_files",
    "font_roots",
    "glyph_crop",
    "load_glyphs",
    "pixel_stats",
    "render_glyph",
    "render_plan",
    "scan_font",
    "split_families",
]

log = logging.getLogger(__name__)

# Where Debian's font packages put their files; ``data.root`` unset means this.
GLYPHS_DEFAULT_ROOT = Path("/usr/share/fonts")
# fonts-texgyre and fonts-lmodern install their OpenType files in the TeX tree instead (and
# fontconfig finds them there): searched too when the root is the default one.
DEBIAN_TEX_FONTS = Path("/usr/share/texmf/fonts/opentype")
GLYPHS_MISSING = (
    "too few fonts for the glyphs source; install them with "
    "`bash scripts/install_glyph_fonts.sh` (docs/glyphs.md), or set data.root to a folder of "
    ".ttf/.otf files"
)
# TrueType and OpenType only: the Type 1 files of these packages (.pfb, .t1) repeat their
# OpenType faces (fonts-urw-base35 ships both).
FONT_SUFFIXES = (".ttf", ".otf")
# Bump when a change of the code changes the images (it is part of the cache key).
RENDER_VERSION = 1
# Font size (pixels per em) of the drawing every image is resampled from: the box is
# (size - 2 * margin) * supersample = 112 pixels at the defaults, so glyphs are scaled ~1:1.
REFERENCE_EM = 128
# A character no font maps (the last code point, a noncharacter): FreeType draws .notdef for it.
NOTDEF_PROBE = "\U0010ffff"
# Side of the fitted shapes compared for "the same shape as another class in this font".
SIGNATURE_SIDE = 16
MANIFEST = "manifest.json"
IMAGES_CSV = "images.csv"
CSV_COLUMNS = ("split", "index", "class", "codepoint", "font", "sha256", "family", "variant")
SPLITS = ("train", "test")


@dataclass(frozen=True)
class GlyphSettings:
    """Everything that decides the images (all of it is part of the cache key).

    Attributes:
        size: side of the images (pixels).
        margin: pixels between the box the glyph is fitted to and the image border.
        scale: range of the per-image scale of the fitted glyph.
        offset: largest shift of the glyph, pixels, each axis (clipped to stay in the image).
        rotation: largest rotation, degrees, either way.
        stroke: largest change of the stroke width, pixels, either way (a max or min filter).
        supersample: the glyph is drawn at this multiple of ``size`` and box-averaged down.
        train_per_class: training images of every class (CIFAR-100's 500: ``data.n_max``'s
            default through the catalog's ``images_per_class``).
        test_per_class: most test images of a class; fewer when some class has fewer test
            fonts times ``test_variants``.
        test_variants: jittered variants per test font and class at most.
        min_train_families: training families that must draw a class for it to be kept.
        min_test_families: test families that must draw a class for it to be kept.
        min_classes: fewer kept classes is an error (install more fonts).
        test_fraction: share of the families held out for the test split.
        seed: seeds the family split, the round-robin order and every image's jitter.
        duplicate_distance: two classes of one font whose fitted shapes are closer than this
            (:func:`shape_distances`) are one drawing; the later class in the canonical order
            does not use that font.
        illegible_distance, illegible_pairs: a font with this many pairs of classes closer
            than this is not used at all (its letters are told apart by a few pixels only).
        classes: the candidate characters to consider, a subset of the table in canonical
            order; empty: every candidate.
    """

    size: int = 32
    margin: int = 2
    scale: tuple[float, float] = (0.7, 1.0)
    offset: float = 3.0
    rotation: float = 15.0
    stroke: float = 1.0
    supersample: int = 4
    train_per_class: int = 500
    test_per_class: int = 100
    test_variants: int = 4
    min_train_families: int = 20
    min_test_families: int = 4
    min_classes: int = 60
    test_fraction: float = 0.2
    seed: int = 0
    duplicate_distance: float = 0.01
    illegible_distance: float = 0.025
    illegible_pairs: int = 2
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.size < 8 or self.margin < 0 or 2 * self.margin >= self.size:
            raise ValueError(f"size {self.size} with margin {self.margin} leaves no box")
        if not 0 < self.scale[0] <= self.scale[1] <= 1:
            raise ValueError(f"scale must satisfy 0 < lo <= hi <= 1, got {self.scale}")
        if min(self.offset, self.rotation, self.stroke) < 0:
            raise ValueError("offset, rotation and stroke are magnitudes (>= 0)")
        if self.supersample < 1:
            raise ValueError(f"supersample must be positive, got {self.supersample}")
        if min(self.train_per_class, self.test_per_class, self.test_variants) < 1:
            raise ValueError("train_per_class, test_per_class and test_variants must be >= 1")
        if min(self.min_train_families, self.min_test_families, self.min_classes) < 1:
            raise ValueError("min_train_families, min_test_families and min_classes must be >= 1")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"test_fraction must lie in (0, 1), got {self.test_fraction}")
        for char in self.classes:
            candidate(char)  # a ValueError naming the group that dropped it

    @property
    def candidates(self) -> tuple[GlyphClass, ...]:
        """The candidate classes considered, in canonical order."""
        if not self.classes:
            return CANDIDATES
        wanted = set(self.classes)
        return tuple(c for c in CANDIDATES if c.char in wanted)

    def record(self) -> dict[str, Any]:
        """The settings as plain JSON values."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


# --------------------------------------------------------------------------------------------
# Fonts and families
# --------------------------------------------------------------------------------------------


def font_roots(root: Path) -> list[Path]:
    """The folders searched for ``root``: the default root brings Debian's TeX font tree."""
    roots = [root]
    if root == GLYPHS_DEFAULT_ROOT and DEBIAN_TEX_FONTS.is_dir():
        roots.append(DEBIAN_TEX_FONTS)
    return roots


def find_font_files(roots: Iterable[Path]) -> list[Path]:
    """Every ``.ttf``/``.otf`` file under ``roots``, sorted, each real file once (of paths
    that link to one file, the first in sorted order)."""
    paths = sorted(
        Path(dirpath) / name
        for root in roots
        for dirpath, _dirs, files in os.walk(root, followlinks=True)
        for name in files
        if name.lower().endswith(FONT_SUFFIXES)
    )
    found: dict[Path, Path] = {}
    for path in paths:
        found.setdefault(path.resolve(), path)
    return sorted(found.values())


# Words that name a weight, width, slant, optical size or alternate of one design.
_STYLE_WORDS = set(
    """thin hairline extralight ultralight light book regular normal roman medium demi semibold
    demibold bold extrabold ultrabold black heavy italic oblique slanted unslanted upright
    cond condensed semicondensed demicondensed extracondensed narrow cn expanded semiexpanded
    wide extended display text caption std pro o no2 no3 style alt titling script quotation
    prop lt mono math""".split()
)
# Clones of one design in several packages (URW's, TeX Gyre's and GNU FreeFont's copies of the
# PostScript 35; Latin Modern and CMU of Computer Modern; the Liberation 2 fonts are Croscore's
# Arimo/Tinos/Cousine; Noto's script fonts carry Noto Sans's or Noto Serif's Latin): one family
# each, so that no clone of a test typeface is seen in training.
_LINEAGES: tuple[tuple[str, str], ...] = (
    (r"^(nimbus sans|tex gyre heros|freesans)\b", "helvetica"),
    (r"^(nimbus roman|tex gyre termes|freeserif)\b", "times"),
    (r"^(nimbus mono|tex gyre cursor|freemono)\b", "courier"),
    (r"^(p052|tex gyre pagella)\b", "palatino"),
    (r"^(urw bookman|tex gyre bonum)\b", "bookman"),
    (r"^(c059|tex gyre schola)\b", "century schoolbook"),
    (r"^(z003|tex gyre chorus)\b", "zapf chancery"),
    (r"^(urw gothic|tex gyre adventor)\b", "avant garde"),
    (r"^(latin modern|lm|cmu)\b", "computer modern"),
    (r"^(liberation sans|liberation mono|arimo|cousine)\b", "arimo"),
    (r"^(liberation serif|tinos)\b", "tinos"),
    (r"^dejavu serif\b", "dejavu serif"),
    (r"^dejavu\b", "dejavu sans"),
    (r"^noto serif\b", "noto serif"),
    (r"^noto\b", "noto sans"),
    (r"^gentium", "gentium"),
)
# Families whose characters are not the plain letters: key caps, framed initials, small
# capitals in the lower-case slots, dingbats, music.
_DENIED = re.compile(r"keyboard|initials|small ?caps|\bcaps\b|d050000l|dingbat|\bmusic\b")


def family_key(name: str) -> str | None:
    """The design family of a font whose name table gives the family ``name``; None for a
    family whose characters are not plain letters (key caps, small capitals, dingbats).

    Examples: ``"DejaVu Sans Mono"`` -> ``"dejavu sans"``, ``"TeX Gyre Heros Cn"`` ->
    ``"helvetica"``, ``"Bocuma Angle Dent BRK"`` -> ``"bocuma"``.
    """
    lowered = " ".join(name.lower().replace("-", " ").split())
    if _DENIED.search(lowered):
        return None
    for pattern, lineage in _LINEAGES:
        if re.search(pattern, lowered):
            return lineage
    words = lowered.split()
    if words and words[-1] == "brk":
        # fonts-aenigma (Ray Larabie): a design's outline, alternate and weight cuts share
        # its first word (Bocuma Angle, Bocuma Batty; Crackdown O1, Crackdown O2).
        return words[0]
    kept = [w for w in words if w not in _STYLE_WORDS and not w.isdigit()]
    return " ".join(kept or words)


_SHA256: dict[tuple[str, int, int], str] = {}


def file_sha256(path: Path) -> str:
    """sha256 of ``path``'s bytes (remembered per process while its size and mtime hold)."""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA256:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _SHA256[key] = digest.hexdigest()
    return _SHA256[key]


def open_font(path: Path) -> ImageFont.FreeTypeFont:
    """``path`` at the reference size, with the basic layout (one character, no shaping)."""
    return ImageFont.truetype(str(path), REFERENCE_EM, layout_engine=ImageFont.Layout.BASIC)


def glyph_crop(font: ImageFont.FreeTypeFont, char: str) -> Image.Image | None:
    """The drawing of ``char`` in ``font`` at the reference size, cropped to its ink: an
    ``L`` image (white glyph on black); None when it has no ink."""
    left, top, right, bottom = (int(v) for v in font.getbbox(char))
    if right <= left or bottom <= top:
        return None
    canvas = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    ImageDraw.Draw(canvas).text((1 - left, 1 - top), char, font=font, fill=255)
    ink = canvas.getbbox()
    return None if ink is None else canvas.crop(ink)


def shape_signature(crop: Image.Image) -> np.ndarray:
    """The crop fitted to a ``SIGNATURE_SIDE`` square (aspect kept, centred): float32
    ``[SIGNATURE_SIDE, SIGNATURE_SIDE]`` in [0, 1]; two classes with near-equal signatures
    in one font are one shape up to scale."""
    w, h = crop.size
    scale = SIGNATURE_SIDE / max(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    small = crop.resize(size, Image.Resampling.BOX)
    square = Image.new("L", (SIGNATURE_SIDE, SIGNATURE_SIDE), 0)
    square.paste(small, ((SIGNATURE_SIDE - size[0]) // 2, (SIGNATURE_SIDE - size[1]) // 2))
    return np.asarray(square, dtype=np.float32) / 255.0


@dataclass(frozen=True)
class FontScan:
    """What one font file offers.

    Attributes:
        path: the file.
        sha256: its bytes' digest (recorded, and seeds its images' jitter).
        name: family and style from its name table.
        family: its design family (:func:`family_key`); None: not used (denied family).
        drawings: ``{class char: digest of its drawing}`` for every class it truly draws.
    """

    path: Path
    sha256: str
    name: tuple[str, str]
    family: str | None
    drawings: dict[str, str] = field(default_factory=dict)


def shape_distances(signatures: np.ndarray, signature: np.ndarray) -> np.ndarray:
    """Distances of the fitted shape ``signature`` ``[S, S]`` to each of ``signatures``
    ``[K, S, S]``: the ink that differs over the ink of both, ``sum|a - b| / (sum a + sum b)``
    in [0, 1] (0: the same shape up to scale). Relative to the ink, so that hairline and black
    weights are judged alike.

    Returns:
        float64 ``[K]``.
    """
    flat = signatures.reshape(len(signatures), -1).astype(np.float64)
    one = signature.reshape(-1).astype(np.float64)
    differ = np.abs(flat - one).sum(axis=1)
    return differ / np.maximum(flat.sum(axis=1) + one.sum(), 1e-9)


def _illegible(signatures: np.ndarray, settings: GlyphSettings) -> bool:
    """Whether ``illegible_pairs`` pairs of the fitted shapes ``[K, S, S]`` of one font are
    closer than ``illegible_distance``."""
    close = 0
    for k in range(1, len(signatures)):
        close += int(
            (shape_distances(signatures[:k], signatures[k]) < settings.illegible_distance).sum()
        )
        if close >= settings.illegible_pairs:
            return True
    return False


def _true_drawings(font: ImageFont.FreeTypeFont, settings: GlyphSettings) -> dict[str, str]:
    """``{char: digest of its drawing}`` of the classes ``font`` truly draws: with ink, not
    its .notdef, and not an earlier class's shape (closer than
    ``duplicate_distance``: an all-capitals font's ``a`` is its ``A``). Empty when the font is
    illegible at this size (:func:`_illegible`: block and stencil display faces whose letters
    all fill the box alike)."""
    notdef = glyph_crop(font, NOTDEF_PROBE)
    notdef_key = None if notdef is None else (notdef.size, notdef.tobytes())
    drawings: dict[str, str] = {}
    shapes: dict[str, np.ndarray] = {}
    for cls in settings.candidates:
        crop = glyph_crop(font, cls.char)
        if crop is None or (crop.size, crop.tobytes()) == notdef_key:
            continue
        signature = shape_signature(crop)
        earlier = np.stack(list(shapes.values())) if shapes else None
        if earlier is not None and shape_distances(earlier, signature).min() < (
            settings.duplicate_distance
        ):
            continue
        shapes[cls.char] = signature
        digest = hashlib.sha256(repr(crop.size).encode() + crop.tobytes()).hexdigest()
        drawings[cls.char] = digest[:16]
    if len(shapes) > 1 and _illegible(np.stack(list(shapes.values())), settings):
        return {}
    return drawings


def scan_font(path: Path, settings: GlyphSettings) -> FontScan:
    """The classes ``path`` truly draws and its family (None, drawing nothing, for a file
    FreeType cannot open)."""
    try:
        font = open_font(path)
    except OSError as err:
        # Recorded all the same (family None): the cache checks every file under the root.
        log.warning("glyphs: %s is skipped, FreeType cannot open it (%s)", path, err)
        return FontScan(path, file_sha256(path), ("", ""), None)
    name = font.getname()
    family_name, style = (name[0] or path.stem), (name[1] or "")
    family = family_key(family_name)
    drawings = {} if family is None else _true_drawings(font, settings)
    return FontScan(path, file_sha256(path), (family_name, style), family, drawings)


def split_families(families: Iterable[str], fraction: float, seed: int) -> set[str]:
    """The test families: a seeded ``fraction`` of the distinct ``families`` (at least one,
    never all).

    Raises:
        DataFormatError: fewer than two families (nothing to split).
    """
    names = sorted(set(families))
    if len(names) < 2:
        raise DataFormatError(f"{len(names)} typeface families found; {GLYPHS_MISSING}")
    count = min(len(names) - 1, max(1, round(fraction * len(names))))
    order = np.random.default_rng([seed, 0x67]).permutation(len(names))
    return {names[i] for i in order[:count]}


# --------------------------------------------------------------------------------------------
# The plan: which font and variant makes each image
# --------------------------------------------------------------------------------------------


@dataclass
class GlyphPlan:
    """Every image to render, before rendering.

    Attributes:
        classes: the kept classes, canonical order (label = position).
        fonts: every font file found (the cache checks all of them), sorted by path.
        test_families: the families held out for the test split.
        per_class: images per class of each split.
        rows: per split, ``(class index, font index, variant)`` per image, by class then index.
        families: per split, ``{class char: families that draw it}`` (the coverage counts).
    """

    classes: list[GlyphClass]
    fonts: list[FontScan]
    test_families: set[str]
    per_class: dict[str, int]
    rows: dict[str, list[tuple[int, int, int]]]
    families: dict[str, dict[str, int]]


def _distinct_drawings(fonts: Sequence[FontScan]) -> list[tuple[int, str]]:
    """``(font index, char)`` of every drawing of a usable font, each drawing once per family
    (a later file of the family repeating it byte for byte is left out)."""
    seen: set[tuple[str, str, str]] = set()
    found = []
    for index, font in enumerate(fonts):
        if font.family is None:
            continue
        for char, digest in font.drawings.items():
            if (font.family, char, digest) not in seen:
                seen.add((font.family, char, digest))
                found.append((index, char))
    return found


def _usable_fonts(
    fonts: Sequence[FontScan], split_of: dict[str, str]
) -> dict[str, dict[str, list[int]]]:
    """Per split, ``{class char: [font index]}``: the fonts of that split's families that
    draw the class, each drawing once per family."""
    usable: dict[str, dict[str, list[int]]] = {s: {} for s in SPLITS}
    for index, char in _distinct_drawings(fonts):
        split = split_of[str(fonts[index].family)]
        usable[split].setdefault(char, []).append(index)
    return usable


def _round_robin(
    fonts: list[int], count: int, seed: int, char: str, split: str
) -> list[tuple[int, int]]:
    """``count`` ``(font index, variant)`` pairs over ``fonts``: every font once, then every
    font again as variant 1, ...; the order within a round is seeded, so which fonts make the
    last, partial round is too."""
    order = np.random.default_rng([seed, ord(char), SPLITS.index(split)]).permutation(len(fonts))
    return [(fonts[order[i % len(fonts)]], i // len(fonts)) for i in range(count)]


def build_plan(fonts: list[FontScan], settings: GlyphSettings) -> GlyphPlan:
    """Split the families, keep the classes enough families of both splits draw, and assign a
    font and a variant to every image.

    Raises:
        DataFormatError: fewer than two families, or fewer than ``settings.min_classes``
            classes reach the family minimums (the message names the install script).
    """
    families = [f.family for f in fonts if f.family is not None and f.drawings]
    test_families = split_families(families, settings.test_fraction, settings.seed)
    split_of = {name: ("test" if name in test_families else "train") for name in families}
    usable = _usable_fonts(fonts, split_of)
    counts = {
        split: {
            char: len({fonts[i].family for i in indices}) for char, indices in usable[split].items()
        }
        for split in SPLITS
    }
    kept = [
        c
        for c in settings.candidates
        if counts["train"].get(c.char, 0) >= settings.min_train_families
        and counts["test"].get(c.char, 0) >= settings.min_test_families
    ]
    if len(kept) < settings.min_classes:
        raise DataFormatError(
            f"{len(kept)} classes are drawn by at least {settings.min_train_families} training "
            f"and {settings.min_test_families} test typeface families, fewer than "
            f"{settings.min_classes} ({len(set(families))} families in {len(fonts)} font "
            f"files); {GLYPHS_MISSING}"
        )
    test_count = min(
        settings.test_per_class,
        min(len(usable["test"][c.char]) for c in kept) * settings.test_variants,
    )
    per_class = {"train": settings.train_per_class, "test": test_count}
    rows: dict[str, list[tuple[int, int, int]]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        for label, cls in enumerate(kept):
            pairs = _round_robin(
                usable[split][cls.char], per_class[split], settings.seed, cls.char, split
            )
            rows[split] += [(label, font, variant) for font, variant in pairs]
    return GlyphPlan(kept, list(fonts), test_families, per_class, rows, counts)


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Jitter:
    """One image's draw: ``scale`` of the fitted glyph, ``rotation`` (degrees), ``offset``
    (pixels ``(dx, dy)``), ``stroke`` (change of the stroke width, pixels)."""

    scale: float
    rotation: float
    offset: tuple[float, float]
    stroke: float

    @classmethod
    def draw(cls, settings: GlyphSettings, sha256: str, char: str, variant: int) -> Jitter:
        """The jitter of image ``variant`` of ``char`` in the font whose bytes hash to
        ``sha256``: the same for the same file and seed wherever the file lies."""
        rng = np.random.default_rng([settings.seed, int(sha256[:15], 16), ord(char), variant])
        u = rng.random(5)
        low, high = settings.scale
        return cls(
            scale=float(low + (high - low) * u[0]),
            rotation=float(settings.rotation * (2 * u[1] - 1)),
            offset=(
                float(settings.offset * (2 * u[2] - 1)),
                float(settings.offset * (2 * u[3] - 1)),
            ),
            stroke=float(settings.stroke * (2 * u[4] - 1)),
        )


def _affine(
    crop_size: tuple[int, int], jitter: Jitter, settings: GlyphSettings
) -> tuple[float, ...]:
    """Pillow's inverse affine coefficients (output pixel -> crop pixel) that fit the crop's
    box into the image, jittered: scale, rotation, then an offset clipped so that the rotated
    glyph stays inside the image, off its outermost pixel ring."""
    ss = settings.supersample
    side = settings.size * ss
    w, h = crop_size
    half_box = (settings.size / 2 - settings.margin) * ss
    scale = 2 * half_box / max(w, h) * jitter.scale
    angle = math.radians(jitter.rotation)
    cos, sin = abs(math.cos(angle)), abs(math.sin(angle))
    # Half extents of the rotated, scaled glyph box; a rotation that pushes it out of the box
    # shrinks it back in (the glyph is fitted to the box after rotation too).
    half_x, half_y = scale * (cos * w + sin * h) / 2, scale * (sin * w + cos * h) / 2
    shrink = min(1.0, half_box / max(half_x, half_y))
    scale, half_x, half_y = scale * shrink, half_x * shrink, half_y * shrink
    # The offset may use the margin, not the outermost pixel ring, which stays black however
    # far the stroke jitter thickens the glyph.
    keep = ss * (settings.stroke / 2 + 1)
    room_x, room_y = max(0.0, side / 2 - half_x - keep), max(0.0, side / 2 - half_y - keep)
    dx = float(np.clip(jitter.offset[0] * ss, -room_x, room_x))
    dy = float(np.clip(jitter.offset[1] * ss, -room_y, room_y))
    c, s = math.cos(angle) / scale, math.sin(angle) / scale
    cx, cy = side / 2 + dx, side / 2 + dy
    return (c, s, w / 2 - c * cx - s * cy, -s, c, h / 2 + s * cx - c * cy)


def _stroke(image: Image.Image, change: float, supersample: int) -> Image.Image:
    """Thicken (``change`` > 0, a max filter) or thin (a min filter) the white strokes so that
    their width changes by about ``change`` output pixels (each edge moves half of it). A thin
    that would leave less than half of the ink is made smaller (hairline fonts)."""
    radius = round(abs(change) * supersample / 2)
    if radius == 0:
        return image
    if change > 0:
        return image.filter(ImageFilter.MaxFilter(2 * radius + 1))
    ink = np.asarray(image, dtype=np.int64).sum()
    for r in range(radius, 0, -1):
        thinned = image.filter(ImageFilter.MinFilter(2 * r + 1))
        if 2 * np.asarray(thinned, dtype=np.int64).sum() >= ink:
            return thinned
    return image


def render_glyph(crop: Image.Image, jitter: Jitter, settings: GlyphSettings) -> np.ndarray:
    """One image: the crop fitted to the box, jittered, drawn at ``supersample`` times the
    size and box-averaged down (antialiasing).

    Returns:
        uint8 ``[size, size]``, white glyph on black.
    """
    side = settings.size * settings.supersample
    coefficients = _affine(crop.size, jitter, settings)
    big = crop.transform(
        (side, side), Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR, fill=0
    )
    big = _stroke(big, jitter.stroke, settings.supersample)
    return np.asarray(big.reduce(settings.supersample), dtype=np.uint8)


def _progress(total: int) -> Any:
    """A tqdm bar on a terminal, else a silent one."""
    from tqdm import tqdm

    return tqdm(total=total, desc="rendering glyphs", unit="img", disable=not sys.stderr.isatty())


def render_plan(plan: GlyphPlan, settings: GlyphSettings) -> dict[str, np.ndarray]:
    """Render every image of the plan, one font file open at a time.

    Returns:
        per split, uint8 ``[N, 1, size, size]`` in the plan's row order.
    """
    out = {
        split: np.zeros((len(rows), 1, settings.size, settings.size), dtype=np.uint8)
        for split, rows in plan.rows.items()
    }
    by_font: dict[int, list[tuple[str, int, int, int]]] = {}
    for split, rows in plan.rows.items():
        for row, (label, font_index, variant) in enumerate(rows):
            by_font.setdefault(font_index, []).append((split, row, label, variant))
    with _progress(sum(len(r) for r in plan.rows.values())) as bar:
        for font_index in sorted(by_font):
            scan = plan.fonts[font_index]
            font = open_font(scan.path)
            crops: dict[int, Image.Image] = {}
            for split, row, label, variant in by_font[font_index]:
                char = plan.classes[label].char
                if label not in crops:
                    crop = glyph_crop(font, char)
                    assert crop is not None, f"{scan.path} drew {char!r} when it was scanned"
                    crops[label] = crop
                jitter = Jitter.draw(settings, scan.sha256, char, variant)
                out[split][row, 0] = render_glyph(crops[label], jitter, settings)
            bar.update(len(by_font[font_index]))
    return out


def pixel_stats(images: np.ndarray) -> tuple[tuple[float], tuple[float]]:
    """``((mean,), (std,))`` of uint8 ``[N, 1, H, W]`` pixels scaled to [0, 1]: the source's
    normalisation, measured on its training split."""
    pixels = images.astype(np.float64) / 255.0
    return (round(float(pixels.mean()), 4),), (round(float(pixels.std()), 4),)


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------


def default_cache_root() -> Path:
    """``$XDG_CACHE_HOME/geoharmony/glyphs``, else ``~/.cache/geoharmony/glyphs``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "geoharmony" / "glyphs"


def cache_key(roots: Sequence[Path], settings: GlyphSettings) -> str:
    """16 hex digits of the sha256 of what the images depend on besides the fonts' bytes: the
    settings, the class table, the code's render version and the font folders. The font files
    themselves are checked at every load instead (see :func:`check_fonts`), so that a changed or
    missing file is an error rather than a silent new data set."""
    identity = {
        "render_version": RENDER_VERSION,
        "settings": settings.record(),
        "candidates": "".join(c.char for c in settings.candidates),
        "roots": [str(r) for r in roots],
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def cache_folder(root: Path, settings: GlyphSettings, cache_dir: str | Path | None = None) -> Path:
    """Where the images of fonts under ``root`` rendered with ``settings`` are kept."""
    parent = default_cache_root() if cache_dir is None else Path(cache_dir)
    return parent / cache_key(font_roots(root), settings)


def _manifest(plan: GlyphPlan, settings: GlyphSettings, roots: Sequence[Path]) -> dict[str, Any]:
    return {
        "format": 1,
        "render_version": RENDER_VERSION,
        "settings": settings.record(),
        "roots": [str(r) for r in roots],
        "classes": [
            {"name": c.char, "codepoint": c.codepoint, "script": c.script} for c in plan.classes
        ],
        "per_class": plan.per_class,
        "families": {
            split: {c.char: plan.families[split].get(c.char, 0) for c in plan.classes}
            for split in SPLITS
        },
        "test_families": sorted(plan.test_families),
        "fonts": [
            {
                "path": str(f.path),
                "sha256": f.sha256,
                "name": list(f.name),
                "family": f.family,
                "split": None if f.family is None else _split_name(f.family, plan),
            }
            for f in plan.fonts
        ],
    }


def _split_name(family: str, plan: GlyphPlan) -> str:
    return "test" if family in plan.test_families else "train"


def _write_csv(path: Path, plan: GlyphPlan) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for split, rows in plan.rows.items():
            for index, (label, font_index, variant) in enumerate(rows):
                cls, font = plan.classes[label], plan.fonts[font_index]
                row = [split, index, cls.char, cls.codepoint, font.path, font.sha256]
                writer.writerow([*row, font.family, variant])


def write_cache(
    folder: Path,
    plan: GlyphPlan,
    images: dict[str, np.ndarray],
    settings: GlyphSettings,
    roots: Sequence[Path],
) -> None:
    """Write the images and their manifest into ``folder`` atomically: into a temporary folder
    beside it, renamed at the end (a process that renders the same folder at the same time
    keeps whichever rename came first)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    temporary.chmod(0o755)  # mkdtemp's 0700 would hide a shared cache from other users
    try:
        for split, array in images.items():
            np.save(temporary / f"{split}.npy", array)
        _write_csv(temporary / IMAGES_CSV, plan)
        manifest = _manifest(plan, settings, roots)
        manifest["stats"] = pixel_stats(images["train"])
        write_json(temporary / MANIFEST, manifest)
        try:
            temporary.rename(folder)
        except OSError:
            if not (folder / MANIFEST).is_file():
                raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def _bad(path: Path, problem: str, folder: Path) -> DataFormatError:
    return DataFormatError(
        f"{path}: {problem}; delete {folder} to render the glyphs again from the fonts installed"
    )


def _read_manifest(folder: Path, settings: GlyphSettings) -> dict[str, Any]:
    """The folder's manifest, checked for its keys and its settings."""
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _bad(path, f"unreadable glyph manifest ({err})", folder) from err
    needed = {"format", "settings", "classes", "per_class", "fonts"}
    if not isinstance(manifest, dict) or not needed <= set(manifest):
        raise _bad(path, f"not a glyph manifest (needs the keys {sorted(needed)})", folder)
    if manifest["format"] != 1 or manifest.get("render_version") != RENDER_VERSION:
        raise _bad(path, "made by another version of the glyph renderer", folder)
    if manifest["settings"] != settings.record():
        raise _bad(path, "made with other glyph settings than the ones asked for", folder)
    return manifest


def check_fonts(folder: Path, manifest: dict[str, Any], roots: Sequence[Path]) -> None:
    """The font files on disk are the ones the images were rendered from.

    Raises:
        DataFormatError: a recorded font file is missing or has other bytes, or a font file is
            there that was not (each names the file and what to do).
    """
    recorded = {}
    for entry in manifest["fonts"]:
        try:
            recorded[Path(entry["path"])] = str(entry["sha256"])
        except (TypeError, KeyError) as err:
            raise _bad(folder / MANIFEST, f"bad font entry {entry!r}", folder) from err
    reinstall = "reinstall its package (bash scripts/install_glyph_fonts.sh)"
    for path, sha in recorded.items():
        if not path.is_file():
            raise DataFormatError(
                f"{path}: font file missing, the glyphs in {folder} were rendered from it; "
                f"{reinstall}, or delete {folder} to render again from the fonts installed"
            )
        if file_sha256(path) != sha:
            raise DataFormatError(
                f"{path}: font file changed since the glyphs in {folder} were rendered from it "
                f"(sha256 {file_sha256(path)[:12]}... against {sha[:12]}...); delete {folder} "
                "to render again from the fonts installed"
            )
    new = [p for p in find_font_files(roots) if p not in recorded]
    if new:
        raise DataFormatError(
            f"{new[0]}: font file not among the {len(recorded)} the glyphs in {folder} were "
            f"rendered from ({len(new)} new); delete {folder} to render again with it"
        )


def _read_rows(folder: Path, manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per split, the int64 labels of the CSV's rows, checked against the manifest."""
    path = folder / IMAGES_CSV
    index = {c["name"]: i for i, c in enumerate(manifest["classes"])}
    labels: dict[str, list[int]] = {s: [] for s in SPLITS}
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            if tuple(next(reader, ())) != CSV_COLUMNS:
                raise _bad(path, f"the header is not {','.join(CSV_COLUMNS)}", folder)
            for line, row in enumerate(reader, start=2):
                if len(row) != len(CSV_COLUMNS) or row[0] not in labels or row[2] not in index:
                    raise _bad(path, f"line {line} is not a glyph row: {row[:4]}", folder)
                if int(row[1]) != len(labels[row[0]]) or len(row[5]) != 64:
                    raise _bad(path, f"line {line}: index or sha256 out of place", folder)
                labels[row[0]].append(index[row[2]])
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as err:
        if isinstance(err, DataFormatError):
            raise
        raise _bad(path, f"unreadable glyph list ({err})", folder) from err
    return {s: np.asarray(v, dtype=np.int64) for s, v in labels.items()}


def _read_images(folder: Path, split: str, count: int, size: int) -> np.ndarray:
    path = folder / f"{split}.npy"
    try:
        images = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise _bad(path, f"unreadable glyph images ({err})", folder) from err
    if images.dtype != np.uint8 or images.shape != (count, 1, size, size):
        raise _bad(
            path,
            f"{images.dtype} {images.shape}, the manifest lists uint8 ({count}, 1, {size}, {size})",
            folder,
        )
    return images


def read_cache(
    folder: Path, settings: GlyphSettings, roots: Sequence[Path], split: str
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """One split of a cache folder, checked: images uint8 ``[N, 1, size, size]``, labels int64
    ``[N]`` and the class names.

    Raises:
        DataFormatError: a missing, corrupt or inconsistent manifest, list or array, or font
            files that are not the ones rendered (each names the file).
    """
    manifest = _read_manifest(folder, settings)
    check_fonts(folder, manifest, roots)
    labels = _read_rows(folder, manifest)[split]
    names = [str(c["name"]) for c in manifest["classes"]]
    per_class = int(manifest["per_class"][split])
    counts = np.bincount(labels, minlength=len(names))
    if counts.size != len(names) or (counts != per_class).any():
        raise _bad(folder / IMAGES_CSV, f"{split} rows are not {per_class} per class", folder)
    return _read_images(folder, split, len(labels), settings.size), labels, names


# --------------------------------------------------------------------------------------------
# The loader
# --------------------------------------------------------------------------------------------


def scan_fonts(roots: Sequence[Path], settings: GlyphSettings) -> list[FontScan]:
    """Every font file under ``roots``, scanned.

    Raises:
        DataFormatError: no font file at all (names the install script).
    """
    paths = find_font_files(roots)
    if not paths:
        where = ", ".join(str(r) for r in roots)
        raise DataFormatError(f"{where}: no .ttf/.otf font files; {GLYPHS_MISSING}")
    log.info("glyphs: scanning %d font files under %s", len(paths), roots[0])
    return [scan_font(path, settings) for path in paths]


def ensure_rendered(root: Path, settings: GlyphSettings, cache_dir: str | Path | None) -> Path:
    """The cache folder of ``root`` and ``settings``, rendered first if it does not exist."""
    folder = cache_folder(root, settings, cache_dir)
    if (folder / MANIFEST).is_file():
        return folder
    roots = font_roots(root)
    plan = build_plan(scan_fonts(roots, settings), settings)
    total = sum(len(r) for r in plan.rows.values())
    log.info("glyphs: rendering %d images of %d classes into %s", total, len(plan.classes), folder)
    write_cache(folder, plan, render_plan(plan, settings), settings, roots)
    return folder


def load_glyphs(
    root: str | Path | None,
    train: bool,
    *,
    settings: GlyphSettings | None = None,
    cache_dir: str | Path | None = None,
) -> ImageArray:
    """The training or test split of the glyphs source, rendered on first use, then read from
    its cache folder.

    Args:
        root: folder of font files (searched recursively); None: ``/usr/share/fonts`` (plus
            Debian's TeX font tree).
        train: the training split (``train_per_class`` images per class), else the balanced
            test split of the held-out families.
        settings: what to render (default :class:`GlyphSettings`: 32x32, 500 per class).
        cache_dir: the folder the cache folders live in (default ``~/.cache/geoharmony/glyphs``
            or ``$XDG_CACHE_HOME/geoharmony/glyphs``); the images go to ``<cache_dir>/<key>``.

    Returns:
        ImageArray with images uint8 ``[N, 1, size, size]`` (white glyphs on black), labels in
        the canonical class order, and the class names (the characters).

    Raises:
        DataFormatError: too few fonts (names scripts/install_glyph_fonts.sh), or a cache
            folder whose files or fonts do not check out (names the file).
    """
    root = GLYPHS_DEFAULT_ROOT if root is None else Path(root)
    if not root.is_dir():
        raise DataFormatError(f"{root}: no such folder of fonts; {GLYPHS_MISSING}")
    settings = settings or GlyphSettings()
    folder = ensure_rendered(root, settings, cache_dir)
    split = "train" if train else "test"
    images, labels, names = read_cache(folder, settings, font_roots(root), split)
    return ImageArray(
        images=torch.from_numpy(images),
        labels=torch.from_numpy(labels),
        class_names=names,
        source=f"glyphs:{root}:{folder.name}:{split}",
    )
