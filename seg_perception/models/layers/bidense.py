"""BiDense (Yin et al.) building blocks used by BinaryConv2d: the Distribution-adaptive
Binarizer (DAB, eqs. 4-10) and the Channel-adaptive Full-precision Bypass (CFB, eqs. 12-13).

Readings where the paper is open:
- DAB statistics are per sample and per input channel, over H x W: the mean x_bar of eq. 5 and
  the mean absolute value of the shifted input in eq. 10. k and b are per input channel (b
  "akin to" ReActNet's per-channel thresholds); a is one scalar per layer ("a layer-wise
  learnable parameter"). k = b = a = 0 at start, so DAB starts as a plain sign with scale 1
  (Sec. 3.2: "when a is initialized as 0, alpha ... initial value of 1").
- CFB fusion-down pools contiguous channel windows of K = floor(C_in / (C_out mod C_in))
  (eq. 13): M - 1 windows of K channels and the last window takes all the remaining channels
  (M = C_out mod C_in), which is the paper's "last K + (C_in mod K)" whenever C_in // K == M
  and still yields exactly M channels when it is not (e.g. C_in 10 -> C_out 4).
- CFB fusion-up tiles the input N_r = floor(C_out / C_in) times (eq. 12; the authors' code
  tiles the whole channel block) and appends the M fused-down channels.
- A stride-s conv gets an s x s average pool on the bypass (the authors' Transition block),
  and the binary branch is batch-normalised before the sum (Sec. 3.4, Fig. 2).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
import torch.nn.functional as F


def as_pair(value: int | tuple[int, ...]) -> tuple[int, int]:
    """An int or a 2-tuple as a 2-tuple."""
    return (value, value) if isinstance(value, int) else (value[0], value[1])


class DistributionAdaptiveBinarizer(nn.Module):
    """DAB: alpha(x_s) * Sign(x_s), x_s = x - (k * mean(x) + b) (eqs. 5, 8-10).

    Args:
        channels: Input channels (k and b are per channel).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.k = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.b = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.a = nn.Parameter(torch.zeros(1))

    def threshold(self, x: torch.Tensor) -> torch.Tensor:
        """beta(x) = k * x_bar + b (eq. 5), x_bar the per-sample, per-channel mean."""
        return self.k * x.mean((2, 3), keepdim=True) + self.b

    def scale(self, shifted: torch.Tensor) -> torch.Tensor:
        """alpha(x_s) = exp(a * (||x_s||_1 / n - 1)) (eq. 10), per sample and channel."""
        return torch.exp(self.a * (shifted.abs().mean((2, 3), keepdim=True) - 1))

    def forward(self, x: torch.Tensor,
                sign: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """Binarises `x` with `sign` (a straight-through estimator, or the pure sign)."""
        shifted = x - self.threshold(x)  # eq. 8
        return self.scale(shifted) * sign(shifted)  # eq. 9


def bypass_plan(in_channels: int, out_channels: int) -> tuple[int, list[tuple[int, int]]]:
    """Eqs. 12-13: (repeats, [(start, stop) of each fused-down channel window])."""
    repeats, merged = divmod(out_channels, in_channels)
    if merged == 0:
        return repeats, []
    kernel = in_channels // merged
    windows = [(i * kernel, (i + 1) * kernel) for i in range(merged - 1)]
    windows.append(((merged - 1) * kernel, in_channels))  # the last window takes the rest
    return repeats, windows


def _spatial_pool(kernel_size, stride, padding, dilation) -> tuple[tuple[int, int], bool]:
    """Average-pool (stride, ceil_mode) that gives the bypass the conv's output size, or a
    ValueError. The conv gives floor((H + e) / s) + 1 with e = 2p - d(k - 1) - 1: e = -1 is
    ceil(H / s) (ceil_mode pooling) and e = -s is floor(H / s) (plain pooling), for every H.
    """
    stride = as_pair(stride)
    if isinstance(padding, str):  # nn.Conv2d allows 'same' only at stride 1
        if padding == 'same':
            return stride, False
        padding = (0, 0)
    modes = set()
    for k, s, p, d in zip(as_pair(kernel_size), stride, as_pair(padding), as_pair(dilation),
                          strict=True):
        excess = 2 * p - d * (k - 1) - 1
        if excess == -1:
            modes.add('ceil' if s > 1 else 'any')
        elif excess == -s:
            modes.add('floor')
        else:
            raise ValueError(
                f'cfb: a conv with kernel {kernel_size}, stride {stride}, padding {padding}, '
                f'dilation {dilation} changes the spatial size in a way an average pool '
                'cannot match; use "same" padding ((k - 1) * d / 2) or kernel = stride')
    modes.discard('any')
    if len(modes) > 1:
        raise ValueError(f'cfb: kernel {kernel_size} / padding {padding} rounds height and '
                         'width differently; no single pooling matches')
    return stride, modes == {'ceil'}


class ChannelAdaptiveBypass(nn.Module):
    """CFB: BN(binary branch) + fuse(pool(x)), the full-precision input resized to the binary
    conv's output shape by spatial average pooling and channel fusion (eqs. 12-13).

    Args:
        in_channels, out_channels: The binary conv's channels.
        kernel_size, stride, padding, dilation: The binary conv's geometry; shapes that no
            average pool can bridge raise ValueError.
    """

    def __init__(self, in_channels: int, out_channels: int, *, kernel_size, stride, padding,
                 dilation):
        super().__init__()
        self.pool_stride, self.ceil_mode = _spatial_pool(kernel_size, stride, padding, dilation)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.repeats, self.windows = bypass_plan(in_channels, out_channels)
        self.norm = nn.BatchNorm2d(out_channels)  # aligns the binary branch (Sec. 3.4)

    def resize(self, x: torch.Tensor) -> torch.Tensor:
        """The full-precision input pooled and fused to the output shape."""
        if self.pool_stride != (1, 1):
            x = F.avg_pool2d(x, self.pool_stride, self.pool_stride, ceil_mode=self.ceil_mode)
        parts = [x.repeat(1, self.repeats, 1, 1)] if self.repeats > 1 else [x] * self.repeats
        # Fusion-down: 1-D average pooling along channels, kernel = stride = K (eq. 13).
        kernel = self.windows[0][1] - self.windows[0][0] if self.windows else 0
        regular = (len(self.windows) - 1) * kernel
        if regular:
            parts.append(x[:, :regular].unflatten(1, (len(self.windows) - 1, kernel)).mean(2))
        if self.windows:
            parts.append(x[:, regular:].mean(1, keepdim=True))
        return parts[0] if len(parts) == 1 else torch.cat(parts, 1)

    def forward(self, x: torch.Tensor, binary_out: torch.Tensor) -> torch.Tensor:
        """`x`: the layer's full-precision input; `binary_out`: the binary conv's output."""
        return self.norm(binary_out) + self.resize(x)

    def extra_repr(self) -> str:
        return (f'{self.in_channels} -> {self.out_channels}, repeats={self.repeats}, '
                f'fused={len(self.windows)}, pool={self.pool_stride}, ceil={self.ceil_mode}')
