"""Run by test_view_batches_ddp on each gloo rank: one float64 step of a method on this rank's
half of a batch, under DDP with global-batch BatchNorm; saves the parameter gradients."""

import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from geoharmony.configure import load_config
from geoharmony.methods import DataInfo, build_method
from geoharmony.models.sync_bn import convert_sync_batchnorm

UNIT = ["model.width=0.0625", "model.projector_hidden=16", "model.projector_dim=8"]
BATCH = 16


def views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    v1 = torch.randn(BATCH, 1, 28, 28, generator=g, dtype=torch.float64)
    return v1, 0.7 * torch.randn(BATCH, 1, 28, 28, generator=g, dtype=torch.float64) + 0.2


def gradients(extra: list[str], world: int = 1, rank: int = 0) -> dict[str, torch.Tensor]:
    """``{parameter: gradient}`` of one step on rank ``rank``'s share of :func:`views`."""
    method = build_method(load_config(None, [*UNIT, *extra]), DataInfo(BATCH, 1), world > 1)
    method = method.double()
    model = method
    if world > 1:
        model = DistributedDataParallel(convert_sync_batchnorm(method, torch.device("cpu")))
    rows = slice(rank * BATCH // world, (rank + 1) * BATCH // world)
    view1, view2 = views()
    model(view1[rows], view2[rows], torch.arange(BATCH)[rows], 1.0).loss.backward()
    return {n: p.grad for n, p in method.named_parameters() if p.grad is not None}


if __name__ == "__main__":
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.save(gradients(sys.argv[2:], dist.get_world_size(), rank), f"{sys.argv[1]}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()
