"""Batch normalisation over the global batch of all data-parallel ranks, on any device.

``torch.nn.SyncBatchNorm`` only runs on CUDA; :class:`GlobalBatchNorm` computes the same statistics
with differentiable all-reduces over gloo as well, so CPU data-parallel runs can match a single
process with the whole batch. :func:`convert_sync_batchnorm` picks torch's layer on CUDA.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from geoharmony import parallel

__all__ = ["GlobalBatchNorm", "convert_sync_batchnorm"]


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm (1d or 2d input) whose training statistics span every rank's batch.

    Per channel, differentiable all-reduces of each rank's count and sum, then of its centred
    squares, give the global mean and biased variance used for normalisation; the running
    statistics take the unbiased variance as ``nn.BatchNorm`` does. Outside training, or in a single
    process, it is ordinary batch normalisation.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() not in (2, 3, 4):
            raise ValueError(f"expected 2D, 3D or 4D input, got {input.dim()}D")

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if not (self.training and parallel.is_distributed()):
            return super().forward(input)
        from torch.distributed.nn.functional import all_reduce

        dims = [d for d in range(input.dim()) if d != 1]
        x = input.to(torch.promote_types(input.dtype, torch.float32))  # float64 stays float64
        channels = x.shape[1]
        # Two passes (mean, then centred squares) as torch's BatchNorm: E[x^2] - E[x]^2 in
        # float32 loses digits when the mean is large against the spread.
        count = x.new_tensor([float(x.numel() // channels)])
        sums = all_reduce(torch.cat([x.sum(dim=dims), count]))
        total = sums[-1]
        mean = sums[:channels] / total
        shape = [1, channels] + [1] * (input.dim() - 2)
        centred = x - mean.view(shape)
        var = all_reduce((centred * centred).sum(dim=dims)) / total
        if self.track_running_stats and self.running_mean is not None:
            assert self.running_var is not None and self.num_batches_tracked is not None
            with torch.no_grad():
                momentum = 0.1 if self.momentum is None else self.momentum
                unbiased = var * total / (total - 1).clamp_min(1)
                self.running_mean.lerp_(mean.to(self.running_mean), momentum)
                self.running_var.lerp_(unbiased.to(self.running_var), momentum)
                self.num_batches_tracked.add_(1)
        out = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(input.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm layer by a global-batch one (torch's on CUDA, ours elsewhere)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert(module)


def _convert(module: nn.Module) -> nn.Module:
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, GlobalBatchNorm
    ):
        replacement = GlobalBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        replacement.load_state_dict(module.state_dict())
        replacement.train(module.training)
        tensors = list(module.state_dict().values())
        # The layer's device and floating dtype (a float64 model stays float64).
        return replacement.to(tensors[0].device, tensors[0].dtype) if tensors else replacement
    for name, child in module.named_children():
        module.add_module(name, _convert(child))
    return module
