"""Multi-class hinge loss of the lightweight BiSeNet paper (eq. 1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from training.losses.ce import weighted_mean
from training.losses.utils import (
    check_inputs,
    check_num_classes,
    class_weight_tensor,
    valid_target,
    zero_loss,
)


class HingeLoss(nn.Module):
    """Per pixel h = sum_{j=1..Nc} max(0, 1 - zeta_j y_j) on the raw scores y (logits), with
    zeta_j = +1 for the true class and -1 for the others (eq. 1); the loss is the mean of h
    over the non-ignored pixels.

    The per-pixel sum over classes is kept as a sum, exactly as eq. 1 writes it (not divided
    by Nc): for the paper's Nc = 2 it is the sum of the two one-vs-rest hinge terms on the
    same (N, 2, H, W) logits the CE head uses.

    With `weight`, each pixel's h counts with the weight of its true class and the mean is
    normalised by the summed weights (the CrossEntropy convention), so hinge and CE runs can
    share one class weighting. The paper uses none (weight None).

    Args:
        ignore_index: Target value of pixels to skip.
        weight: Per-class weights (C,), or None.
    """

    def __init__(self, *, ignore_index: int = 255,
                 weight: Sequence[float] | torch.Tensor | None = None):
        super().__init__()
        self.ignore_index = ignore_index
        self.register_buffer('weight', class_weight_tensor(weight), persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_inputs(logits, target)
        check_num_classes(self.weight, logits, 'weight')
        valid, safe = valid_target(target, self.ignore_index)
        if not bool(valid.any()):
            return zero_loss(logits)
        scores = logits.float()
        classes = torch.arange(scores.shape[1], device=scores.device).view(1, -1, 1, 1)
        zeta = torch.where(classes == safe.unsqueeze(1), 1.0, -1.0)   # (N, C, H, W), eq. 1
        per_pixel = (1.0 - zeta * scores).clamp_min(0.0).sum(dim=1)   # sum over j, eq. 1
        if self.weight is None:
            return per_pixel[valid].mean()
        return weighted_mean(per_pixel, valid, safe, self.weight)

    def extra_repr(self) -> str:
        return f'ignore_index={self.ignore_index}'
