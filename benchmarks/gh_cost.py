"""What GH costs: one GH forward+backward against NT-Xent and a whole training step, each
surrogate-label allocation (balanced, relaxed, partial; alone and with a queue of past batches;
the kNN-affinity pass over the batch or over a memory of every sample; the inverse-prior
weighting of the loss) as a share of that step,
and our Sinkhorn against POT's, measured side by side in one run.

    python benchmarks/gh_cost.py [--batch 512 --anchors 100 --dim 128 --iters 300 --queue 0 8]
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import ot
import torch

from _common import median_seconds, record
from geoharmony.gh import GHLoss, uniform_structure
from geoharmony.gh.allocation import ALLOCATIONS, NeighbourMemory
from geoharmony.gh.sinkhorn import sinkhorn
from geoharmony.losses import nt_xent
from geoharmony.models import Projector, cifar_resnet18


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--anchors", type=int, default=100)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--width", type=float, default=0.25, help="ResNet width of the step")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--queue", type=int, nargs="+", default=[0, 8], help="batches queued")
    parser.add_argument(
        "--memory", type=int, nargs="+", default=[2478, 50000], help="samples remembered"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    b, k, d = args.batch, args.anchors, args.dim

    gh = GHLoss(uniform_structure(k, d), num_iters=args.iters)
    z1 = torch.randn(b, d, requires_grad=True)
    z2 = torch.randn(b, d, requires_grad=True)

    def gh_step() -> None:
        gh(z1, z2).backward()

    def ntxent_step() -> None:
        nt_xent(z1, z2).backward()

    backbone = cifar_resnet18(width=args.width).to(memory_format=torch.channels_last)
    projector = Projector(backbone.out_dim, 512, d)
    params = [*backbone.parameters(), *projector.parameters()]
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    images = torch.randn(2 * b, 3, 32, 32).contiguous(memory_format=torch.channels_last)

    def train_step(with_gh: bool) -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            za, zb = projector(backbone(images)).chunk(2)
            loss = nt_xent(za, zb)
            if with_gh:
                loss = loss + gh(za, zb)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    logits = gh.logits(torch.randn(b, d)).detach()
    prior = torch.full((k,), 1.0 / k)
    a_np, b_np = np.full(b, 1.0 / b), prior.double().numpy()
    cost = (-logits).double().numpy()

    timings = {
        "gh_forward_backward": median_seconds(gh_step, args.repeats),
        "ntxent_forward_backward": median_seconds(ntxent_step, args.repeats),
        "train_step_simclr": median_seconds(lambda: train_step(False), max(3, args.repeats // 3)),
        "train_step_simclr_gh": median_seconds(lambda: train_step(True), max(3, args.repeats // 3)),
        "sinkhorn_ours_auto_float32": median_seconds(
            lambda: sinkhorn(logits, prior, num_iters=args.iters), args.repeats
        ),
        "sinkhorn_ours_log_float32": median_seconds(
            lambda: sinkhorn(logits, prior, num_iters=args.iters, mode="log"), args.repeats
        ),
        "sinkhorn_ours_log_float64": median_seconds(
            lambda: sinkhorn(logits.double(), prior, num_iters=args.iters, mode="log"), args.repeats
        ),
        "sinkhorn_pot_log_float64": median_seconds(
            lambda: ot.bregman.sinkhorn_log(
                a_np, b_np, cost, reg=0.05, numItermax=args.iters, stopThr=0.0
            ),
            max(3, args.repeats // 3),
        ),
        "sinkhorn_pot_plain_float64": median_seconds(
            lambda: ot.sinkhorn(a_np, b_np, cost, reg=0.05, numItermax=args.iters, stopThr=0.0),
            args.repeats,
        ),
    }
    step = timings["train_step_simclr"]
    for kind in ALLOCATIONS:
        allocating = GHLoss(uniform_structure(k, d), num_iters=args.iters, allocation=kind)
        allocating.rho = 0.5  # partial: half the mass on the real anchors
        for queued in args.queue:
            history = torch.rand(2, queued * b, k) * 2 - 1 if queued else None

            def gh_allocation_step(gh: GHLoss = allocating, rows=history) -> None:
                gh.compute(z1, z2, prior, history=rows).loss.backward()

            timings[f"gh_{kind}_queue{queued}"] = median_seconds(gh_allocation_step, args.repeats)
    # The inverse-prior weighting of the loss terms: a [B, K] division and a batch mean.
    weighted = GHLoss(
        uniform_structure(k, d), num_iters=args.iters, target_weighting="inverse_prior"
    )
    timings["gh_balanced_weighted_queue0"] = median_seconds(
        lambda: weighted(z1, z2, prior).backward(), args.repeats
    )
    # The kNN affinity: a second pass over the batch's rows, or a bias from every sample's
    # remembered targets (its cost grows with the data set: N = the study's 2,478 and 50,000).
    batch_pass = GHLoss(uniform_structure(k, d), num_iters=args.iters, allocation="relaxed")
    batch_pass.allocator = dataclasses.replace(batch_pass.allocator, affinity=1.0)
    timings["gh_relaxed_affinity_batch_queue0"] = median_seconds(
        lambda: batch_pass(z1, z2, prior).backward(), args.repeats
    )
    relaxed = GHLoss(uniform_structure(k, d), num_iters=args.iters, allocation="relaxed")
    for n in args.memory:
        memory = NeighbourMemory(n, k)
        memory.store(torch.arange(n), torch.rand(n, k) * 2 - 1, torch.rand(n, k))

        def memory_step(memory: NeighbourMemory = memory) -> None:
            indices = torch.arange(b)
            current = torch.stack([relaxed.logits(z1.detach()), relaxed.logits(z2.detach())])
            bias = memory.neighbour_targets(current, indices)
            out = relaxed.compute(z1, z2, prior, bias=bias)
            out.loss.backward()
            memory.store(indices, out.logits1.detach(), out.targets1)

        timings[f"gh_relaxed_affinity_memory{n}_queue0"] = median_seconds(memory_step, args.repeats)
    ratios = {
        **{
            f"{name}_share_of_step": seconds / step
            for name, seconds in timings.items()
            if name.startswith("gh_") and "_queue" in name
        },
        "gh_over_ntxent": timings["gh_forward_backward"] / timings["ntxent_forward_backward"],
        "gh_share_of_step": timings["gh_forward_backward"] / timings["train_step_simclr"],
        "step_gh_over_step": timings["train_step_simclr_gh"] / timings["train_step_simclr"],
        "pot_log_over_ours_auto": timings["sinkhorn_pot_log_float64"]
        / timings["sinkhorn_ours_auto_float32"],
    }
    width = max(map(len, timings))
    for name, seconds in timings.items():
        print(f"{name:<{width}}  {seconds * 1e3:9.2f} ms")
    for name, value in ratios.items():
        print(f"{name:<{width}}  {value:9.3f}")
    settings = {
        "batch": b,
        "anchors": k,
        "dim": d,
        "iters": args.iters,
        "width": args.width,
        "queue": args.queue,
        "memory": args.memory,
        "threads": torch.get_num_threads(),
    }
    path = record("gh_cost", {"settings": settings, "seconds": timings, "ratios": ratios})
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
