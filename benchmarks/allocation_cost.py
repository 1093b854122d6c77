"""What each surrogate-label allocation costs per call: balanced (the paper's), relaxed and
partial, on the batch alone and with a queue of past batches, both views in one batched call.

    python benchmarks/allocation_cost.py [--batch 512 --anchors 100 --iters 300 --queue 0 8]
                                         [--threads 1] [--repeats 5]

Each call is what a training step would run: the queue's rows joined to the batch, the
allocation (auto mode, and the log domain for comparison), the current rows' targets, the push.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
from torch import Tensor

from _common import median_seconds, record
from geoharmony.gh import GHLoss, uniform_structure
from geoharmony.gh.allocation import AllocationQueue, partial, relaxed
from geoharmony.gh.sinkhorn import sinkhorn


def allocations(iters: int) -> dict[str, Callable[..., Tensor]]:
    return {
        "balanced": lambda x, mode: sinkhorn(x, num_iters=iters, mode=mode),
        "relaxed": lambda x, mode: relaxed(x, tau=0.5, num_iters=iters, mode=mode),
        "partial": lambda x, mode: partial(x, 0.5, tau=0.5, num_iters=iters, mode=mode).targets,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--anchors", type=int, default=100)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--queue", type=int, nargs="+", default=[0, 8], help="batches queued")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (1: as runs)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    b, k, d = args.batch, args.anchors, 128  # d only shapes the embeddings behind the logits
    gh = GHLoss(uniform_structure(k, d))

    def view_logits() -> Tensor:  # [2, B, K] geometric logits of two views, as GH computes them
        return torch.stack([gh.logits(torch.randn(b, d)) for _ in range(2)]).detach()

    timings: dict[str, float] = {}
    for queued in args.queue:
        queue = AllocationQueue(queued, b, k)
        for _ in range(queued):
            queue.push(view_logits())
        logits = view_logits()
        for name, allocate in allocations(args.iters).items():
            for mode in ("auto", "log"):

                def call(allocate=allocate, mode=mode, queue=queue, logits=logits) -> None:
                    queue.targets(allocate(queue.with_history(logits), mode))
                    queue.push(logits)

                key = f"{name}_queue{queued}_{mode}"
                timings[key] = median_seconds(call, args.repeats, warmup=1)
                print(f"{key:<28}  {timings[key] * 1e3:9.2f} ms", flush=True)
    ratios = {
        f"{name}_over_balanced_queue{queued}_auto": timings[f"{name}_queue{queued}_auto"]
        / timings[f"balanced_queue{queued}_auto"]
        for queued in args.queue
        for name in ("relaxed", "partial")
    }
    for name, value in ratios.items():
        print(f"{name:<36}  {value:9.3f}")
    settings = {
        "batch": b,
        "anchors": k,
        "views": 2,
        "iters": args.iters,
        "queue": args.queue,
        "repeats": args.repeats,
        "tau": 0.5,
        "rho": 0.5,
    }
    path = record("allocation_cost", {"settings": settings, "seconds": timings, "ratios": ratios})
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
