"""Numeric checks shared by every training loop: non-finite losses and gradients."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["NonFiniteLossError", "cpu_bf16_gradient_hint", "non_finite_gradients"]


class NonFiniteLossError(RuntimeError):
    """The loss or its gradients became NaN or infinite; the run stopped without writing a
    checkpoint."""


def non_finite_gradients(module: nn.Module) -> list[str]:
    """Names of ``module``'s parameters whose gradient holds NaN/inf (or whose norm overflows
    fp32), in registration order; one norm per parameter (~0.2% of a CPU training step,
    ``benchmarks/grad_check_cost.py``).

    Why: seen on an AMX CPU, oneDNN's bf16 weight gradient of a strided convolution over 1x1
    feature maps (an ImageNet-stem ResNet on 16-pixel images) is garbage, now and then NaN,
    while the loss is finite.
    """
    named = [(n, p.grad) for n, p in module.named_parameters() if p.grad is not None]
    if not named:
        return []
    finite = torch.isfinite(torch.stack([g.detach().float().norm() for _, g in named]))
    if bool(finite.all()):
        return []
    return [n for (n, _), ok in zip(named, finite.tolist(), strict=True) if not ok]


def cpu_bf16_gradient_hint(autocast: torch.dtype | None, device: torch.device) -> str:
    """The likely fix for non-finite gradients from a finite loss ("" if it does not apply)."""
    if autocast == torch.bfloat16 and device.type == "cpu":
        return (
            " bf16 autocast on the CPU: train.precision=fp32 avoids oneDNN's unreliable bf16"
            " gradients of strided convolutions over 1x1 feature maps."
        )
    return ""
