"""Light-weight activations used by JetSeg: REU and TanhExp.

Both are written with plain tensor ops (Min / Clip, Exp, Tanh, Mul) so they export to ONNX
and their autograd gradient never meets inf * 0.
"""

from __future__ import annotations

import torch
from torch import nn


class REU(nn.Module):
    """Rectified Exponential Unit (Ying et al., IEEE Access 2019).

    REU(x) = x            for x > 0
           = x * exp(x)   for x <= 0
    i.e. REU(x) = max(0, x) + min(0, x * exp(x)) = x * exp(min(x, 0)).

    The last form is the one computed: exp never sees a positive argument, so it cannot
    overflow, and d/dx = 1 for x > 0, exp(x) * (x + 1) for x < 0 comes out of autograd.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.exp(torch.clamp(x, max=0.0))


class TanhExp(nn.Module):
    """Tanh Exponential activation (Liu & Di, 2020): TanhExp(x) = x * tanh(exp(x)).

    exp's argument is clipped at `clip` (default 20): tanh(exp(x)) is already 1.0 in float32
    for x > ~3, so the value is unchanged, but without the clip exp(x) = inf for x > ~88 and
    the gradient x * (1 - tanh(e^x)^2) * e^x becomes 0 * inf = NaN.
    """

    def __init__(self, clip: float = 20.0):
        super().__init__()
        self.clip = clip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.tanh(torch.exp(torch.clamp(x, max=self.clip)))
