"""Basic building blocks: conv + norm + activation, channel shuffle."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class ConvBNAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation; `padding` defaults to 'same' for odd
    kernels at the given dilation.

    Args:
        act_layer: Activation module class, or None for none.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int | tuple[int, int] = 3,
                 stride: int = 1, padding: int | tuple[int, int] | None = None,
                 dilation: int | tuple[int, int] = 1, groups: int = 1,
                 act_layer: Callable[..., nn.Module] | None = nn.ReLU):
        if padding is None:
            ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
            dil = (dilation, dilation) if isinstance(dilation, int) else dilation
            padding = tuple((k - 1) // 2 * d for k, d in zip(ks, dil, strict=True))
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel_size, stride, padding, dilation, groups, bias=False),
            nn.BatchNorm2d(cout),
        ]
        if act_layer is not None:
            layers.append(act_layer())
        super().__init__(*layers)


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """ShuffleNet channel shuffle: (N, g*c, H, W) -> interleave the g groups."""
    n, channels, h, w = x.shape
    return x.view(n, groups, channels // groups, h, w).transpose(1, 2).reshape(n, channels, h, w)
