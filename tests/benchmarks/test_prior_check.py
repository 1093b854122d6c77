"""benchmarks/quality/prior_check.py on a real tiny +GH checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.quality.prior_check import (  # noqa: E402
    check_priors,
    density_modes,
    local_density,
    vmf_mixture,
)

from geoharmony.cli import main  # noqa: E402
from geoharmony.engine.checkpoint import list_checkpoints  # noqa: E402
from tiny_runs import SMOKE, TINY, needs_fashion_mnist  # noqa: E402

GH = ["gh.enabled=true", "gh.warmup_epochs=1", "gh.ramp_epochs=1", "gh.num_anchors=10"]


def test_vmf_mixture_recovers_two_separated_unequal_clusters() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(8)[:2]
    x = np.concatenate(
        [centres[0] + 0.05 * rng.normal(size=(90, 8)), centres[1] + 0.05 * rng.normal(size=(10, 8))]
    )
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    start = rng.integers(0, 2, size=100)  # a random start: EM must find the split itself
    labels = vmf_mixture(x, start, 2)
    assert sorted(np.bincount(labels, minlength=2).tolist()) == [10, 90]


def test_density_modes_keep_a_large_and_a_small_blob_whole_and_apart() -> None:
    # k-means into 2 would do as well here; the point is that the number of groups is found,
    # and a dense blob of 300 is one mode, not split by volume.
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(300, 8)), 10 + rng.normal(size=(40, 8))])
    labels = density_modes(x, neighbours=30)
    assert sorted(np.bincount(labels).tolist()) == [40, 300]
    assert len(set(labels[:300])) == 1


@needs_fashion_mnist
def test_local_density_ranks_an_isolated_tail_class_sparsest() -> None:
    """Two tight head classes and a tail class spread over the sphere: every tail image has
    farther neighbours than any head image, so its rank is the lowest."""
    rng = np.random.default_rng(0)
    head = [np.array([1.0, 0, 0]) + 0.01 * rng.standard_normal((20, 3)) for _ in range(2)]
    head[1][:, :2] = head[1][:, 1::-1]  # the second head class around (0, 1, 0)
    tail = np.array([[0, 0, 1.0], [0, 0, -1.0], [-1.0, 0, 0], [0, -1.0, 0]])
    x = np.concatenate([*head, tail])
    labels = np.array([0] * 20 + [1] * 20 + [2] * 4)
    # counts decide the groups: 20, 20, 4 -> thirds of 3 classes: one class each
    ranks = local_density(x, labels, [20, 20, 4], neighbours=3)
    assert ranks["few"] < 0.05 < ranks["many"]
    # 44 images: the tail's 4 take ranks 0 to 3 of 43
    assert abs(ranks["few"] - 1.5 / 43) < 1e-9


def test_check_priors_on_a_tiny_gh_run(tmp_path: Path) -> None:
    args = ["pretrain", "--config", SMOKE, "--output", str(tmp_path), "--no-eval"]
    assert main([*args, *TINY, *GH, "gh.prior=oracle"]) == 0
    record = check_priors(list_checkpoints(tmp_path / "checkpoints")[-1], num_anchors=5)
    assert record["epoch"] == 2 and 1.0 <= record["true_effective_classes"] <= 10.0
    assert len(record["estimates"]) == 9  # the retired mixture estimator is no longer one
    for name, est in record["estimates"].items():
        # Only the density modes are not told K = 5 groups.
        most = float("inf") if "not told K" in name else 5.0 + 1e-6
        assert 1.0 <= est["effective_number"] <= most and 0.0 <= est["nmi"] <= 1.0
    assignments = record["assignments"]
    assert assignments["prior"] == "oracle" and assignments["anchors"] == 10
    # The oracle prior holds the true class shares, so its effective number is the true one.
    assert abs(assignments["prior_effective_anchors"] - record["true_effective_classes"]) < 1e-4
    assert 0.0 <= assignments["few_on_many_owned_anchors"] <= 1.0
    for space in ("backbone", "projector"):
        assert set(record["local_density"][space]) == {"many", "medium", "few"}
