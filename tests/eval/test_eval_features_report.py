"""Feature extraction and result assembly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from geoharmony.eval import (
    SCHEMA_KEYS,
    NonFiniteFeaturesError,
    assemble_result,
    extract_features,
    result_from_predictions,
    write_json,
)
from geoharmony.models import cifar_resnet18


def _images(n: int, channels: int = 3) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, channels, 16, 16), generator=gen, dtype=torch.uint8)


def test_extract_features_tensor_and_loader_agree() -> None:
    model = cifar_resnet18(width=0.125, seed=0)
    model.train()
    images = _images(10)
    feats = extract_features(model, images, batch_size=3)
    assert model.training  # mode restored
    assert feats.shape == (10, model.out_dim) and feats.dtype == torch.float32
    with torch.no_grad():
        ref = model.eval()(images.float() / 255)
    torch.testing.assert_close(feats, ref, rtol=1e-5, atol=1e-6)
    loader = DataLoader(TensorDataset(images, torch.arange(10)), batch_size=4)
    torch.testing.assert_close(extract_features(model, loader), feats, rtol=1e-5, atol=1e-6)
    assert not feats.requires_grad


def test_extract_features_preprocess_channels_last_autocast() -> None:
    model = cifar_resnet18(width=0.125, in_channels=1, seed=0)
    images = _images(6, channels=1)
    mean, std = 120.0, 60.0
    feats = extract_features(model, images, preprocess=lambda b: (b.float() - mean) / std)
    with torch.no_grad():
        ref = model.eval()((images.float() - mean) / std)
    torch.testing.assert_close(feats, ref, rtol=1e-5, atol=1e-6)
    cl = extract_features(
        model, images, channels_last=True, preprocess=lambda b: (b.float() - mean) / std
    )
    torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-5)
    bf = extract_features(
        model, images, autocast_dtype=torch.bfloat16, preprocess=lambda b: (b.float() - mean) / std
    )
    assert bf.dtype == torch.float32
    torch.testing.assert_close(bf, ref, rtol=0.1, atol=0.1)


def test_extract_features_rejects_non_finite_features() -> None:
    model = cifar_resnet18(width=0.125, seed=0)
    chunks = []

    def poison_image_4(batch: torch.Tensor) -> torch.Tensor:
        x = batch.float() / 255
        chunks.append(len(x))
        if len(chunks) == 2:  # chunk [3, 6): its second image is image 4
            x[1] = float("inf")
        return x

    images = _images(10)
    with pytest.raises(NonFiniteFeaturesError, match=r"of 1 of 10 images .*\(first: image 4\)"):
        extract_features(model, images, batch_size=3, preprocess=poison_image_4)
    assert chunks == [3, 3, 3, 1]
    assert torch.isfinite(extract_features(model, images, batch_size=3)).all()


def test_assemble_result_schema() -> None:
    counts = [int(500 * 100 ** (-c / 9)) for c in range(10)]
    acc = [60, 40, 50, 50, 40, 40, 40, 30, 20, 40]
    res = assemble_result(acc, counts, "thirds", extra={"knn_avg": 12.5})
    assert set(SCHEMA_KEYS) <= set(res)
    assert res["many"] == pytest.approx(50.0) and res["few"] == pytest.approx(30.0)
    assert res["std"] == pytest.approx(math.sqrt(200 / 3))
    assert res["per_class"] == [float(a) for a in acc] and res["class_counts"] == counts
    assert res["group_rule"] == "thirds" and res["knn_avg"] == 12.5
    assert all(type(res[k]) is float for k in ("many", "medium", "few", "std", "avg", "worst"))
    with pytest.raises(ValueError, match="shadow"):
        assemble_result(acc, counts, extra={"avg": 1.0})


def test_result_from_predictions() -> None:
    target = np.repeat(np.arange(3), 4)
    pred = target.copy()
    pred[:2] = 1  # class 0: 50 %
    res = result_from_predictions(pred, torch.as_tensor(target), [150, 50, 5], "thresholds")
    assert res["per_class"] == [50.0, 100.0, 100.0]
    assert (res["many"], res["medium"], res["few"]) == (50.0, 100.0, 100.0)


def test_write_json_atomic_and_strict(tmp_path) -> None:
    res = assemble_result([80.0, 60.0, 50.0], [500, 200, 50], "thresholds")
    assert math.isnan(res["few"])
    path = tmp_path / "sub" / "result.json"
    write_json(path, {**res, "arr": np.array([1.5, 2.5]), "n": np.int64(3)})
    loaded = json.loads(path.read_text())
    assert loaded["few"] is None  # NaN -> null: strict JSON
    assert loaded["arr"] == [1.5, 2.5] and loaded["n"] == 3
    assert loaded["many"] == pytest.approx(70.0)
    write_json(path, {"v": 2})  # overwrite in place
    assert json.loads(path.read_text()) == {"v": 2}
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]  # no temp files left
