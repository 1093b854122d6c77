"""The preflight finds every unreadable file, skips exactly those, and caches its verdicts; the
class-stratified hold-out of a labelled source without a test split."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from geoharmony.data.longtail import stratified_holdout
from geoharmony.data.preflight import check_images, preflight
from geoharmony.data.sources import load_image_folder
from geoharmony.data.splits import DataFormatError
from image_files import BROKEN, count_decodes, write_broken, write_class_folders


@pytest.mark.parametrize("workers", [0, 2])
def test_preflight_finds_every_bad_file(tmp_path: Path, workers: int) -> None:
    write_class_folders(tmp_path, {"a": 7, "b": 5})
    bad = write_broken(tmp_path / "a", ("truncated_png", "empty_jpeg", "text_jpeg"))
    bad += write_broken(tmp_path / "b", ("truncated_jpeg", "garbage_png"))
    files = load_image_folder(tmp_path)
    checks, stats = check_images([files.root / p for p in files.paths], workers=workers)
    found = {files.root / p for p, c in zip(files.paths, checks, strict=True) if not c.ok}
    assert found == set(bad) and stats.bad == len(bad) == len(BROKEN)
    assert all((c.width, c.height, c.mode) == (20, 20, "RGB") for c in checks if c.ok)
    by_name = {files.root / p: c.error for p, c in zip(files.paths, checks, strict=True)}
    assert by_name[tmp_path / "a" / "empty.jpg"] == "empty file (0 bytes)"
    assert "truncated" in str(by_name[tmp_path / "b" / "cut.jpg"]).lower()

    with pytest.raises(DataFormatError, match=r"5 of 17 image files cannot be read") as err:
        preflight([files], skip_bad_files=False, workers=workers)
    assert all(str(path) in str(err.value) for path in bad)  # the full list

    (kept,), skipped = preflight([files], skip_bad_files=True, workers=workers)
    assert {s["path"] for s in skipped} == {str(p) for p in bad}
    assert len(kept) == 12 and not {kept.root / p for p in kept.paths} & set(bad)
    assert kept.labels_of().tolist() == [0] * 7 + [1] * 5  # labels follow their files


def test_preflight_cache_decodes_only_changed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_class_folders(tmp_path / "images", {"a": 4, "b": 4})
    files = load_image_folder(tmp_path / "images")
    paths = [files.root / p for p in files.paths]
    decoded = count_decodes(monkeypatch)
    cache = tmp_path / "run" / "preflight_cache.json"
    first, stats = check_images(paths, cache)
    assert (len(decoded), stats.decoded, stats.cached) == (8, 8, 0) and cache.is_file()
    decoded.clear()
    again, stats = check_images(paths, cache)
    assert (decoded, stats.cached) == ([], 8) and again == first
    # A file that changes (size or mtime) is decoded again, and only that one.
    paths[3].write_bytes(b"")
    stamp = paths[5].stat()
    os.utime(paths[5], ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 10**9))
    changed, stats = check_images(paths, cache)
    assert sorted(decoded) == sorted([str(paths[3]), str(paths[5])]) and stats.decoded == 2
    assert not changed[3].ok and changed[5] == first[5]


def test_preflight_reports_missing_files(tmp_path: Path) -> None:
    checks, stats = check_images([tmp_path / "gone.png"])
    assert not checks[0].ok and "cannot open" in str(checks[0].error) and stats.bad == 1


def test_stratified_holdout() -> None:
    labels = np.repeat(np.arange(4), [60, 21, 2, 1])
    kept, held = stratified_holdout(labels, 0.2, seed=3)
    assert not set(kept) & set(held) and len(kept) + len(held) == labels.size
    assert np.bincount(labels[held], minlength=4).tolist() == [12, 4, 1, 0]
    again = stratified_holdout(labels, 0.2, seed=3)
    assert np.array_equal(again[1], held)
    assert not np.array_equal(stratified_holdout(labels, 0.2, seed=4)[1], held)
    with pytest.raises(ValueError, match=r"fraction must lie in \(0, 1\)"):
        stratified_holdout(labels, 1.0, seed=0)
