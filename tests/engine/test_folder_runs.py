"""A practitioner's own folder, end to end (issue 29): unlabeled images, a labelled folder
without a test split, bad files, settings that do not fit the data, a resumed run, and
``geoharmony inspect`` before any training."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoharmony.cli import _print_summary, main
from geoharmony.configure import load_config
from geoharmony.data.build import build_run_data
from geoharmony.data.splits import FileList
from image_files import count_decodes, write_broken, write_class_folders, write_images
from tiny_runs import REPO, SMOKE, TINY_FILES

FOLDER_PRESET = str(REPO / "configs" / "folder" / "simclr_gh.yaml")
# Keys of a labelled result (today's and the layout before 2026-12-07); an unlabeled run's
# metrics.json has none of them.
ACCURACY_KEYS = {"probes", "probe_set", "many", "few", "avg", "per_class", "knn", "probe"}


def _pretrain(config: str, out: Path, root: Path, *extra: str, flags: tuple[str, ...] = ()) -> int:
    args = ["pretrain", "--config", config, "--output", str(out), *flags, *TINY_FILES]
    return main([*args, "data.source=folder", f"data.root={root}", *extra])


def test_unlabeled_folder_with_bad_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # One folder of images, nothing to say which class any is; GH on (the folder preset).
    write_images(tmp_path / "images", 24)
    broken = write_broken(tmp_path / "images")
    out = tmp_path / "run"
    gh = ["gh.num_anchors=4", "gh.warmup_epochs=0", "gh.ramp_epochs=0"]
    assert _pretrain(FOLDER_PRESET, out, tmp_path / "images", *gh) == 2  # bad files stop it
    assert not (out / "checkpoints").exists()
    code = _pretrain(FOLDER_PRESET, out, tmp_path / "images", *gh, "data.skip_bad_files=true")
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert not ACCURACY_KEYS & set(metrics) and "accuracy" not in json.dumps(metrics)
    assert metrics["labels"] == "none" and metrics["gh"] is True
    assert metrics["features"]["images"] == 24 == metrics["data"]["num_pretrain_images"]
    assert sum(metrics["clusters"]["sizes"]) == 24 and metrics["clusters"]["clusters"] == 10
    assert len(metrics["prior"]["estimated"]) == 4
    assert 1.0 <= metrics["prior"]["effective_anchors"] <= 4.0
    # Exactly the broken files were left out, and they are listed.
    listed = [line.split("\t")[0] for line in (out / "bad_files.txt").read_text().splitlines()]
    assert sorted(listed) == sorted(map(str, broken))
    assert sorted(b["path"] for b in metrics["data"]["bad_files"]) == sorted(listed)
    assert main(["compare", str(out), "--output", str(tmp_path / "table")]) == 2
    # The embedding of the same folder: stops at the bad files, or leaves them out.
    embed = ["embed", "--checkpoint", str(out), "--images", str(tmp_path / "images")]
    embed += ["--output", str(tmp_path / "features.npy"), "--device", "cpu", "--workers", "0"]
    assert main(embed) == 2
    assert "add --skip-bad-files" in capsys.readouterr().err  # embed's own flag, not pretrain's
    assert main([*embed, "--skip-bad-files"]) == 0
    assert np.load(tmp_path / "features.npy").shape[0] == 24
    sidecar = json.loads((tmp_path / "features.json").read_text())
    assert sorted(b["path"] for b in sidecar["unreadable"]) == sorted(listed)


def test_labelled_folder_without_test_split_holds_out(tmp_path: Path) -> None:
    write_class_folders(tmp_path / "images", {"a": 16, "b": 8, "c": 4})
    out = tmp_path / "run"
    assert _pretrain(SMOKE, out, tmp_path / "images", "data.holdout_fraction=0.25") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    holdout = metrics["data"]["holdout"]
    assert holdout == {"fraction": 0.25, "seed": 0, "images": 7, "class_counts": [4, 2, 1]}
    assert metrics["class_counts"] == [12, 6, 3] and metrics["probe_set"]["test_images"] == 7
    data = build_run_data(load_config(out / "config.yaml").data)
    assert isinstance(data.train, FileList) and isinstance(data.test, FileList)
    pretrained = {data.train.paths[i] for i in data.pretrain_indices}
    assert pretrained.isdisjoint(data.test.paths) and len(data.test) == 7
    assert len(pretrained) + len(data.test) == 28


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["data.profile=ldam", "data.n_max=50"], r"data.profile=ldam .*'a' 50 > 13.*at most 13"),
        (["eval.probe_shots=5"], r"eval.probe_shots=5: class 'c' has only 3 images.*at most 3"),
        (["optim.batch_size=64"], r"optim.batch_size=64 is more than the 22 .*at most 22"),
        (["gh.enabled=true"], r"gh.num_anchors=10 is more than the 8 pretraining .*at most 8"),
        (["data.holdout_fraction=1"], r"data.holdout_fraction=1.0: .*between 0 and 1"),
        (["broken"], r"2 of 30 image files cannot be read.*data.skip_bad_files=true"),
        (["data.labels=none", "data.profile=ldam"], r"data.profile=ldam draws .*no labels"),
        (
            ["gh.enabled=true", "gh.allocation.tau=0", "gh.allocation.partial_end=1.5"],
            r"gh.allocation.tau=0.0 must be positive.*"
            r"gh.allocation.partial_end=1.5 must be in \(0, 1\]",
        ),
        (
            ["eval.probe_shots=null", "eval.probe_disjoint=true"],
            r"eval.probe_shots=null: class 'a' has only 0 images .*eval.probe_disjoint=false",
        ),
        (
            ["data.labels=none", "eval.clusters=0"],
            r"eval.clusters=0: .* of 28 pretraining .*1 to 28",
        ),
    ],
)
def test_mismatches_are_clean_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expected: str
) -> None:
    counts = {"a": 16, "b": 8, "c": 4} if "gh.enabled=true" not in extra else {"a": 6, "b": 4}
    write_class_folders(tmp_path / "images", counts)
    if extra == ["broken"]:
        write_broken(tmp_path / "images" / "a", ("truncated_png", "empty_jpeg"))
        extra = []
    assert _pretrain(SMOKE, tmp_path / "run", tmp_path / "images", *extra) == 2
    err = capsys.readouterr().err
    assert err.startswith("geoharmony: error: ") and "Traceback" not in err
    assert re.search(expected, err.replace("\n", " ")), err


def test_mismatch_exits_2_without_traceback(tmp_path: Path) -> None:
    write_images(tmp_path / "images", 6)
    command = [sys.executable, "-m", "geoharmony", "pretrain", "--config", SMOKE]
    command += ["--output", str(tmp_path / "run"), *TINY_FILES, "data.source=folder"]
    command += [f"data.root={tmp_path / 'images'}"]
    done = subprocess.run(command, capture_output=True, text=True, check=False, cwd=REPO)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "optim.batch_size=8 is more than the 6 pretraining images" in done.stderr


def test_resumed_run_decodes_no_file_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_class_folders(tmp_path / "images", {"a": 8, "b": 8})
    decoded = count_decodes(monkeypatch)
    out = tmp_path / "run"
    flags = ["optim.epochs=2", "data.num_workers=0"]  # the preflight in this process
    root = tmp_path / "images"
    assert _pretrain(SMOKE, out, root, *flags, flags=("--stop-after", "1", "--no-eval")) == 0
    assert len(decoded) == 16
    decoded.clear()
    assert _pretrain(SMOKE, out, root, *flags, flags=("--no-eval",)) == 0
    assert decoded == [] and (out / "checkpoints" / "epoch_00002.ckpt").is_file()


def test_resume_on_changed_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The checkpoint's per-sample state (e.g. GH's bank) is indexed by image: more images
    # later would silently shift it, so the run refuses and names what changed.
    root = tmp_path / "images"
    write_class_folders(root, {"a": 8, "b": 8})
    out = tmp_path / "run"
    flags = ["optim.epochs=2", "data.num_workers=0"]
    assert _pretrain(SMOKE, out, root, *flags, flags=("--stop-after", "1", "--no-eval")) == 0
    write_class_folders(tmp_path / "more", {"a": 2})
    for extra in (tmp_path / "more" / "a").iterdir():
        extra.rename(root / "a" / f"added_{extra.name}")
    capsys.readouterr()
    assert _pretrain(SMOKE, out, root, *flags, flags=("--no-eval",)) == 2
    err = capsys.readouterr().err  # 20% of the images are held out for the probes
    assert "made on other data" in err
    assert "num_pretrain_images: 12 in the checkpoint, 14 now" in err


def test_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "images"
    write_class_folders(root, {"cat": 12, "dog": 6, "owl": 3})
    Image.fromarray(np.zeros((10, 30), np.uint8)).save(root / "owl" / "gray.png")
    write_broken(root / "cat", ("truncated_png", "text_jpeg"))
    out = tmp_path / "report" / "inspect"
    assert main(["inspect", "--root", str(root), "--output", str(out), "--workers", "1"]) == 0
    printed = capsys.readouterr().out
    assert "imbalance ratio (largest / smallest class): 3" in printed
    assert "cut.png" in printed and "notes.jpg" in printed
    report = json.loads(out.with_suffix(".json").read_text())
    train = report["train"]
    assert train["class_names"] == ["cat", "dog", "owl"] and train["class_counts"] == [12, 6, 4]
    assert train["modes"] == {"RGB": 21, "L": 1} and train["sizes"]["most_common"][0] == [
        20,
        20,
        21,
    ]
    assert len(report["bad_files"]) == 2 and "test" not in report
    with Image.open(out.with_suffix(".png")) as plot:
        assert plot.format == "PNG"
    # Unlabeled: counts and sizes, no class plot.
    write_images(tmp_path / "flat", 5)
    flat = tmp_path / "flat_report"
    assert main(["inspect", "--root", str(tmp_path / "flat"), "--output", str(flat)]) == 0
    assert json.loads(flat.with_suffix(".json").read_text())["labelled"] is False
    assert not flat.with_suffix(".png").exists()


def test_summary_marks_an_empty_group(capsys: pytest.CaptureFixture[str]) -> None:
    # A folder whose largest class has at most 100 images has no Many class under the paper's
    # thresholds: the group's accuracy is NaN in memory (null in metrics.json), printed as a dash.
    nan = float("nan")
    groups = {"many": nan, "medium": 91.666, "few": 37.5, "std": 27.08, "avg": 55.55}
    linear = {**groups, "per_class": [91.7, 0.0]}
    _print_summary({"probes": {"knn": groups, "linear": linear}, "group_rule": "thresholds"})
    assert capsys.readouterr().out.splitlines() == [
        "kNN (thresholds): many -  medium 91.67  few 37.50  std 27.08  avg 55.55",
        "Linear probe (thresholds): many -  medium 91.67  few 37.50  std 27.08  avg 55.55",
    ]
