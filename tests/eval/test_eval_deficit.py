"""Deficits against a balanced reference (geoharmony.eval.deficit) and ``geoharmony compare
--reference`` on synthetic metrics.json files: the arithmetic, the grouping by each run's own
pretraining counts, the refusal of a reference that cannot serve, the written reading."""

from __future__ import annotations

import copy
import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from geoharmony.cli import main
from geoharmony.eval import deficit, reading
from geoharmony.eval.deficit import ReferenceMismatchError, check_reference, group_deficits
from metrics_files import COUNTS, DEFICITS, REF_KNN, REF_LINEAR, metrics, run_metrics, write

STUDY = [
    {
        "group": "primary",
        "regime": "r100_e80",
        "method": "simclr",
        "gh": gh,
        "variant": "",
        "probe": probe,
        "runs": 7,
        "deficit_few_mean": mean,
        "deficit_few_sd": sd,
    }
    for probe in ("knn", "linear")
    for gh, mean, sd in ((False, 4.8, 2.25), (True, 4.3, 2.4))
]


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, str]:
    """SimCLR and SimCLR+GH (class 0 the head), Focal with the class order reversed (class 9
    the head), the balanced reference (248 a class: 2,480 images) and the study's records."""
    paths = {
        "simclr": write(tmp_path / "simclr", run_metrics("simclr")),
        "simclr_gh": write(tmp_path / "simclr_gh", run_metrics("simclr_gh")),
        "focal": write(tmp_path / "focal", run_metrics("focal", COUNTS[::-1])),
        "ref": write(tmp_path / "ref", metrics([248] * 10, REF_LINEAR, REF_KNN)),
        "study": str(tmp_path / "results.json"),
        "out": str(tmp_path / "out" / "cmp"),
    }
    Path(paths["study"]).write_text(json.dumps(STUDY))
    return paths


def compare(runs: dict[str, str], *names: str, reference: str | None = None) -> int:
    args = ["compare", *(runs[n] for n in names), "--reference", reference or runs["ref"]]
    return main([*args, "--output", runs["out"], "--study", runs["study"]])


def test_deficit_tables_are_reference_minus_run_grouped_by_each_runs_counts(runs) -> None:
    assert compare(runs, "simclr", "simclr_gh", "focal") == 0
    out = json.loads(Path(f"{runs['out']}_deficit.json").read_text())
    assert [r["run"] for r in out["runs"]] == ["SimCLR", "SimCLR+GH", "Focal"]
    for record, name in zip(out["runs"], ("simclr", "simclr_gh", "focal"), strict=True):
        assert record["linear"]["per_class_deficit"] == DEFICITS[name][0]
        assert record["knn"]["per_class_deficit"] == DEFICITS[name][1]
    # Thirds of 10 classes are 4/3/3. SimCLR (class 0 the head): Many = classes 0-3, Medium
    # 4-6, Few 7-9. Focal's head is class 9: Many = 9-6, Medium 5-3, Few 2-0.
    expected = {
        # probe: [(many, medium, few, few - many, avg) of SimCLR, SimCLR+GH, Focal]
        "linear": [(1.5, 5, 8, 6.5, 4.5), (1.5, 5, 7, 5.5, 4.2), (7.5, 4, 1, -6.5, 4.5)],
        "knn": [(1, 2, 11, 10, 4.3), (1, 2, 10, 9, 4.0), (8.75, 5 / 3, 1, -7.75, 4.3)],
    }
    keys = ("deficit_many", "deficit_medium", "deficit_few", "deficit_few_minus_many")
    for probe, rows in expected.items():
        for record, want in zip(out["runs"], rows, strict=True):
            got = [record[probe][k] for k in (*keys, "deficit_avg")]
            assert got == pytest.approx(want, abs=1e-12), (probe, record["run"])
    table = Path(f"{runs['out']}.md").read_text()
    assert (
        "#### Linear probe\n\n"
        "|  | SimCLR | SimCLR+GH | Focal |\n|---|---|---|---|\n"
        "| Many | 1.50 | 1.50 | 7.50 |\n| Med | 5.00 | 5.00 | 4.00 |\n"
        "| Few | 8.00 | 7.00 | 1.00 |\n| Few - Many | 6.50 | 5.50 | -6.50 |\n"
        "| Avg | 4.50 | 4.20 | 4.50 |"
    ) in table
    rows = list(csv.reader(Path(f"{runs['out']}_deficit.csv").read_text().splitlines()))
    assert rows[0] == ["probe", "", "SimCLR", "SimCLR+GH", "Focal"]
    assert ["knn", "Few", "11.00", "10.00", "1.00"] in rows
    assert Path(f"{runs['out']}_deficit.png").stat().st_size > 0


def test_reading_names_the_group_that_lost_most_gh_change_and_the_studys_noise(runs) -> None:
    assert compare(runs, "simclr", "simclr_gh") == 0
    text = Path(f"{runs['out']}.md").read_text().split("### Reading")[1]
    assert "SimCLR, kNN: the Few classes lost most, 11.00 points" in text
    assert "GH changed the Few deficit by -1.00 points (11.00 -> 10.00, 9% of it closed)" in text
    assert "4.80 ± 2.25 (mean ± sd over 7 runs" in text and "4.30 ± 2.40" in text
    # |-1.00| < sd 2.25: one pair is within the noise of one seed.
    assert "smaller than one run's sd there (2.25): within the noise of one seed" in text
    assert "unknown" not in text


