"""Projection heads."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Projector"]


class Projector(nn.Module):
    """MLP projector ending in BatchNorm1d, as in the GH/BCL/SDCLR code bases.

    Layout for ``num_layers = L``: ``(L - 1)`` x [Linear(no bias) -> BatchNorm1d -> ReLU], then
    Linear(no bias) -> BatchNorm1d. The output is *not* L2-normalised (GH consumes it raw; the
    contrastive losses normalise it themselves). Linear biases are dropped because every Linear
    is followed by a BatchNorm whose shift makes a bias redundant.

    ``forward(h [B, in_dim]) -> z [B, out_dim]``. In training mode BatchNorm needs B > 1.

    Args:
        in_dim: backbone feature dimension (``backbone.out_dim``).
        hidden_dim: width of the hidden layers; ``None`` means ``in_dim`` (the official heads use
            512-512-128 for ResNet-18 and 2048-2048-128 for ResNet-50).
        out_dim: output dimension d.
        num_layers: number of Linear layers (>= 1).
        seed: if given, Linear weights are drawn from a seeded generator instead of the global RNG.
    """

    def __init__(
        self,
        in_dim: int,
        hidden_dim: int | None = 512,
        out_dim: int = 128,
        num_layers: int = 2,
        *,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        hidden = in_dim if hidden_dim is None else hidden_dim
        if min(in_dim, hidden, out_dim) < 1:
            raise ValueError(
                f"dimensions must be positive, got in_dim={in_dim}, hidden_dim={hidden}, "
                f"out_dim={out_dim}"
            )
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden, out_dim
        modules: list[nn.Module] = []
        dim = in_dim
        for _ in range(num_layers - 1):
            modules += [nn.Linear(dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU()]
            dim = hidden
        modules += [nn.Linear(dim, out_dim, bias=False), nn.BatchNorm1d(out_dim)]
        self.layers = nn.Sequential(*modules)
        if seed is not None:
            self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int) -> None:
        """Redraw Linear weights with PyTorch's default init from a seeded generator."""
        gen = torch.Generator().manual_seed(seed)
        for m in self.layers:
            if isinstance(m, nn.Linear):
                # Same distribution as nn.Linear.reset_parameters (Kaiming-uniform, a = sqrt(5)).
                nn.init.kaiming_uniform_(m.weight, a=5**0.5, generator=gen)

    def forward(self, h: Tensor) -> Tensor:
        """``[B, in_dim] -> [B, out_dim]``."""
        return self.layers(h)
