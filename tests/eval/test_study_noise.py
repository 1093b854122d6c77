"""The compare reading's seed noise comes from the study-noise file shipped inside the package
(``geoharmony/eval/study_noise.json``, found through importlib.resources), never from a path
into a repository checkout; a method the file lacks has an unknown noise."""

from __future__ import annotations

import ast
import json
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from geoharmony.eval import compare, reading

ROOT = Path(__file__).resolve().parents[2]
EVAL = ROOT / "src" / "geoharmony" / "eval"


def _run(method: str, gh: bool = False) -> dict[str, Any]:
    """The fields of a metrics.json that the reading reads (a run of the study's data)."""
    return {"method": method, "gh": gh, "data": {"source": "fashion_mnist:/data:train"}}


def _deficits(few: float) -> dict[str, float]:
    return {
        "deficit_many": 1.0,
        "deficit_medium": 0.5,
        "deficit_few": few,
        "deficit_few_minus_many": few - 1.0,
    }


def test_the_packaged_file_is_package_data_found_through_importlib_resources() -> None:
    packaged = resources.files("geoharmony.eval") / "study_noise.json"
    assert packaged.is_file()
    assert str(reading.STUDY_FILE) == str(packaged)
    assert reading.load_study() == json.loads(packaged.read_text())
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "eval/study_noise.json" in setuptools["package-data"]["geoharmony"]
    # No path into a checkout: the module does not locate anything from its own file.
    assert "__file__" not in (EVAL / "reading.py").read_text()


def test_the_reading_quotes_the_packaged_noise() -> None:
    study = reading.load_study()
    assert study is not None
    cell = study["methods"]["simclr"]["knn"]
    regime = study["regime"]["name"]
    runs = [_run("simclr"), _run("simclr", gh=True)]
    text = reading.write_reading(runs, {"knn": [_deficits(5.0), _deficits(4.0)]}, study)
    base, gh = cell["baseline"], cell["gh"]
    assert (
        f"{base['mean']:.2f} ± {base['sd']:.2f} (mean ± sd over {base['runs']} runs: seeds and "
        f"class orders, {regime})" in text
    )
    assert f"The study's Few deficit with GH: {gh['mean']:.2f} ± {gh['sd']:.2f}" in text
    assert f"one pair's change has sd {cell['change']['sd']:.2f}" in text
    assert "unknown" not in text


def test_a_method_the_file_lacks_has_an_unknown_noise(tmp_path: Path, monkeypatch) -> None:
    noise = {
        "regime": {"name": "r", "data_source": "fashion_mnist", "settings": {"epochs": 80}},
        "methods": {
            "simclr": {
                "knn": {
                    "baseline": {"mean": 4.8, "sd": 2.25, "runs": 7},
                    "gh": {"mean": 4.3, "sd": 2.4, "runs": 7},
                }
            }
        },
    }
    file = tmp_path / "study_noise.json"
    file.write_text(json.dumps(noise))
    monkeypatch.setattr(reading, "STUDY_FILE", file)  # the packaged file, as another build has it
    study = reading.load_study()
    assert study == noise
    runs = [_run("focal"), _run("focal", gh=True), _run("simclr"), _run("simclr", gh=True)]
    deficits = {"knn": [_deficits(f) for f in (5.0, 4.0, 5.0, 4.0)]}
    lines = reading.write_reading(runs, deficits, study).splitlines()
    focal = next(line for line in lines if line.startswith("- Focal+GH, kNN:"))
    assert focal.endswith("The study has no cell of this method: its noise here is unknown.")
    assert "The study's Few deficit here" not in next(
        line for line in lines if line.startswith("- Focal, kNN:")
    )
    simclr = next(line for line in lines if line.startswith("- SimCLR+GH, kNN:"))
    assert "The study's Few deficit with GH: 4.30 ± 2.40, a mean change of -0.50" in simclr
    assert "one pair's change" not in simclr  # the file has no paired change for it
    # A run of other settings is said to compare only roughly, naming the setting.
    other = {**_run("simclr"), "config": {"optim": {"epochs": 50}}}
    text = reading.write_reading([other], {"knn": [_deficits(5.0)]}, study)
    assert "these runs differ (epochs 50)" in text
    # Without the packaged file the noise is unknown, and no number is made up.
    monkeypatch.setattr(reading, "STUDY_FILE", tmp_path / "absent.json")
    assert reading.load_study() is None
    text = reading.write_reading(runs[:2], {"knn": deficits["knn"][:2]}, None)
    assert "The noise of these numbers is unknown here" in text and "±" not in text


def test_another_data_set_has_an_unknown_noise() -> None:
    study = reading.load_study()
    run = {**_run("simclr"), "data": {"source": "cifar100:/data:train"}}
    text = reading.write_reading([run], {"knn": [_deficits(5.0)]}, study)
    assert "for this data set it is unknown" in text and "±" not in text


def test_an_older_reports_results_json_is_still_read(tmp_path: Path) -> None:
    cells = [
        {
            "dataset": "fashion_mnist-lt",
            "group": "primary",
            "regime": "r100_e80",
            "method": "simclr",
            "gh": gh,
            "variant": "",
            "probe": "knn",
            "runs": 7,
            "deficit_few_mean": mean,
            "deficit_few_sd": sd,
        }
        for gh, mean, sd in ((False, 4.8, 2.25), (True, 4.3, None))
    ]
    file = tmp_path / "results.json"
    file.write_text(json.dumps(cells))
    study = reading.load_study(file)
    assert study is not None and study["regime"]["data_source"] == "fashion_mnist"
    assert study["methods"]["simclr"]["knn"]["baseline"] == {"mean": 4.8, "sd": 2.25, "runs": 7}
    # A cell without an sd is no noise level: the +GH change is then unknown.
    text = reading.write_reading(
        [_run("simclr"), _run("simclr", gh=True)],
        {"knn": [_deficits(5.0), _deficits(4.0)]},
        study,
    )
    assert "4.80 ± 2.25 (mean ± sd over 7 runs" in text
    assert "its noise here is unknown" in text
    with pytest.raises(FileNotFoundError):
        reading.load_study(tmp_path / "absent.json")


def test_run_labels_come_from_the_caller_or_the_packaged_names(tmp_path: Path) -> None:
    (tmp_path / "metrics.json").write_text(json.dumps({"method": "simclr", "gh": True}))
    (given,) = compare.load_results([tmp_path], display_name=lambda m: m.upper())
    assert compare.run_label(given) == "SIMCLR+GH"
    (plain,) = compare.load_results([tmp_path])
    assert compare.run_label(plain) == "SimCLR+GH"  # the packaged study's name for it
    assert compare.run_label({"method": "mine:Method"}) == "mine:Method"


@pytest.mark.parametrize("name", ["compare.py", "reading.py"])
def test_the_comparison_imports_nothing_above_eval(name: str) -> None:
    tree = ast.parse((EVAL / name).read_text())
    imported = [
        node.module or ""
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    ] + [
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    ]
    above = [
        m for m in imported if m.startswith("geoharmony.") and not m.startswith("geoharmony.eval")
    ]
    assert not above, f"{name} imports {above}"
