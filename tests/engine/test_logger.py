"""RunLogger.rewind: a resumed run's log keeps every step once."""

from __future__ import annotations

import json
from pathlib import Path

from geoharmony.engine.logger import RunLogger


def _kinds_and_steps(directory: Path) -> list[tuple[str, int]]:
    lines = (directory / "log.jsonl").read_text().splitlines()
    return [(r["kind"], r["step"]) for r in map(json.loads, lines)]


def test_rewind_drops_records_past_the_checkpoint_and_a_torn_line(tmp_path: Path) -> None:
    logger = RunLogger(tmp_path, tensorboard=False)
    for step in range(1, 7):
        logger.log("train", step, {"loss": 1.0})
        if step % 3 == 0:
            logger.log("epoch", step // 3, {"loss": 1.0})
    logger.log("note", 99, {"text": "kept: not a kind the checkpoint counts"})
    logger.close()
    with open(tmp_path / "log.jsonl", "a") as torn:
        torn.write('{"kind": "train", "st')

    logger = RunLogger(tmp_path, tensorboard=False)
    logger.rewind({"train": 3, "epoch": 1})
    logger.log("train", 4, {"loss": 0.5})
    logger.close()
    assert _kinds_and_steps(tmp_path) == [
        ("train", 1),
        ("train", 2),
        ("train", 3),
        ("epoch", 1),
        ("note", 99),
        ("train", 4),
    ]


def test_rewind_is_a_no_op_off_the_main_process(tmp_path: Path) -> None:
    RunLogger(tmp_path, enabled=False).rewind({"train": 0})
    assert not (tmp_path / "log.jsonl").exists()