def test_reading_says_the_noise_is_unknown_without_the_study(runs, monkeypatch) -> None:
    monkeypatch.setattr(reading, "STUDY_FILE", Path(runs["study"]).with_name("absent.json"))
    assert (
        main(
            [
                "compare",
                runs["simclr"],
                runs["simclr_gh"],
                "--reference",
                runs["ref"],
                "--output",
                runs["out"],
            ]
        )
        == 0
    )
    text = Path(f"{runs['out']}.md").read_text().split("### Reading")[1]
    assert "The noise of these numbers is unknown here" in text
    assert "±" not in text


def _mutated(result: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(result)
    *parents, last = dotted.split(".")
    block = out
    for part in parents:
        block = block[part]
    block[last] = value
    return out


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("data.source", "cifar10:/data/cifar:train", "data.source"),
        ("probe_set.shots", 100, "probe_set.shots"),
        ("probe_set.disjoint", False, "probe_set.disjoint"),
        ("probe_set.preset", "sgd", "probe_set.preset"),
        ("probe_set.test_images", 5000, "probe_set.test_images"),
        ("config.eval.knn_k", 20, "config.eval.knn_k"),
        ("data.num_pretrain_images", 2490, "data.num_pretrain_images"),  # 12 > 1 a class
        ("data.class_counts", [249, 248, 248, 248, 248, 248, 248, 248, 248, 248], "not balanced"),
        ("data.class_counts", [248] * 9, "number of classes"),
    ],
)
def test_compare_refuses_a_reference_that_differs_naming_the_key(
    runs, tmp_path: Path, capsys, key: str, value: Any, named: str
) -> None:
    ref = json.loads((Path(runs["ref"]) / "metrics.json").read_text())
    bad = write(tmp_path / "bad_ref", _mutated(ref, key, value))
    assert compare(runs, "simclr", reference=bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("geoharmony: error: reference ") and named in err
    assert not Path(f"{runs['out']}_deficit.json").exists()  # refused before writing


@pytest.mark.parametrize(
    ("per_class", "serves"), [(246, False), (247, True), (248, True), (249, False)]
)
def test_a_reference_within_one_image_per_class_serves(per_class: int, serves: bool) -> None:
    run = run_metrics("simclr")  # 2,478 images of 10 classes: a reference at most 10 apart
    ref = metrics([per_class] * 10, REF_LINEAR, REF_KNN)  # 2,460 / 2,470 / 2,480 / 2,490
    if serves:
        check_reference(run, ref)
    else:
        with pytest.raises(ReferenceMismatchError, match=r"data\.num_pretrain_images"):
            check_reference(run, ref)


def test_a_metrics_file_without_a_needed_field_is_named() -> None:
    old = run_metrics("simclr")
    del old["probe_set"]
    with pytest.raises(ReferenceMismatchError, match=r"has no probe_set\.preset"):
        check_reference(old, metrics([248] * 10, REF_LINEAR, REF_KNN))


def test_group_deficits_leave_out_classes_without_accuracy_and_empty_groups() -> None:
    ref = np.full(6, 90.0)
    run = np.array([90.0, 80.0, math.nan, 70.0, 60.0, 50.0])
    # thresholds: Many > 100 (classes 0, 1), Medium 20..100 (none), Few < 20 (2-5).
    d = group_deficits(run, ref, [500, 200, 19, 10, 5, 1], "thresholds")
    assert d["deficit_many"] == 5.0
    assert math.isnan(d["deficit_medium"])
    assert d["deficit_few"] == 30.0  # (20 + 30 + 40) / 3, class 2 left out
    assert d["deficit_few_minus_many"] == 25.0
    assert d["deficit_avg"] == 20.0  # (0 + 10 + 20 + 30 + 40) / 5
    with pytest.raises(ValueError, match="equal length"):
        group_deficits(run[:5], ref, [1] * 6)


def test_probe_accuracies_read_both_probes_and_null_as_nan() -> None:
    # an old-layout file (linear at the top level): read through the migration
    result = {"per_class": [1.0, None], "knn": {"per_class": [3.0, 4.0]}, "_path": "r"}
    assert deficit.probe_accuracies(result, "knn").tolist() == [3.0, 4.0]
    linear = deficit.probe_accuracies(result, "linear")
    assert linear[0] == 1.0 and math.isnan(linear[1])
    missing = r"r: metrics.json has no probes\.knn\.per_class"
    with pytest.raises(ReferenceMismatchError, match=missing):
        deficit.probe_accuracies({"per_class": [1.0], "_path": "r"}, "knn")


def test_reading_skips_empty_groups_and_names_a_gh_variant() -> None:
    nan = float("nan")
    d = {"deficit_many": 1.0, "deficit_medium": nan, "deficit_few": 3.0}
    d["deficit_few_minus_many"] = 2.0
    text = reading._lost_most(d, None)
    assert "the Few classes lost most, 3.00 points" in text and "nan" not in text
    base = {**d, "deficit_few": nan, "deficit_few_minus_many": nan}
    assert "cannot be read" in reading._gh_change(d, base, None, None)
    relaxed = {"config": {"gh": {"allocation": "relaxed", "prior": "bank"}}}
    assert reading._settings_differ([relaxed]) == "allocation relaxed"


def test_study_without_reference_is_refused(runs, capsys) -> None:
    args = ["compare", runs["simclr"], "--study", runs["study"], "--output", runs["out"]]
    assert main(args) == 2
    assert "--study" in capsys.readouterr().err
