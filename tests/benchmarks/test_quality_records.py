"""The committed run records of benchmarks/quality: what they keep, and what they refuse."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

from geoharmony.eval.probes import upgrade_metrics

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.quality import plan, records  # noqa: E402
from benchmarks.quality.runner import run_plan  # noqa: E402

SPEC = next(s for s in plan.build_plan(quick=True) if s.init_from)
METRICS = {"per_class": [50.0] * 10, "class_counts": [5] * 10, "history": [{"epoch": 1}]}
FEWSHOT = {"shots": {"10": [{"per_class": [40.0] * 10}]}}


def _finished_run(root: Path, spec: plan.RunSpec = SPEC) -> Path:
    run = root / spec.run_id
    run.mkdir(parents=True)
    (run / "metrics.json").write_text(json.dumps(METRICS))
    (run / "fewshot.json").write_text(json.dumps(FEWSHOT))
    (run / "timing.json").write_text(json.dumps({"pretrain": [3.5]}))
    (run / "command.txt").write_text("python -m geoharmony.cli pretrain --output 'a b'\n")
    return run


def test_record_keeps_what_the_report_reads(tmp_path: Path) -> None:
    run = _finished_run(tmp_path / "runs")
    path = records.write_record(SPEC, run, tmp_path / "store")
    assert path == tmp_path / "store" / f"{SPEC.run_id}.json"
    assert not list((tmp_path / "store").glob("*.tmp")), "written atomically, no leftovers"
    loaded = records.load_records([SPEC], tmp_path / "store")
    entry = loaded[SPEC.run_id]
    assert entry["spec"] is SPEC
    # read in today's layout (this METRICS is a run folder's of before 2026-12-07)
    assert "probes" not in METRICS and entry["metrics"] == upgrade_metrics(METRICS)
    assert entry["fewshot"] == FEWSHOT
    assert entry["timing"] == {"pretrain": [3.5]}
    assert entry["command"] == ["python", "-m", "geoharmony.cli", "pretrain", "--output", "a b"]
    assert "cores" in entry["machine"]


def test_a_reprobed_record_keeps_the_run_s_provenance(tmp_path: Path) -> None:
    run, store = _finished_run(tmp_path / "runs"), tmp_path / "store"
    path = records.write_record(SPEC, run, store)
    first = json.loads(path.read_text())
    first.update(commit="abc1234", machine="the run's CPU", recorded="2026-01-01 00:00 UTC")
    path.write_text(json.dumps(first))
    (run / "fewshot.json").write_text(json.dumps({**FEWSHOT, "knn_k": {"20": {}}}))
    again = json.loads(records.write_record(SPEC, run, store, reprobed=True).read_text())
    assert again["fewshot"]["knn_k"] == {"20": {}}
    assert [again[k] for k in ("commit", "machine", "recorded")] == [
        "abc1234",
        "the run's CPU",
        "2026-01-01 00:00 UTC",
    ]
    assert set(again["reprobed"]) == {"commit", "recorded"}
    assert again["reprobed"]["recorded"] != first["recorded"]


def test_an_unfinished_run_is_not_recorded(tmp_path: Path) -> None:
    run = _finished_run(tmp_path / "runs")
    (run / "fewshot.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"fewshot\.json"):
        records.write_record(SPEC, run, tmp_path / "store")
    assert records.sync_records([SPEC], tmp_path / "runs", tmp_path / "store") == []


def test_a_record_made_with_other_overrides_is_refused(tmp_path: Path) -> None:
    records.write_record(SPEC, _finished_run(tmp_path / "runs"), tmp_path / "store")
    changed = dataclasses.replace(SPEC, overrides=(*SPEC.overrides, "gh.epsilon=0.1"))
    with pytest.raises(ValueError, match=rf"{SPEC.run_id}.*gh.epsilon=0.1"):
        records.load_records([changed], tmp_path / "store")


def test_a_corrupt_record_names_its_file(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    records.record_path(store, SPEC.run_id).write_text('{"schema": 1, "run')
    with pytest.raises(ValueError, match=rf"{SPEC.run_id}\.json: not valid JSON"):
        records.load_records([SPEC], store)


def test_the_runner_records_runs_that_finished_before_records_existed(tmp_path: Path) -> None:
    specs = plan.select(plan.build_plan(quick=True), [SPEC.run_id])
    assert [s.run_id for s in specs] == [SPEC.init_from, SPEC.run_id]
    for spec in specs:
        _finished_run(tmp_path / "runs", spec)
    outcome = run_plan(specs, tmp_path / "runs", tmp_path / "store", workers=1, poll=0.01)
    assert outcome["done"] == [s.run_id for s in specs] and not outcome["ran"]
    assert set(records.load_records(specs, tmp_path / "store")) == {s.run_id for s in specs}
