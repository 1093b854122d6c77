"""Whether a model can train in channels_last memory format on a given device.

The CPU build of PyTorch 2.14 computes convolutions with oneDNN, whose weight gradient of a
strided 1x1 convolution on a channels_last input with 2 to 7 input channels crashes the process
(segmentation fault, bus error or abort) or spins without progress. A 1/16-width ResNet has such a
layer: the 4-channel projection shortcut into its second stage. The trainer asks this module first
and trains such a model in the default (contiguous) format instead.
"""

from __future__ import annotations

import torch
from torch import nn

# The narrowest input of a strided 1x1 convolution that oneDNN's channels_last backward handles.
MIN_STRIDED_1X1_IN_CHANNELS = 8


def channels_last_blockers(module: nn.Module, device: torch.device) -> list[str]:
    """Names of the convolutions in ``module`` that cannot train channels_last on ``device``.

    Empty off the CPU or when oneDNN is disabled: the crash is oneDNN's (measured on
    ``[B, C, 28, 28]`` inputs: C in 2..7 fails, C = 1 and C >= 8 run; 1 is listed too, since
    nothing is gained by a channels_last layout of one channel).
    """
    if device.type != "cpu" or not torch.backends.mkldnn.enabled:
        return []
    return [
        name
        for name, layer in module.named_modules()
        if isinstance(layer, nn.Conv2d)
        and layer.kernel_size == (1, 1)
        and layer.stride != (1, 1)
        and layer.in_channels < MIN_STRIDED_1X1_IN_CHANNELS
    ]
