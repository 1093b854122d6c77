"""SDCLR (Jiang et al., "Self-Damaging Contrastive Learning", ICML 2021): contrast a network with
its magnitude-pruned self.

Following the official code (VITA-Group/SDCLR ``prune_simCLR.py``, ``mask.py``,
``resnet_prune_multibn.py``; and its use in MediaBrain-SJTU/Geometric-Harmonization
``train_cifar.py``):

* one *global* magnitude threshold over every backbone convolution weight (stem, blocks and
  shortcut convolutions; not the projector's linear layers) prunes ``ceil(ratio * n)`` of the
  ``n`` weights; the mask is recomputed from the current weights at the start of every epoch;
* the pruned branch shares every weight with the dense one (``weight * mask``), so the dense
  weights receive gradients from both branches, and pruned-away weights only from the dense one;
* each branch has its own BatchNorm layers in the backbone *and* the projector: separate running
  statistics and separate affine parameters, as the official ``batch_norm_multiple`` keeps one
  full ``BatchNorm`` per branch (``bn_names = ["nonprune", "prune"]``);
* NT-Xent between the dense network's view-1 projections and the pruned network's view-2
  projections, each branch normalising its own batch of ``B`` images.

One pass instead of the official two: the official step back-propagates
``L(z1, sg(z2))`` through the dense pass and ``L(sg(z1), z2)`` through the pruned pass; for a
loss ``L(z1, z2)`` the sum of those two partial gradients is the total gradient of
``L(z1, z2)``, which one pass with both branches attached computes. The same holds for +GH: the
official two passes add ``GH(t_dense, sg(t_pruned))`` and ``GH(sg(t_dense), t_pruned)``, i.e. each
branch's predictions supervised by the Sinkhorn targets of the other branch's detached output,
which is exactly the swapped cross-entropy of the shared :class:`~geoharmony.gh.GHTerm`
evaluated on ``(z_dense, z_pruned)`` (targets never carry gradient). The prior is updated with the
dense view-1 logits, as the official ``feat = features_1``. One difference that changes no
gradient: the official pruned forward runs twice per step, so its BatchNorm running statistics
take two momentum updates per step; here they take one.

Evaluation features come from the dense network with its own BatchNorm (official: prune flag off).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from geoharmony.config import Config
from geoharmony.methods.base import DataInfo
from geoharmony.methods.registry import register_method
from geoharmony.methods.simclr import SimCLR

__all__ = ["SDCLR", "SDCLROptions", "magnitude_mask"]


@dataclass
class SDCLROptions:
    """``method.sdclr``."""

    prune_ratio: float = 0.9  # share of the backbone's conv weights pruned (global magnitude)

    def problems(self, section: str = "method.sdclr") -> list[str]:
        """Values out of range, one message each naming the key."""
        if 0.0 <= self.prune_ratio < 1.0:
            return []
        return [f"{section}.prune_ratio={self.prune_ratio} must be in [0, 1)"]


def magnitude_mask(weights: Sequence[Tensor], ratio: float) -> Tensor:
    """Global magnitude pruning mask over several weight tensors.

    The ``ceil(ratio * n)`` weights of smallest magnitude among all ``n`` entries are pruned (the
    official rule: ``|w| >= `` the value at that rank of the sorted magnitudes); ties are broken
    by position so the count is exact.

    Args:
        weights: tensors of any shapes (flattened and concatenated in order).
        ratio: fraction to prune, in ``[0, 1)``.

    Returns:
        bool ``[n]``, True = kept.
    """
    flat = torch.cat([w.detach().reshape(-1) for w in weights]).abs().float()
    n = flat.numel()
    count = min(n, math.ceil(round(ratio * n, 6)))
    keep = torch.ones(n, dtype=torch.bool, device=flat.device)
    if count > 0:
        keep[torch.argsort(flat, stable=True)[:count]] = False
    return keep


@register_method("sdclr")
class SDCLR(SimCLR):
    """Dense network vs. its magnitude-pruned self (shared weights, separate BatchNorms), with
    SimCLR's NT-Xent between the dense view-1 and pruned view-2 projections.

    Buffers (checkpointed): ``prune_mask`` bool ``[P]`` over the ``P`` backbone conv weights in
    module order (True = kept), and the pruned branch's BatchNorm statistics in
    ``pruned_norms``.
    """

    Options = SDCLROptions
    display_name = "SDCLR"
    prune_mask: Tensor

    def __init__(self, cfg: Config, data: DataInfo, distributed: bool = False) -> None:
        super().__init__(cfg, data, distributed)
        self.prune_ratio = self.options.prune_ratio
        convs = [(name, m) for name, m in self.backbone.named_modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ValueError(f"backbone {cfg.model.backbone!r} has no convolutions to prune")
        self._conv_weights = [f"{name}.weight" for name, _ in convs]
        self._conv_shapes = [m.weight.shape for _, m in convs]
        total = sum(m.weight.numel() for _, m in convs)
        self.register_buffer("prune_mask", torch.ones(total, dtype=torch.bool))
        # The pruned branch's BatchNorms: copies of the dense ones (same initial values), keyed
        # by their module path with "." -> "_" (ModuleDict keys cannot contain dots).
        self._norm_paths: dict[str, list[tuple[str, str]]] = {"backbone": [], "projector": []}
        norms: dict[str, nn.Module] = {}
        for part in ("backbone", "projector"):
            for name, m in getattr(self, part).named_modules():
                if isinstance(m, _BatchNorm):
                    key = f"{part}_{name}".replace(".", "_")
                    if key in norms:
                        raise ValueError(f"BatchNorm key collision: {key}")
                    norms[key] = copy.deepcopy(m)
                    self._norm_paths[part].append((name, key))
        self.pruned_norms = nn.ModuleDict(norms)
        self.update_mask()

    # ----- the pruned network ---------------------------------------------------------------
    @torch.no_grad()
    def update_mask(self) -> None:
        """Recompute ``prune_mask`` from the current dense conv weights."""
        weights = [self.backbone.get_parameter(name) for name in self._conv_weights]
        self.prune_mask.copy_(magnitude_mask(weights, self.prune_ratio))

    def conv_masks(self) -> dict[str, Tensor]:
        """``{backbone parameter name: bool mask of its shape}`` (views of ``prune_mask``)."""
        sizes = [math.prod(shape) for shape in self._conv_shapes]
        chunks = torch.split(self.prune_mask, sizes)
        return {
            name: chunk.view(shape)
            for name, chunk, shape in zip(
                self._conv_weights, chunks, self._conv_shapes, strict=True
            )
        }

    def _norm_state(self, part: str) -> dict[str, Tensor]:
        """Parameters and buffers of the pruned branch's BatchNorms, named as in ``part``."""
        state: dict[str, Tensor] = {}
        for name, key in self._norm_paths[part]:
            norm = self.pruned_norms[key]
            for attr, value in [*norm.named_parameters(), *norm.named_buffers()]:
                state[f"{name}.{attr}"] = value
        return state

    def embed_pruned(self, views: Tensor) -> Tensor:
        """``[N, C, H, W]`` images -> ``[N, d]`` projections of the pruned network.

        Convolutions use ``weight * mask`` (gradients reach the dense weights through the mask);
        every BatchNorm is the pruned branch's own, whose running statistics this updates in
        training mode.
        """
        backbone = self._norm_state("backbone")
        for name, mask in self.conv_masks().items():
            weight = self.backbone.get_parameter(name)
            backbone[name] = weight * mask.to(weight.dtype)
        h = functional_call(self.backbone, backbone, (views,))
        return functional_call(self.projector, self._norm_state("projector"), (h,))

    # ----- the step ---------------------------------------------------------------------------
    def embed_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
        """Dense network on ``view1``, pruned network on ``view2`` (``[B, C, H, W]`` each).

        With GH the base step's swapped cross-entropy on (dense, pruned) supervises each branch
        with the other branch's detached targets; see the module docstring.
        """
        return self.embed(view1), self.embed_pruned(view2)

    def on_epoch_start(self, epoch: int) -> None:
        super().on_epoch_start(epoch)
        self.update_mask()
