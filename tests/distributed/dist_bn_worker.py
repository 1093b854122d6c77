"""Run by test_sync_bn on each gloo rank: a conv+BN block on this rank's shard of a batch."""

import sys

import torch
import torch.distributed as dist

from geoharmony.models import cifar_resnet18
from geoharmony.models.sync_bn import convert_sync_batchnorm


def batch() -> torch.Tensor:
    return torch.randn(8, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 3 + 1


def model() -> torch.nn.Module:
    return cifar_resnet18(width=0.0625, seed=0)


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    net = convert_sync_batchnorm(model(), torch.device("cpu"))
    x = batch()[rank * 8 // world : (rank + 1) * 8 // world]
    out = net(x)
    (out.square().mean()).backward()
    grads = {n: p.grad for n, p in net.named_parameters()}
    torch.save(
        {"out": out.detach(), "grads": grads, "state": net.state_dict()}, f"{out_dir}/rank{rank}.pt"
    )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
