"""Run by test_distributed_core on each gloo rank: core ops on this rank's shard of a batch."""

import sys

import torch
import torch.distributed as dist
from dist_core_data import full_batch

from geoharmony.gh import GHLoss
from geoharmony.gh.allocation import partial, relaxed
from geoharmony.gh.anchors import simplex_etf
from geoharmony.gh.priors import BankPrior, StreamingPrior
from geoharmony.gh.sinkhorn import sinkhorn
from geoharmony.losses import focal_nt_xent, nt_xent


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    data = full_batch()
    shard = slice(rank * data["b"] // world, (rank + 1) * data["b"] // world)
    results = {}
    for name, fn in (("nt_xent", nt_xent), ("focal", focal_nt_xent)):
        z1 = data["z1"][shard].clone().requires_grad_(True)
        z2 = data["z2"][shard].clone().requires_grad_(True)
        loss = fn(z1, z2, 0.2, gather=True)
        loss.backward()
        results[name] = (loss.detach(), z1.grad, z2.grad)
    gh = GHLoss(simplex_etf(data["k"], data["d"]), distributed=True).double()
    z1 = data["z1"][shard].clone().requires_grad_(True)
    z2 = data["z2"][shard].clone().requires_grad_(True)
    out = gh.compute(z1, z2, data["prior"])
    out.loss.backward()
    results["gh"] = (out.loss.detach(), z1.grad, z2.grad, out.targets1, out.targets2)
    weighted = GHLoss(
        simplex_etf(data["k"], data["d"]), distributed=True, target_weighting="inverse_prior"
    ).double()
    z1 = data["z1"][shard].clone().requires_grad_(True)
    z2 = data["z2"][shard].clone().requires_grad_(True)
    loss = weighted(z1, z2, data["prior"])
    loss.backward()
    results["gh_weighted"] = (loss.detach(), z1.grad, z2.grad)
    for mode in ("plain", "log"):
        results[f"sinkhorn_{mode}"] = sinkhorn(
            data["logits"][shard], data["prior"], mode=mode, distributed=True
        )
        results[f"relaxed_{mode}"] = relaxed(
            data["logits"][shard], data["prior"], tau=0.3, mode=mode, distributed=True
        )
        results[f"partial_{mode}"] = partial(
            data["logits"][shard], 0.6, data["prior"], tau=0.3, mode=mode, distributed=True
        )
    bank = BankPrior(data["b"], data["k"], warmup_momentum=0.5, distributed=True)
    stream = StreamingPrior(data["k"], momentum=0.5, distributed=True)
    local_index = torch.arange(data["b"])[shard]
    for est in (bank, stream):
        est.update(local_index, data["logits"][shard].float())
        est.refresh()
    results["bank"] = bank.state_dict()
    results["stream"] = stream.prior()
    torch.save(results, f"{out_dir}/rank{rank}.pt")
    # Nobody tears down gloo's connections while a peer still uses them.
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
