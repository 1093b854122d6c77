"""The probe descriptions (geoharmony.eval.probes): what each measures, and the migration of
metrics.json files written before probes were listed uniformly."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import torch

from geoharmony.cli import main
from geoharmony.config import EvalConfig
from geoharmony.eval import knn_predict, predict, train_linear_probe
from geoharmony.eval.probes import (
    BLOCK_KEYS,
    PROBES,
    nest_probe,
    probe_block,
    probe_lines,
    upgrade_metrics,
)
from metrics_files import metrics, run_metrics, write

BLOCK = {"many": 90.0, "medium": 80.0, "few": 70.0, "std": 8.2, "avg": 80.0, "worst": 60.0}


def legacy(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` (today's layout) as a metrics.json of before 2026-12-07: the linear probe's
    block at the top level, kNN's under ``knn``, the probe set under ``probe``."""
    old = copy.deepcopy(result)
    probes = old.pop("probes")
    old.update(probes["linear"])
    old["knn"] = probes["knn"]
    old["probe"] = old.pop("probe_set")
    return old


def features(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    train_y = torch.arange(3).repeat_interleave(20)
    centres = torch.eye(3, 8) * 4
    train_x = centres[train_y] + torch.randn(60, 8, generator=g)
    test_x = centres[torch.tensor([0, 1, 2, 2])] + torch.randn(4, 8, generator=g)
    return train_x, train_y, test_x


def test_each_measured_probe_is_the_evaluation_function_it_names() -> None:
    train_x, train_y, test_x = features()
    ev = EvalConfig(knn_k=7, knn_temperature=0.2, probe="adam", probe_epochs=5)
    knn = PROBES["knn"].fit_predict
    linear = PROBES["linear"].fit_predict
    assert knn is not None and linear is not None
    expected_knn = knn_predict(train_x, train_y, test_x, 3, k=7, temperature=0.2)
    assert torch.equal(knn(train_x, train_y, test_x, 3, ev, 0), expected_knn)
    head = train_linear_probe(train_x, train_y, 3, preset="adam", epochs=5, seed=3)
    assert torch.equal(linear(train_x, train_y, test_x, 3, ev, 3), predict(head, test_x))
    # k larger than the probe set is cut to its size, as a kNN over every image
    ev_big = EvalConfig(knn_k=1000, knn_temperature=0.2)
    expected = knn_predict(train_x, train_y, test_x, 3, k=60, temperature=0.2)
    assert torch.equal(knn(train_x, train_y, test_x, 3, ev_big, 0), expected)


def test_kNN_comes_first_and_the_fine_tuned_classifier_is_measured_by_its_command() -> None:
    assert list(PROBES)[:2] == ["knn", "linear"]
    assert PROBES["finetune"].fit_predict is None
    assert all(name == probe.name for name, probe in PROBES.items())


def test_an_old_pretraining_file_is_upgraded_and_a_new_one_left_alone() -> None:
    new = run_metrics("simclr")
    old = legacy(new)
    assert "probes" not in old and old["probe"] == new["probe_set"]
    up = upgrade_metrics(old)
    assert up == new
    assert list(up["probes"]) == ["knn", "linear"]
    assert upgrade_metrics(new) == new
    assert "per_class" in old and "probes" not in old  # the input is left as it was
    unlabeled = {"labels": "none", "clusters": {}}
    assert upgrade_metrics(unlabeled) == unlabeled


@pytest.mark.parametrize(("task", "name"), [("finetune", "finetune"), ("probe", "linear")])
def test_old_downstream_files_put_their_one_block_under_its_probe(task: str, name: str) -> None:
    flat = {**BLOCK, "per_class": [90.0, 70.0], "class_counts": [5, 1], "group_rule": "thirds"}
    old = {**flat, "task": task, "accuracy": 81.0}
    up = upgrade_metrics(old)
    assert up["probes"] == {name: {k: flat[k] for k in BLOCK_KEYS}}
    assert up["class_counts"] == [5, 1] and up["task"] == task and up["accuracy"] == 81.0
    assert nest_probe(name, flat) == {k: v for k, v in up.items() if k not in ("task", "accuracy")}


def test_probe_block_and_lines_read_either_layout() -> None:
    new = metrics([10, 5, 1], [90.0, 80.0, 70.0], [60.0, 50.0, 40.0])
    new["probes"]["knn"].update(BLOCK)
    for result in (new, legacy(new)):
        block = probe_block(result, "knn")
        assert block is not None and block["per_class"] == [60.0, 50.0, 40.0]
        assert probe_block(result, "finetune") is None
        lines = probe_lines(result)
        assert lines[0] == "kNN (thirds): many 90.00  medium 80.00  few 70.00  std 8.20  avg 80.00"
        assert lines[1].startswith("Linear probe (thirds): many -")


def test_compare_reads_old_run_folders_as_new_ones(tmp_path: Path) -> None:
    outputs = []
    for layout, convert in (("new", lambda r: r), ("old", legacy)):
        folder = tmp_path / layout
        runs = [write(folder / n, convert(run_metrics(n))) for n in ("simclr", "simclr_gh")]
        ref = write(folder / "ref", convert(metrics([248] * 10, [80.0] * 10, [60.0] * 10)))
        out = folder / "out" / "cmp"
        assert main(["compare", *runs, "--reference", ref, "--output", str(out)]) == 0
        deficits = json.loads(Path(f"{out}_deficit.json").read_text())["runs"]
        outputs.append([{k: v for k, v in r.items() if k != "path"} for r in deficits])
        outputs.append(Path(f"{out}.csv").read_text())
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3]
    assert outputs[1].splitlines()[1].startswith("knn,Many,")
