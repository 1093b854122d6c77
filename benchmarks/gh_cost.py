"""What GH costs: one GH forward+backward against NT-Xent and a whole training step, each
surrogate-label allocation (balanced, relaxed, partial; the inverse-prior weighting of the loss)
as a share of that step, and our Sinkhorn against POT's, measured side by side in one run.

    python benchmarks/gh_cost.py [--batch 512 --anchors 100 --dim 128 --iters 300]
"""

from __future__ import annotations

import argparse

import numpy as np
import ot
import torch

from _common import median_seconds, record
from geoharmony.gh import AllocationOptions, GHLoss, uniform_structure
from geoharmony.gh.options import ALLOCATIONS
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
    args = parser.parse_args()
    torch.manual_seed(0)
    b, k, d = args.batch, args.anchors, args.dim

    gh = GHLoss(uniform_structure(k, d), allocation=AllocationOptions(iterations=args.iters))
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
        options = AllocationOptions(name=kind, iterations=args.iters)
        allocating = GHLoss(uniform_structure(k, d), allocation=options)
        allocating.rho = 0.5  # partial: half the mass on the real anchors

        def gh_allocation_step(gh: GHLoss = allocating) -> None:
            gh(z1, z2, prior).backward()

        timings[f"gh_{kind}"] = median_seconds(gh_allocation_step, args.repeats)
    # The inverse-prior weighting of the loss terms: a [B, K] division and a batch mean.
    weighted = GHLoss(
        uniform_structure(k, d),
        allocation=AllocationOptions(iterations=args.iters),
        target_weighting="inverse_prior",
    )
    timings["gh_balanced_weighted"] = median_seconds(
        lambda: weighted(z1, z2, prior).backward(), args.repeats
    )
    ratios = {
        **{
            f"{name}_share_of_step": seconds / step
            for name, seconds in timings.items()
            if name.startswith(("gh_balanced", "gh_relaxed", "gh_partial"))
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
        "threads": torch.get_num_threads(),
    }
    path = record("gh_cost", {"settings": settings, "seconds": timings, "ratios": ratios})
    print(f"recorded in {path}")


if __name__ == "__main__":
    main()
