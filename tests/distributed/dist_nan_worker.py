"""Run by test_nan_stop on each gloo rank: only rank 1's loss is NaN; both must see it."""

import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist

from geoharmony.engine.trainer import Trainer


def main(out_dir: str) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    fake = SimpleNamespace(runtime=SimpleNamespace(distributed=True))
    finite = Trainer._finite_everywhere(fake, torch.tensor(1.0))  # type: ignore[arg-type]
    poisoned = torch.tensor(float("nan") if rank == 1 else 2.0)
    result = Trainer._finite_everywhere(fake, poisoned)  # type: ignore[arg-type]
    torch.save({"finite": finite, "poisoned": result}, f"{out_dir}/rank{rank}.pt")
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
