"""Shared by tests (importable: pytest puts tests/ on sys.path): image folders made on the spot,
with the kinds of broken files a scraped folder holds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import geoharmony.data.preflight as preflight_module

# Each way a file can be broken, and the file name it gets.
BROKEN = {
    "truncated_png": "cut.png",
    "truncated_jpeg": "cut.jpg",
    "empty_jpeg": "empty.jpg",
    "garbage_png": "garbage.png",
    "text_jpeg": "notes.jpg",
}


def write_images(folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (20, 20)) -> None:
    """``count`` random RGB images in ``folder``, PNG and JPEG in turn (``i.png``/``i.jpg``)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        pixels = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i}.{'png' if i % 2 == 0 else 'jpg'}")


def write_class_folders(root: Path, counts: dict[str, int], seed: int = 0) -> None:
    """``root/<class>/<i>.png|jpg`` with ``counts[class]`` images each."""
    for offset, (name, count) in enumerate(counts.items()):
        write_images(root / name, count, seed + offset)


def write_broken(folder: Path, kinds: tuple[str, ...] = tuple(BROKEN)) -> list[Path]:
    """One broken file of each of ``kinds`` (keys of :data:`BROKEN`) in ``folder``; their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(99)
    pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    written = []
    for kind in kinds:
        path = folder / BROKEN[kind]
        if kind.startswith("truncated"):
            Image.fromarray(pixels).save(path)
            path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        elif kind == "empty_jpeg":
            path.write_bytes(b"")
        elif kind == "garbage_png":
            path.write_bytes(bytes(rng.integers(0, 256, 300, dtype=np.uint8)))
        else:
            path.write_text("not an image\n")
        written.append(path)
    return written


def count_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The list that every later decode by the preflight (in this process) appends its path to."""
    decoded: list[str] = []
    real = preflight_module.decode_image

    def counting(path: str) -> preflight_module.ImageCheck:
        decoded.append(path)
        return real(path)

    monkeypatch.setattr(preflight_module, "decode_image", counting)
    return decoded
