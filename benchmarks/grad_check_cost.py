"""Cost of the trainer's per-step gradient check (``non_finite_gradients``) against the
forward+backward pass it guards, side by side on the CPU-scale backbones.

    python benchmarks/grad_check_cost.py [--repeats 10] [--threads 1]
"""

from __future__ import annotations

import argparse

import torch

from _common import median_seconds, record
from geoharmony.engine.trainer import non_finite_gradients
from geoharmony.models.resnet import cifar_resnet18

WIDTHS = (0.25, 1.0)  # the study's width, and full width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1, help="1: as the quality study runs")
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for width in WIDTHS:
        net = cifar_resnet18(width=width, in_channels=1)
        images = torch.randn(args.batch_size, 1, 28, 28)

        def step(net: torch.nn.Module = net, images: torch.Tensor = images) -> None:
            net.zero_grad(set_to_none=True)
            net(images).square().mean().backward()

        step_s = median_seconds(step, max(args.repeats // 3, 3))
        check_s = median_seconds(lambda net=net: non_finite_gradients(net), args.repeats * 10)
        rows.append(
            {
                "width": width,
                "parameters": sum(p.numel() for p in net.parameters()),
                "forward_backward_ms": round(step_s * 1e3, 2),
                "gradient_check_ms": round(check_s * 1e3, 3),
                "check_share_percent": round(100 * check_s / step_s, 3),
            }
        )
        print(rows[-1], flush=True)
    path = record("grad_check_cost", {"batch_size": args.batch_size, "rows": rows})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
