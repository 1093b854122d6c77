"""The quality study's probes of a finished run: the held-out validation set is disjoint from
pretraining and the probe set, and the held-out kNN block is the same whether written with the
few-shot probes or added to a run probed before it existed, as is the sized kNN block."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.quality import probes  # noqa: E402

from tiny_runs import SMOKE, TINY, needs_fashion_mnist  # noqa: E402


def test_validation_set_avoids_used_images_and_is_balanced() -> None:
    labels = np.repeat(np.arange(3), 50)
    used = np.arange(0, 150, 2)  # every even image
    idx = probes.validation_indices(labels, used, seed=3, shots=20)
    assert len(idx) == 60 and not np.intersect1d(idx, used).size
    assert np.bincount(labels[idx]).tolist() == [20, 20, 20]
    assert np.array_equal(idx, probes.validation_indices(labels, used, seed=3, shots=20))
    assert not np.array_equal(idx, probes.validation_indices(labels, used, seed=4, shots=20))
    with pytest.raises(ValueError, match="class 0 has 25 selectable images"):
        probes.validation_indices(labels, used, seed=3, shots=26)


@needs_fashion_mnist
def test_held_out_block_written_or_added_is_the_same(tmp_path: Path) -> None:
    from geoharmony.cli import main

    run = tmp_path / "run"
    args = ["pretrain", "--config", SMOKE, "--output", str(run), "--no-eval", *TINY]
    assert main([*args, "optim.epochs=1"]) == 0
    written = probes.run_fewshot(run, shots=(5,), draws=1)["validation"]
    assert written["images"] == 10 * probes.VALIDATION_SHOTS
    assert len(written["knn"]["per_class"]) == 10
    assert 0.0 <= written["knn"]["avg"] <= 100.0

    # A run probed before the held-out and sized kNN blocks existed gets the same blocks added.
    path = run / probes.FEWSHOT_FILE
    whole = json.loads(path.read_text())
    old = {k: v for k, v in whole.items() if k not in ("validation", "knn_k")}
    path.write_text(json.dumps(old))
    added = probes.add_missing_blocks(run)
    assert added["validation"]["knn"] == written["knn"] and added["knn_k"] == whole["knn_k"]
    kept = json.loads(path.read_text())
    assert kept["shots"] == old["shots"] and kept["validation"]["knn"] == written["knn"]
    assert probes.add_missing_blocks(run) == {}  # nothing left to add

    # Probes of an older checkpoint than the newest are refused, not mixed with new features.
    del kept["knn_k"]
    kept["checkpoint"] = str(run / "checkpoints" / "epoch_00000.ckpt")
    path.write_text(json.dumps(kept))
    with pytest.raises(ValueError, match="rerun the few-shot probes"):
        probes.add_missing_blocks(run)


@needs_fashion_mnist
def test_sized_knn_block_equals_evaluate_at_that_k(tmp_path: Path) -> None:
    from geoharmony.cli import main

    run = tmp_path / "run"
    args = ["pretrain", "--config", SMOKE, "--output", str(run), "--no-eval", *TINY]
    assert main([*args, "optim.epochs=1"]) == 0  # the run's own kNN keeps k = 200
    sized = probes.run_fewshot(run, shots=(5,), draws=1)["knn_k"]
    k = probes.SIZED_KNN_K
    assert list(sized) == [str(k)]
    reference = tmp_path / "evaluated.json"
    evaluate = ["evaluate", "--checkpoint", str(run), "--output", str(reference)]
    assert main([*evaluate, f"eval.knn_k={k}"]) == 0
    knn = json.loads(reference.read_text())["probes"]["knn"]
    assert sized[str(k)]["per_class"] == knn["per_class"] and sized[str(k)]["avg"] == knn["avg"]
