"""``geoharmony detect``: a tiny COCO-format set with polygon masks trains a few iterations and
scores finite APs under the paper's keys; a paused run continues to the uninterrupted run's
weights; bad inputs are named; ``compare`` sets detection runs side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from geoharmony.cli import main
from geoharmony.config import ConfigError
from geoharmony.detection.coco import load_instances
from geoharmony.detection.config import DetectionConfig, load_detection_config
from geoharmony.detection.dataset import DetectionSplit
from geoharmony.detection.evaluate import AP_KEYS, IOU_TYPES, coco_ap
from presets import detection_presets

REPO = Path(__file__).resolve().parents[2]
# A 48-pixel canvas, a width-1/16 backbone, 3 iterations: the whole pipeline in seconds.
TINY = [
    "optim.iterations=3",
    "optim.batch_size=2",
    "optim.steps=[2]",
    "optim.warmup_iterations=1",
    "optim.lr=0.01",
    "data.train_min_sizes=[40,48]",
    "data.test_min_size=48",
    "data.max_size=64",
    "data.workers=0",
    "model.fpn_channels=16",
    "model.anchor_sizes=[8,12,16,24,32]",
    "train.checkpoint_every=2",
    "train.log_every=1",
    "train.progress=false",
    "train.precision=fp32",
    "train.device=cpu",
]


def _polygon_object(rng: np.random.Generator, canvas: np.ndarray, category: int) -> dict:
    """A filled right triangle (category 1) or square (2) of a class-specific brightness."""
    side = int(rng.integers(10, 18))
    x, y = (int(v) for v in rng.integers(2, canvas.shape[0] - side - 2, 2))
    if category == 1:
        polygon = [x, y, x + side, y + side, x, y + side]
        rows = np.arange(side)[:, None] >= np.arange(side)[None, :]
        canvas[y : y + side, x : x + side][rows] = 200
    else:
        polygon = [x, y, x + side, y, x + side, y + side, x, y + side]
        canvas[y : y + side, x : x + side] = 110
    return {
        "category_id": category,
        "bbox": [x, y, side, side],
        "segmentation": [[float(v) for v in polygon]],
        "area": float(side * side / (2 if category == 1 else 1)),
        "iscrowd": 0,
    }


def _write_set(root: Path, counts: dict[str, int], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in counts.items():
        (root / split).mkdir(parents=True)
        images, annotations = [], []
        for i in range(n):
            canvas = np.zeros((48, 48), np.uint8)
            objects = [_polygon_object(rng, canvas, 1 + (i + k) % 2) for k in range(1)]
            Image.fromarray(canvas).save(root / split / f"{i}.png")
            images.append({"id": i + 1, "file_name": f"{i}.png", "width": 48, "height": 48})
            for obj in objects:
                annotations.append({"id": len(annotations) + 1, "image_id": i + 1, **obj})
        coco = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": 1, "name": "triangle"}, {"id": 2, "name": "square"}],
        }
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return root


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_set(tmp_path_factory.mktemp("shapes"), {"train": 6, "val": 4})


def _detect(checkpoint: Path, data: Path, out: Path, *extra: str) -> int:
    args = ["detect", "--checkpoint", str(checkpoint), "--data", str(data), "--output", str(out)]
    return main([*args, *TINY, *extra])


@pytest.fixture(scope="module")
def finished(tiny_run: Path, shapes: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("detect")
    assert _detect(tiny_run, shapes, out) == 0
    return out


def test_a_tiny_set_trains_and_scores_finite_aps_under_the_paper_s_keys(finished: Path) -> None:
    result = json.loads((finished / "metrics.json").read_text())
    assert result["task"] == "detection"
    for kind in IOU_TYPES:
        assert set(result[kind]) == set(AP_KEYS)
        for key in ("AP", "AP50", "AP75"):
            assert 0.0 <= result[kind][key] <= 100.0
    assert result["backbone"]["unused_tensors"]["projector"] > 0
    assert [h["iteration"] for h in result["history"]] == [1, 2, 3]
    assert all(np.isfinite(h["loss"]) for h in result["history"])
    # the schedule: warm-up over iteration 0, the full rate at 1, a tenth after step 2
    assert [h["lr"] for h in result["history"]] == pytest.approx([1e-5, 0.01, 0.001])
    assert result["dataset"]["train_images"] == 6 and result["method"] == "simclr"


def test_a_paused_run_continues_to_the_uninterrupted_run_s_weights(
    tiny_run: Path, shapes: Path, finished: Path, tmp_path: Path
) -> None:
    assert _detect(tiny_run, shapes, tmp_path, "--stop-after", "2") == 0
    assert not (tmp_path / "metrics.json").exists()
    assert _detect(tiny_run, shapes, tmp_path) == 0
    whole = torch.load(finished / "model.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "model.pt", weights_only=True)["model"]
    assert whole.keys() == resumed.keys()
    for key, value in whole.items():
        assert torch.equal(value, resumed[key]), key
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (finished, tmp_path))
    assert a["bbox"] == b["bbox"] and a["segm"] == b["segm"]


def test_a_checkpoint_continues_only_its_own_settings(
    tiny_run: Path, shapes: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _detect(tiny_run, shapes, tmp_path, "--stop-after", "2") == 0
    assert _detect(tiny_run, shapes, tmp_path, "optim.lr=0.02") == 2
    assert "optim.lr=0.01 (now 0.02)" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("corrupt", "named"),
    [
        (lambda c: c["annotations"][0].pop("bbox"), "annotations[0].bbox: missing"),
        (lambda c: c["annotations"][1].update(category_id=7), "annotations[1].category_id"),
        (lambda c: c["images"][0].update(width="wide"), "images[0].width"),
    ],
)
def test_a_corrupt_annotation_file_exits_2_naming_the_file_and_the_field(
    tiny_run: Path,
    shapes: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    corrupt: Any,
    named: str,
) -> None:
    data = _write_set(tmp_path / "data", {"train": 3, "val": 2})
    path = data / "annotations" / "instances_val.json"
    coco = json.loads(path.read_text())
    corrupt(coco)
    path.write_text(json.dumps(coco))
    assert _detect(tiny_run, data, tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert str(path) in err and named in err


def test_a_missing_annotation_file_is_named(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _write_set(tmp_path / "data", {"train": 3})
    assert _detect(tiny_run, data, tmp_path / "out") == 2
    assert "instances_val.json: missing" in capsys.readouterr().err


def test_perfect_detections_score_100_and_none_score_0(shapes: Path) -> None:
    instances = load_instances(shapes / "annotations" / "instances_val.json")
    perfect = [
        {
            "image_id": a.image_id,
            "category_id": a.category_id,
            "bbox": list(a.bbox),
            "score": 1.0,
            "segmentation": a.segmentation,
        }
        for anns in instances.annotations.values()
        for a in anns
    ]
    scores = coco_ap(instances, perfect)
    for kind in IOU_TYPES:
        assert scores[kind]["AP"] == pytest.approx(100.0)
        assert scores[kind]["APl"] is None  # no object over 96^2 pixels: COCO's -1
    wrong_class = [{**d, "category_id": 3 - d["category_id"]} for d in perfect]
    assert coco_ap(instances, wrong_class)["bbox"]["AP"] == 0.0
    assert coco_ap(instances, [])["segm"]["AP"] == 0.0


def test_a_flipped_sample_mirrors_its_boxes_and_masks(shapes: Path) -> None:
    instances = load_instances(shapes / "annotations" / "instances_train.json")
    split = DetectionSplit(instances, shapes / "train", channels=1, train=True)
    image, target = split[0]
    flipped, mirrored = split[(0, True)]
    assert torch.equal(flipped, image.flip(-1))
    assert torch.equal(mirrored["masks"], target["masks"].flip(-1))
    ys, xs = np.nonzero(mirrored["masks"][0].numpy())
    x1, y1, x2, y2 = mirrored["boxes"][0].tolist()
    assert x1 <= xs.min() and xs.max() < x2 and y1 <= ys.min() and ys.max() < y2
    # the polygon's mask is the drawn shape (pixels of the image)
    assert torch.equal(target["masks"][0].bool(), image[0] > 0)


def test_every_detection_preset_loads() -> None:
    presets = detection_presets()
    assert {p.name for p in presets} >= {"coco_maskrcnn.yaml", "pasted_fmnist_maskrcnn.yaml"}
    for preset in presets:
        load_detection_config(preset)


def test_the_coco_preset_states_the_protocol_s_defaults() -> None:
    preset = load_detection_config(REPO / "configs" / "downstream" / "coco_maskrcnn.yaml")
    assert preset == DetectionConfig()
    schedule = preset.optim
    assert schedule.lr_at(0) == pytest.approx(0.02 * 0.001)
    assert schedule.lr_at(1000) == pytest.approx(0.02)
    assert schedule.lr_at(60_000) == pytest.approx(0.002)
    assert schedule.lr_at(89_999) == pytest.approx(0.0002)
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        load_detection_config(None, ["optim.lrr=0.1"])
    with pytest.raises(ConfigError, match="anchor_sizes"):
        load_detection_config(None, ["model.anchor_sizes=[32]"])


def test_compare_sets_detection_runs_side_by_side(
    finished: Path, tmp_path: Path, tiny_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", str(finished), str(finished), "--output", str(tmp_path / "t")]) == 0
    table = (tmp_path / "t.md").read_text().splitlines()
    assert table[0].startswith("| run | AP^bb | AP50^bb | AP75^bb | AP^mk")
    assert table[2].startswith("| SimCLR |")
    header = (tmp_path / "t.csv").read_text().splitlines()[0]
    assert header.endswith("segm_APs,segm_APm,segm_APl")
    capsys.readouterr()
    fake = tmp_path / "cls" / "metrics.json"
    fake.parent.mkdir()
    fake.write_text(json.dumps({"method": "simclr", "probes": {}}))
    assert main(["compare", str(finished), str(fake.parent), "--output", str(tmp_path / "u")]) == 2
    assert "detection runs compare only with detection runs" in capsys.readouterr().err


def test_two_processes_share_each_batch_and_score_the_whole_validation_set(
    tiny_run: Path, shapes: Path, tmp_path: Path, run_distributed: Any
) -> None:
    script = tmp_path / "detect.py"
    script.write_text("import sys\nfrom geoharmony.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    out = tmp_path / "out"
    args = ["detect", "--checkpoint", str(tiny_run), "--data", str(shapes), "--output", str(out)]
    run_distributed(script, 2, *args, *TINY)
    result = json.loads((out / "metrics.json").read_text())
    assert result["world_size"] == 2
    assert [h["iteration"] for h in result["history"]] == [1, 2, 3]
    for kind in IOU_TYPES:
        assert set(result[kind]) == set(AP_KEYS)
    state = torch.load(out / "model.pt", weights_only=True)["model"]
    assert "backbone.body.bn1.running_mean" in state  # GlobalBatchNorm keeps BatchNorm's keys
