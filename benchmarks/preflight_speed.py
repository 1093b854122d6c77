"""Files per second of the preflight, which opens and decodes every image file once before the
first training step: generated files (PNG and JPEG in turn, random RGB pixels) in a temporary
folder, decoded with no cache by each number of worker processes asked for, then once more with
the cache warm (a resumed run: one ``stat`` per file, no decode). The files were just written,
so they are read from the page cache: this times decoding, not the disk. The load average
before and after is recorded: on cores that other processes keep busy, workers gain little.

    python benchmarks/preflight_speed.py [--files 10000] [--size 64] [--workers 0,1,2]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from _common import record
from geoharmony.data.preflight import check_images


def write_files(folder: Path, count: int, size: int) -> list[Path]:
    """``count`` ``size`` x ``size`` random RGB images, PNG and JPEG in turn."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"{i // 1000:03d}" / f"{i}.{'png' if i % 2 == 0 else 'jpg'}"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def timed(paths: list[Path], cache: Path | None, workers: int) -> dict[str, float]:
    started = time.perf_counter()
    checks, stats = check_images(paths, cache, workers)
    seconds = time.perf_counter() - started
    assert all(c.ok for c in checks), "a generated file did not decode"
    return {
        "seconds": seconds,
        "files_per_s": len(paths) / seconds,
        "decoded": stats.decoded,
        "from_cache": stats.cached,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64, help="image side in pixels")
    parser.add_argument("--workers", default="0,1,2", help="worker processes to time, e.g. 0,2")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    load_before = os.getloadavg()[0]  # other processes on the cores change what workers gain
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "images"
        folder.mkdir()
        paths = write_files(folder, args.files, args.size)
        megabytes = sum(p.stat().st_size for p in paths) / 1e6
        cold = {str(w): timed(paths, None, w) for w in workers}
        cache = Path(tmp) / "run" / "preflight_cache.json"
        timed(paths, cache, max(workers))  # fills the cache
        warm = timed(paths, cache, max(workers))
    for w, result in cold.items():
        print(f"{args.files} files, {w} worker processes: {result['files_per_s']:.0f} files/s")
    print(f"cache warm (a resumed run): {warm['files_per_s']:.0f} files/s")
    path = record(
        f"preflight_speed_{args.size}px",
        {
            "files": args.files,
            "image_side": args.size,
            "megabytes": megabytes,
            "cold_by_workers": cold,
            "cache_warm": warm,
            "load_average_1min": [load_before, os.getloadavg()[0]],
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
