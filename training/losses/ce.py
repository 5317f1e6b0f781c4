"""Pixel-wise cross-entropy with class weights, label smoothing and an ignore label."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
import torch.nn.functional as F

from training.losses.utils import (
    check_inputs,
    check_num_classes,
    class_weight_tensor,
    valid_target,
)


def pixel_cross_entropy(logits: torch.Tensor, target: torch.Tensor, *,
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """(N, H, W) per-pixel CE of float32 `logits` against a safe (no ignore label) target.

    With smoothing eps the target distribution is q_c = (1 - eps) 1{c = y} + eps / C
    (BiSegUNet eq. 26), so the loss is (1 - eps) (-log p_y) + eps * mean_c(-log p_c).
    """
    log_p = F.log_softmax(logits, dim=1)
    nll = -log_p.gather(1, target.unsqueeze(1)).squeeze(1)
    if label_smoothing == 0.0:
        return nll
    return (1.0 - label_smoothing) * nll - label_smoothing * log_p.mean(dim=1)


def weighted_mean(per_pixel: torch.Tensor, keep: torch.Tensor, target: torch.Tensor,
                  weight: torch.Tensor | None) -> torch.Tensor:
    """sum_i w_{y_i} l_i / sum_i w_{y_i} over the kept pixels (nn.CrossEntropyLoss's 'mean'
    convention: each pixel counts with the weight of its true class); 0, with a graph, when
    no pixel is kept (an all-ignored batch), without a host sync."""
    w = keep.to(per_pixel.dtype)
    if weight is not None:
        w = w * weight.to(per_pixel.device)[target]
    # where(), not a product: a masked pixel must contribute 0 even if its loss is inf.
    total = torch.where(keep, per_pixel * w, torch.zeros_like(per_pixel)).sum()
    # Empty selection: total is exactly 0 and the clamp turns 0 / 0 into 0 instead of NaN.
    return total / w.sum().clamp_min(torch.finfo(w.dtype).tiny)


class CrossEntropy(nn.Module):
    """Mean pixel-wise cross-entropy.

    Ignored pixels contribute nothing to either the loss or the normaliser, also with label
    smoothing (their smoothed target is not spread over the classes). The mean is weighted by
    the true class's weight, as nn.CrossEntropyLoss does; with smoothing every term of a pixel
    gets that pixel's true-class weight (torch instead weights each smoothed class term by its
    own class weight).

    Args:
        ignore_index: Target value of pixels to skip.
        weight: Per-class weights (C,), or None.
        label_smoothing: eps in [0, 1) (BiSegUNet eq. 26).
    """

    def __init__(self, *, ignore_index: int = 255,
                 weight: Sequence[float] | torch.Tensor | None = None,
                 label_smoothing: float = 0.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f'label_smoothing must be in [0, 1), got {label_smoothing}')
        self.ignore_index = ignore_index
        self.label_smoothing = float(label_smoothing)
        self.register_buffer('weight', class_weight_tensor(weight), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_inputs(logits, target)
        check_num_classes(self.weight, logits, 'weight')
        valid, safe = valid_target(target, self.ignore_index)
        per_pixel = pixel_cross_entropy(logits.float(), safe,
                                        label_smoothing=self.label_smoothing)
        return weighted_mean(per_pixel, valid, safe, self.weight)

    def extra_repr(self) -> str:
        return f'ignore_index={self.ignore_index}, label_smoothing={self.label_smoothing}'
