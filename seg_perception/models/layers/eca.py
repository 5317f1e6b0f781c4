"""ECA: Efficient Channel Attention (Wang et al., CVPR 2020)."""

from __future__ import annotations

import math

import torch
from torch import nn


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA's adaptive 1-D kernel size: k = |(log2(C) + b) / gamma|, rounded up to odd.

    E.g. C = 16 -> 3, 64 -> 3, 128 -> 5, 512 -> 5 (gamma = 2, b = 1).
    """
    t = int(abs((math.log2(channels) + b) / gamma))
    return t if t % 2 else t + 1


class ECA(nn.Module):
    """x * sigmoid(conv1d_k(avgpool(x))): a k-tap conv across channels, no reduction.

    Args:
        channels: Input channels; sets k through `eca_kernel_size` unless `kernel_size` given.
        kernel_size: Fixed odd kernel size instead of the adaptive one.
    """

    def __init__(self, channels: int | None = None, kernel_size: int | None = None,
                 gamma: int = 2, b: int = 1):
        super().__init__()
        if kernel_size is None and channels is None:
            raise ValueError('ECA needs channels (adaptive kernel) or a fixed kernel_size')
        self.kernel_size = kernel_size or eca_kernel_size(channels, gamma, b)
        self.conv = nn.Conv1d(1, 1, self.kernel_size, padding=self.kernel_size // 2,
                              bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x.mean((2, 3)).unsqueeze(1))  # (N, 1, C): channels as a 1-D signal
        return x * torch.sigmoid(y).transpose(1, 2).unsqueeze(-1)
