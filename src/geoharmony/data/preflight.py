"""The preflight: every image file opened and decoded once, before the first training step.

A truncated, empty or foreign file that a data-loader worker meets hours into a run costs the
whole run; found here it costs seconds. Files are decoded in parallel worker processes, and
each verdict is cached by path, size and modification time, so a resumed run (and ``evaluate``
or ``finetune`` of its checkpoints) decodes only the files that changed.

The cache is a file in the run folder (:data:`PREFLIGHT_CACHE`): the run folder is always
writable, while an image folder may be read-only or shared by other users and runs, and the
preflight should not write into a user's data. The price: a new run on the same images
decodes them again.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from geoharmony.data.jsonfile import write_json
from geoharmony.data.splits import DataFormatError, FileList

__all__ = [
    "PREFLIGHT_CACHE",
    "ImageCheck",
    "PreflightStats",
    "check_images",
    "decode_image",
    "preflight",
    "write_bad_files",
]

log = logging.getLogger(__name__)

# File name of the cache in the run folder.
PREFLIGHT_CACHE = "preflight_cache.json"
_CACHE_VERSION = 1
_MAX_CHUNK = 64  # files per task sent to a worker process
_SAVE_EVERY_S = 30.0  # a killed preflight loses at most this much decoding


@dataclass(frozen=True)
class ImageCheck:
    """What decoding one file found: its size and mode, or why it cannot be read."""

    width: int = 0
    height: int = 0
    mode: str = ""
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class PreflightStats:
    """How a preflight went: files checked, decoded now, taken from the cache, unreadable."""

    files: int = 0
    decoded: int = 0
    cached: int = 0
    bad: int = 0
    seconds: float = 0.0


def decode_image(path: str) -> ImageCheck:
    """Open and fully decode one image file."""
    try:
        with Image.open(path) as image:
            image.load()
            return ImageCheck(image.width, image.height, image.mode)
    except UnidentifiedImageError:
        return ImageCheck(error="not an image format PIL can read")
    except Exception as err:
        # Whatever a decoder raises (OSError for truncated data, SyntaxError, ValueError,
        # struct.error, DecompressionBombError, ...) marks the file bad, never the run.
        return ImageCheck(error=f"cannot decode ({type(err).__name__}: {err})")


def _decode_chunk(task: tuple[int, list[str]]) -> tuple[int, list[ImageCheck]]:
    start, paths = task
    return start, [decode_image(path) for path in paths]


def _decoded(paths: list[str], workers: int) -> Iterator[tuple[int, list[ImageCheck]]]:
    """``(position of the first, checks)`` of consecutive chunks of ``paths``, in any order."""
    chunk = max(1, min(_MAX_CHUNK, -(-len(paths) // (4 * max(workers, 1)))))
    tasks = [(s, paths[s : s + chunk]) for s in range(0, len(paths), chunk)]
    if workers <= 0 or len(tasks) <= 1:
        yield from map(_decode_chunk, tasks)
        return
    with multiprocessing.get_context().Pool(min(workers, len(tasks))) as pool:
        yield from pool.imap_unordered(_decode_chunk, tasks)


class _Cache:
    """Verdicts by absolute path, valid while the file keeps its size and mtime."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.entries: dict[str, list[Any]] = {}
        if path is not None and path.is_file():
            try:
                stored = json.loads(path.read_text())
            except (OSError, json.JSONDecodeError) as err:
                log.warning("%s: unreadable preflight cache, checking every file (%s)", path, err)
                return
            if stored.get("version") == _CACHE_VERSION:
                self.entries = stored.get("files", {})

    def get(self, key: str, stat: os.stat_result) -> ImageCheck | None:
        entry = self.entries.get(key)
        if entry is None or entry[:2] != [stat.st_size, stat.st_mtime_ns]:
            return None
        return ImageCheck(*entry[2:])

    def put(self, key: str, stat: os.stat_result, check: ImageCheck) -> None:
        self.entries[key] = [stat.st_size, stat.st_mtime_ns, check.width, check.height]
        self.entries[key] += [check.mode, check.error]

    def save(self) -> None:
        if self.path is not None:
            write_json(self.path, {"version": _CACHE_VERSION, "files": self.entries}, indent=None)


