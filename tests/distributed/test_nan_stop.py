"""A NaN loss on one rank stops every rank (none is left waiting in an all-reduce)."""

from pathlib import Path

import torch

HERE = Path(__file__).parent


def test_non_finite_loss_on_one_rank_is_seen_by_all(tmp_path, run_distributed) -> None:
    run_distributed(HERE / "dist_nan_worker.py", 2, str(tmp_path))
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert [r["finite"] for r in results] == [True, True]
    assert [r["poisoned"] for r in results] == [False, False]
