"""``geoharmony embed``: folder features, paths, determinism, both output formats."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from geoharmony.cli import main
from geoharmony.downstream.embed import embed_folder, load_embeddings


@pytest.fixture
def folder(tmp_path: Path, make_images: Callable[..., list[str]]) -> tuple[Path, list[str]]:
    root = tmp_path / "images"
    names = {"b.png": 1, "a.jpg": 2, "sub/z.png": 3, "sub/deeper/c.PNG": 4, "A2.bmp": 5}
    paths = make_images(root, names)
    (root / "notes.txt").write_text("not an image")
    make_images(root, {".hidden/x.png": 6})
    return root, paths


def test_embed_npy_shape_paths_and_determinism(
    tiny_run: Path, folder: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, paths = folder
    out = tmp_path / "emb" / "features.npy"
    args = ["embed", "--checkpoint", str(tiny_run), "--images", str(root), "--output", str(out)]
    assert main([*args, "--workers", "0", "--batch-size", "2"]) == 0
    first = np.load(out)
    assert first.shape == (5, 32) and first.dtype == np.float32  # width 1/16: 512 / 16
    assert np.isfinite(first).all() and first.std() > 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["paths"] == sorted(paths) == paths
    assert record["paths"][0] == "A2.bmp" and "sub/deeper/c.PNG" in record["paths"]
    assert record["shape"] == [5, 32] and record["input"]["size"] == 28
    # The same command gives the same file; another batch size / worker count, the same
    # features up to float rounding.
    assert main([*args, "--workers", "0", "--batch-size", "2"]) == 0
    np.testing.assert_array_equal(np.load(out), first)
    assert main([*args, "--workers", "1", "--batch-size", "5"]) == 0
    np.testing.assert_allclose(np.load(out), first, rtol=1e-5, atol=1e-6)


def test_embed_safetensors_and_three_channel_model(
    make_checkpoint: Callable[..., Path], folder: tuple[Path, list[str]], tmp_path: Path
) -> None:
    root, paths = folder
    ckpt = make_checkpoint("cifar_resnet18", width=0.0625, in_channels=3)
    npy, st = tmp_path / "f.npy", tmp_path / "f.safetensors"
    embed_folder(ckpt, root, npy, workers=0)
    record = embed_folder(ckpt, root, st, workers=0)
    feats, listed = load_embeddings(st)
    assert feats.shape == (5, 32) and listed == paths == record["paths"]
    np.testing.assert_array_equal(feats, load_embeddings(npy)[0])
    from safetensors import safe_open

    with safe_open(str(st), "pt") as f:
        assert json.loads(f.metadata()["paths"]) == paths


def test_embed_errors(tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    base = ["embed", "--checkpoint", str(tiny_run), "--images"]
    assert main([*base, str(tmp_path / "empty"), "--output", str(tmp_path / "e.npy")]) == 2
    assert "no images" in capsys.readouterr().err
    assert main([*base, str(tmp_path), "--output", str(tmp_path / "e.csv")]) == 2
    assert "must end with .npy or .safetensors" in capsys.readouterr().err
