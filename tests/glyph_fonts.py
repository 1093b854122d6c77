"""Shared by the glyph tests (importable: pytest puts tests/ on sys.path): the two small font
packages they render from, the skip marker for machines without them, and a font folder."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

DEJAVU = Path("/usr/share/fonts/truetype/dejavu")
LIBERATION = Path("/usr/share/fonts/truetype/liberation2")
# fonts-dejavu-core's six files and fonts-liberation2's twelve: families "dejavu sans" (Sans,
# Sans Mono), "dejavu serif", "arimo" (Liberation Sans and Mono), "tinos" (Liberation Serif).
SMALL_FONTS = [
    DEJAVU / f"DejaVu{face}.ttf"
    for face in ("Sans", "Sans-Bold", "SansMono", "SansMono-Bold", "Serif", "Serif-Bold")
] + [
    LIBERATION / f"Liberation{face}-{style}.ttf"
    for face in ("Sans", "Serif", "Mono")
    for style in ("Regular", "Bold", "Italic", "BoldItalic")
]

needs_small_fonts = pytest.mark.skipif(
    not all(p.is_file() for p in SMALL_FONTS),
    reason="Debian packages fonts-dejavu-core and fonts-liberation2 are not installed "
    "(scripts/setup.sh installs them)",
)


def font_folder(root: Path, fonts: Iterable[Path] = SMALL_FONTS) -> Path:
    """``root``, made and filled with links to ``fonts``."""
    root.mkdir()
    for path in fonts:
        (root / path.name).symlink_to(path)
    return root
