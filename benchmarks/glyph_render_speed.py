"""Speed of the glyphs source (docs/glyphs.md): a cold load (scan every font file, render both
splits, write the cache) in images per second, then a warm load (read the cache and check it
against the font files: sha256 of each) in seconds.

The default run is small: the two font packages scripts/setup.sh installs (fonts-dejavu-core,
fonts-liberation2, linked into a temporary folder: 18 files, 4 families), the first 20 candidate
classes, 50 training images per class, a temporary cache. ``--root /usr/share/fonts`` with
``--per-class 500 --classes 0`` times the full data set (minutes). The load average is recorded:
on a busy machine the rates are lower.

    python benchmarks/glyph_render_speed.py [--root DIR] [--classes 20] [--per-class 50]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import record
from geoharmony.data import glyphs
from geoharmony.data.glyph_classes import CANDIDATES
from geoharmony.data.glyphs import GlyphSettings, load_glyphs

SMALL_PACKAGES = (
    Path("/usr/share/fonts/truetype/dejavu"),
    Path("/usr/share/fonts/truetype/liberation2"),
)
CORE_DEJAVU = ("Sans", "Sans-Bold", "SansMono", "SansMono-Bold", "Serif", "Serif-Bold")


def small_font_root(folder: Path) -> Path:
    """A folder of links to fonts-dejavu-core's and fonts-liberation2's files."""
    root = folder / "fonts"
    root.mkdir()
    dejavu, liberation = SMALL_PACKAGES
    files = [dejavu / f"DejaVu{face}.ttf" for face in CORE_DEJAVU]
    files += sorted(liberation.glob("Liberation*.ttf"))
    for path in files:
        if not path.is_file():
            raise SystemExit(
                f"{path} missing: run scripts/setup.sh (fonts-dejavu-core, -liberation2)"
            )
        (root / path.name).symlink_to(path)
    return root


def settings_for(classes: int, per_class: int, small: bool) -> GlyphSettings:
    """The default settings, with ``classes`` candidates (0: all) and ``per_class`` training
    images; the small font set needs smaller family minimums (it has four families)."""
    chosen = tuple(c.char for c in CANDIDATES[:classes]) if classes else ()
    if not small:
        return GlyphSettings(classes=chosen, train_per_class=per_class)
    return GlyphSettings(
        classes=chosen,
        train_per_class=per_class,
        test_per_class=max(1, per_class // 5),
        min_train_families=2,
        min_test_families=1,
        min_classes=1,
        test_fraction=0.25,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="font folder (default: the two small packages' files)")
    parser.add_argument("--classes", type=int, default=20, help="first N candidates (0: all)")
    parser.add_argument("--per-class", type=int, default=50, help="training images per class")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        root = Path(args.root) if args.root else small_font_root(folder)
        settings = settings_for(args.classes, args.per_class, small=args.root is None)
        cache = folder / "cache"

        started = time.perf_counter()
        scans = glyphs.scan_fonts(glyphs.font_roots(root), settings)
        scan_s = time.perf_counter() - started
        started = time.perf_counter()
        train = load_glyphs(root, True, settings=settings, cache_dir=cache)
        cold_s = time.perf_counter() - started  # scans again, renders, writes the cache
        test = load_glyphs(root, False, settings=settings, cache_dir=cache)
        images = len(train) + len(test)

        glyphs._SHA256.clear()  # a new process: every font file is hashed again
        started = time.perf_counter()
        load_glyphs(root, True, settings=settings, cache_dir=cache)
        warm_s = time.perf_counter() - started
    result = {
        "root": str(root) if args.root else "fonts-dejavu-core + fonts-liberation2 (18 files)",
        "font_files": len(scans),
        "classes": train.num_classes,
        "train_images": len(train),
        "test_images": len(test),
        "scan_seconds": round(scan_s, 3),
        "cold_load_seconds": round(cold_s, 3),
        "render_images_per_s": round(images / max(cold_s - scan_s, 1e-9), 1),
        "cold_images_per_s": round(images / cold_s, 1),
        "cache_load_seconds": round(warm_s, 3),
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    for key, value in result.items():
        print(f"{key}: {value}")
    print(f"wrote {record('glyph_render_speed', result)}")


if __name__ == "__main__":
    main()
