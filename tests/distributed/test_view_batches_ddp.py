"""Each view its own BatchNorm batch (the default) under data parallelism: 2 gloo ranks with
global-batch BatchNorm give one process's gradients exactly (float64), with and without GH."""

import sys
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from dist_views_worker import gradients  # noqa: E402

GH = ["gh.enabled=true", "gh.warmup_epochs=0", "gh.ramp_epochs=0", "gh.num_anchors=4"]


@pytest.mark.parametrize("extra", [[], GH], ids=["simclr", "simclr_gh"])
def test_per_view_batchnorm_on_two_ranks_gives_one_process_s_gradients(
    tmp_path: Path, run_distributed, extra: list[str]
) -> None:
    run_distributed(HERE / "dist_views_worker.py", 2, str(tmp_path), *extra)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    single = gradients(extra)
    assert set(single) == set(ranks[0])
    for name, grad in single.items():
        # DDP has averaged them: every rank holds the whole batch's gradient.
        torch.testing.assert_close(ranks[0][name], grad, rtol=1e-9, atol=1e-12, msg=name)
        torch.testing.assert_close(ranks[1][name], ranks[0][name], rtol=0, atol=0, msg=name)
