"""Coordinate attention (Hou et al., CVPR 2021): channel attention factorised into an H- and
a W-direction 1-D pooling, so the weights keep position along each axis."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class CoordinateAttention(nn.Module):
    """x * sigmoid(T_h(F_h)) * sigmoid(T_w(F_w)), F = act(BN(conv1x1([pool_H(x), pool_W(x)]))).

    The pooling is `mean` over one axis rather than adaptive pooling, so it exports to ONNX at
    any input size.

    Args:
        channels: Input and output channels C.
        reduction: Channel reduction r of the shared 1x1 conv (C -> C / r).
        min_mid: Lower bound on the reduced width (the paper's max(8, C / r)).
        act_layer: Activation after the shared conv (the paper uses h-swish).
    """

    def __init__(self, channels: int, reduction: int = 32, min_mid: int = 8,
                 act_layer: Callable[..., nn.Module] = nn.Hardswish):
        super().__init__()
        mid = max(min_mid, channels // reduction)
        self.shared = nn.Sequential(
            nn.Conv2d(channels, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            act_layer(),
        )
        self.to_h = nn.Conv2d(mid, channels, 1)
        self.to_w = nn.Conv2d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        pooled_h = x.mean(3, keepdim=True)                      # (N, C, H, 1)
        pooled_w = x.mean(2, keepdim=True).transpose(2, 3)      # (N, C, W, 1)
        # One shared conv over both directions, stacked along the spatial axis: (N, C, H+W, 1).
        mixed = self.shared(torch.cat([pooled_h, pooled_w], dim=2))
        mixed_h, mixed_w = torch.split(mixed, [h, w], dim=2)
        weight_h = torch.sigmoid(self.to_h(mixed_h))                  # (N, C, H, 1)
        weight_w = torch.sigmoid(self.to_w(mixed_w.transpose(2, 3)))  # (N, C, 1, W)
        return x * weight_h * weight_w
