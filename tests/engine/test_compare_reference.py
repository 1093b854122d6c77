"""``geoharmony compare --reference`` on real tiny runs: a long-tailed run against a balanced
reference of the same image count, and the refusal of one evaluated with another probe."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from geoharmony.cli import main
from tiny_runs import SMOKE, TINY, needs_fashion_mnist

pytestmark = needs_fashion_mnist


def pretrain(out: Path, *extra: str) -> dict:
    assert main(["pretrain", "--config", SMOKE, "--output", str(out), *TINY, *extra]) == 0
    return json.loads((out / "metrics.json").read_text())


def test_compare_reference_on_tiny_runs(tmp_path: Path, capsys) -> None:
    run = pretrain(tmp_path / "lt")  # imbalance 100, 100 -> 1 images a class
    images, classes = run["data"]["num_pretrain_images"], len(run["class_counts"])
    n_max = round(images / classes)
    ref = pretrain(tmp_path / "balanced", "data.imbalance_ratio=1", f"data.n_max={n_max}")
    assert ref["class_counts"] == [n_max] * classes
    assert abs(ref["data"]["num_pretrain_images"] - images) <= classes

    prefix = tmp_path / "cmp"
    args = ["compare", str(tmp_path / "lt"), "--output", str(prefix)]
    assert main([*args, "--reference", str(tmp_path / "balanced")]) == 0
    out = json.loads(Path(f"{prefix}_deficit.json").read_text())["runs"][0]
    # Thirds of 10 classes: the 3 classes with the fewest pretraining images are Few.
    few = np.argsort(-np.asarray(run["class_counts"]), kind="stable")[-3:]
    for probe, acc, ref_acc in (
        ("linear", run["probes"]["linear"]["per_class"], ref["probes"]["linear"]["per_class"]),
        ("knn", run["probes"]["knn"]["per_class"], ref["probes"]["knn"]["per_class"]),
    ):
        diff = np.asarray(ref_acc) - np.asarray(acc)
        assert out[probe]["per_class_deficit"] == pytest.approx(diff.tolist(), abs=1e-9)
        assert out[probe]["deficit_few"] == pytest.approx(diff[few].mean(), abs=1e-9)
        assert out[probe]["deficit_avg"] == pytest.approx(diff.mean(), abs=1e-9)
    reading = Path(f"{prefix}.md").read_text().split("### Reading")[1]
    # The reading's noise is the packaged study file's; these tiny runs are not its regime.
    study = json.loads((resources.files("geoharmony.eval") / "study_noise.json").read_text())
    base = study["methods"]["simclr"]["linear"]["baseline"]
    assert f"{base['mean']:.2f} ± {base['sd']:.2f} (mean ± sd over {base['runs']} runs" in reading
    assert "so they compare with them only roughly" in reading
    assert Path(f"{prefix}_deficit.png").stat().st_size > 0

    # The same balanced backbone probed with 10 labels a class, not 20: a different protocol.
    other = tmp_path / "other_probe.json"
    evaluate = ["evaluate", "--checkpoint", str(tmp_path / "balanced"), "--output", str(other)]
    assert main([*evaluate, "eval.probe_shots=10"]) == 0
    capsys.readouterr()
    assert main([*args, "--reference", str(other)]) == 2
    err = capsys.readouterr().err
    assert "geoharmony: error: reference" in err
    assert "probe_set.shots: 10 against the run's 20" in err
    # The long-tailed run itself is no reference.
    assert main([*args, "--reference", str(tmp_path / "lt")]) == 2
    assert "is not balanced" in capsys.readouterr().err
