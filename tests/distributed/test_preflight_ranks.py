"""Two real gloo ranks on a folder with unreadable files: rank 0's preflight error reaches rank 1,
which stops with a clean error instead of waiting for data that rank 0 never prepares."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import launch_ranks
from image_files import write_broken, write_class_folders
from tiny_runs import SMOKE, TINY_FILES


def test_rank_zero_preflight_error_stops_every_rank(tmp_path: Path) -> None:
    root = tmp_path / "images"
    write_class_folders(root, {"a": 8, "b": 8})
    write_broken(root / "a", ("truncated_png",))
    command = [sys.executable, "-m", "geoharmony", "pretrain", "--config", SMOKE]
    command += ["--output", str(tmp_path / "run"), *TINY_FILES, "data.source=folder"]
    command += [f"data.root={root}", "data.num_workers=0"]
    with pytest.raises(AssertionError) as failed:
        launch_ranks(command, world_size=2, timeout=120)
    report = str(failed.value)
    assert "timed out" not in report
    assert "rank 0 exited 2" in report and "cannot be read" in report
    assert "rank 1 exited 2" in report and "rank 0 could not prepare the data" in report