def check_images(
    paths: Sequence[Path],
    cache: Path | None = None,
    workers: int = 0,
    progress: bool = False,
) -> tuple[list[ImageCheck], PreflightStats]:
    """Decode every file of ``paths`` once (``workers`` processes; 0: in this one), taking
    unchanged files' verdicts from the ``cache`` file and writing new ones back to it.

    Returns:
        One :class:`ImageCheck` per path, in order, and the statistics.
    """
    started = time.perf_counter()
    store = _Cache(cache)
    checks: list[ImageCheck | None] = [None] * len(paths)
    stats: list[os.stat_result | None] = [None] * len(paths)
    todo: list[int] = []
    for i, path in enumerate(paths):
        try:
            stat = os.stat(path)
        except OSError as err:
            checks[i] = ImageCheck(error=f"cannot open ({err.strerror})")
            continue
        stats[i] = stat
        checks[i] = store.get(str(path), stat)
        if checks[i] is None:
            todo.append(i)
    bar = tqdm(
        total=len(todo),
        desc="checking image files",
        unit="file",
        disable=None if progress else True,  # None: drawn on a terminal only
        dynamic_ncols=True,
    )
    saved = time.perf_counter()
    with bar:
        for start, found in _decoded([str(paths[i]) for i in todo], workers):
            for i, check in zip(todo[start : start + len(found)], found, strict=True):
                found_stat = stats[i]
                assert found_stat is not None
                if not check.ok and found_stat.st_size == 0:
                    check = ImageCheck(error="empty file (0 bytes)")
                checks[i] = check
                store.put(str(paths[i]), found_stat, check)
            bar.update(len(found))
            if time.perf_counter() - saved > _SAVE_EVERY_S:
                store.save()
                saved = time.perf_counter()
    if todo:
        store.save()
    done = [c for c in checks if c is not None]
    assert len(done) == len(paths)
    summary = PreflightStats(
        files=len(paths),
        decoded=len(todo),
        cached=len(paths) - len(todo) - sum(s is None for s in stats),
        bad=sum(not c.ok for c in done),
        seconds=time.perf_counter() - started,
    )
    return done, summary


def preflight(
    splits: Sequence[FileList],
    skip_bad_files: bool,
    cache: Path | None = None,
    workers: int = 0,
    progress: bool = False,
    skip_hint: str = "set data.skip_bad_files=true to leave them out (listed in RUN/bad_files.txt)",
) -> tuple[list[FileList], list[dict[str, str]]]:
    """Check every file of ``splits``; return them without the unreadable files, and those
    files (``{"path", "error"}``). ``skip_hint`` names the caller's setting that skips them.

    Raises:
        DataFormatError: unreadable files and not ``skip_bad_files``; the message lists them all.
    """
    paths = [split.root / rel for split in splits for rel in split.paths]
    checks, stats = check_images(paths, cache, workers, progress)
    log.info(
        "checked %d image files in %.1f s (%d decoded, %d from the cache %s): %d unreadable",
        stats.files,
        stats.seconds,
        stats.decoded,
        stats.cached,
        cache,
        stats.bad,
    )
    bad = [
        {"path": str(path), "error": str(check.error)}
        for path, check in zip(paths, checks, strict=True)
        if not check.ok
    ]
    if bad and not skip_bad_files:
        listed = "\n".join(f"  {b['path']}: {b['error']}" for b in bad)
        raise DataFormatError(
            f"{len(bad)} of {len(paths)} image files cannot be read; fix or remove them, or "
            f"{skip_hint}:\n{listed}"
        )
    kept: list[FileList] = []
    offset = 0
    for split in splits:
        ok = np.flatnonzero([c.ok for c in checks[offset : offset + len(split)]])
        kept.append(split if ok.size == len(split) else split.subset(ok))
        offset += len(split)
    return kept, bad


def write_bad_files(path: Path, bad: Sequence[dict[str, str]]) -> None:
    """``path`` lists the unreadable files left out of a run: ``path<TAB>reason`` a line."""
    path.write_text("".join(f"{b['path']}\t{b['error']}\n" for b in bad))
