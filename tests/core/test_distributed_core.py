"""Real 2-process gloo runs of the core ops equal single-process results on the gathered batch."""

import sys
from pathlib import Path

import torch

from geoharmony.gh import GHLoss
from geoharmony.gh.allocation import partial, relaxed
from geoharmony.gh.anchors import simplex_etf
from geoharmony.gh.priors import BankPrior, StreamingPrior
from geoharmony.gh.sinkhorn import sinkhorn
from geoharmony.losses import focal_nt_xent, nt_xent

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
from dist_core_data import full_batch  # noqa: E402

WORLD = 2


def _single_loss_and_grads(fn, data):
    z1 = data["z1"].clone().requires_grad_(True)
    z2 = data["z2"].clone().requires_grad_(True)
    loss = fn(z1, z2)
    loss.backward()
    return loss.detach(), z1.grad, z2.grad


def test_two_gloo_ranks_equal_single_process(tmp_path, run_distributed) -> None:
    run_distributed(HERE / "dist_core_worker.py", WORLD, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]
    data = full_batch()
    half = data["b"] // WORLD
    shards = [slice(r * half, (r + 1) * half) for r in range(WORLD)]

    gh = GHLoss(simplex_etf(data["k"], data["d"])).double()
    # Weights scaled to mean 1 over the global batch, as one process scales them.
    weighted = GHLoss(simplex_etf(data["k"], data["d"]), target_weighting="inverse_prior").double()
    singles = {
        "gh_weighted": _single_loss_and_grads(lambda a, b: weighted(a, b, data["prior"]), data),
        "nt_xent": _single_loss_and_grads(lambda a, b: nt_xent(a, b, 0.2), data),
        "focal": _single_loss_and_grads(lambda a, b: focal_nt_xent(a, b, 0.2), data),
        "gh": _single_loss_and_grads(lambda a, b: gh(a, b, data["prior"]), data),
    }
    for name, (loss, g1, g2) in singles.items():
        # Per-rank losses average to the global loss; each rank's gradient is WORLD x the global
        # gradient of its rows (DDP divides by WORLD when it averages parameter gradients).
        mean_loss = sum(r[name][0] for r in ranks) / WORLD
        torch.testing.assert_close(mean_loss, loss, msg=name)
        for r, shard in enumerate(shards):
            torch.testing.assert_close(ranks[r][name][1] / WORLD, g1[shard], msg=name)
            torch.testing.assert_close(ranks[r][name][2] / WORLD, g2[shard], msg=name)

    targets = gh.compute(data["z1"], data["z2"], data["prior"])
    for mode in ("plain", "log"):
        plan = sinkhorn(data["logits"], data["prior"], mode=mode)
        for r, shard in enumerate(shards):
            torch.testing.assert_close(ranks[r][f"sinkhorn_{mode}"], plan[shard])
        plan = relaxed(data["logits"], data["prior"], tau=0.3, mode=mode)
        split = partial(data["logits"], 0.6, data["prior"], tau=0.3, mode=mode)
        for r, shard in enumerate(shards):
            torch.testing.assert_close(ranks[r][f"relaxed_{mode}"], plan[shard])
            for got, want in zip(ranks[r][f"partial_{mode}"], split, strict=True):
                torch.testing.assert_close(got, want[shard])  # plan, mass, targets
    for r, shard in enumerate(shards):
        torch.testing.assert_close(ranks[r]["gh"][3], targets.targets1[shard])
        torch.testing.assert_close(ranks[r]["gh"][4], targets.targets2[shard])

    bank = BankPrior(data["b"], data["k"], warmup_momentum=0.5)
    stream = StreamingPrior(data["k"], momentum=0.5)
    for est in (bank, stream):
        est.update(torch.arange(data["b"]), data["logits"].float())
        est.refresh()
    for r in range(WORLD):
        for key, value in bank.state_dict().items():
            assert torch.equal(ranks[r]["bank"][key], value), key
        torch.testing.assert_close(ranks[r]["stream"], stream.prior())
