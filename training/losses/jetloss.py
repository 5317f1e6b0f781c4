"""JetLoss (JetSeg eq. 1): class-weighted recall + precision + batch IoU, as 1 - score."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from training.losses.dice import soft_counts
from training.losses.utils import (
    check_inputs,
    check_num_classes,
    class_weight_tensor,
    zero_loss,
)


def effective_number_weights(pixels_per_class: Sequence[float] | torch.Tensor, *,
                             beta: float = 0.9999) -> torch.Tensor:
    """Class-balanced weights of Cui et al. (JetSeg's [29]), normalised to sum to 1:
    w_c proportional to (1 - beta) / (1 - beta^n_c), n_c the pixel count of class c; classes
    with no pixel get 0. Pixel counts are large, so beta must be very close to 1 (with
    n_c >> 1 / (1 - beta) every class gets the same weight).
    """
    if not 0.0 <= beta < 1.0:
        raise ValueError(f'beta must be in [0, 1), got {beta}')
    counts = torch.as_tensor(pixels_per_class, dtype=torch.float64)
    if counts.dim() != 1 or bool((counts < 0).any()):
        raise ValueError('pixels_per_class must be a 1-D sequence of non-negative counts')
    # 1 - beta^n = -expm1(n log beta): exact for beta close to 1, where 1 - beta^n cancels.
    effective = -torch.expm1(counts * torch.log(torch.tensor(beta, dtype=torch.float64)))
    weights = torch.where(counts > 0, (1.0 - beta) / effective.clamp_min(1e-300),
                          torch.zeros_like(counts))
    if not bool((weights > 0).any()):
        raise ValueError('pixels_per_class has no non-zero count')
    return (weights / weights.sum()).float()


class JetLoss(nn.Module):
    """JetSeg eq. 1 with soft (softmax) counts, written as a loss: 1 - (R + P + B) / 3.

    Per class c, over the non-ignored pixels of the whole batch, TP_c = sum p_c y_c,
    FP_c = sum p_c (1 - y_c), FN_c = sum (1 - p_c) y_c, and with weights W summing to 1:
        R = sum_c W_c (TP_c + eps) / (TP_c + FN_c + eps)          (recall)
        P = sum_c W_c (TP_c + eps) / (TP_c + FP_c + eps)          (precision)
        B = sum_c W_c (TP_c + eps) / (TP_c + FP_c + FN_c + eps)   (IoU over the batch)
    Eq. 1 adds the three scores (higher is better); the loss is 1 minus their mean, so it is
    in [0, 1] and 0 only for a perfect prediction. B follows the paper's citation [28]
    ("batching soft IoU": sums over the N images of the batch before the ratio, eq. 1's
    sum_i); the authors' code instead uses the IoU of a single background class and applies
    the terms to raw scores. eps is also in B (the paper omits it there) so that a class
    absent from target and prediction scores 1 instead of 0/0. With eps > 0 such a class
    scores 1 on R, P and B; a class absent from the target but predicted scores R = 1,
    P ~ 0, B ~ 0.

    Args:
        class_weights: W (C,), e.g. from effective_number_weights (the paper's Cui
            weighting); normalised to sum to 1. None: uniform 1 / C.
        ignore_index: Target value of pixels to skip.
        eps: Smoothing of the three ratios (the authors' code uses 1e-6).
    """

    def __init__(self, *, class_weights: Sequence[float] | torch.Tensor | None = None,
                 ignore_index: int = 255, eps: float = 1e-6):
        super().__init__()
        if eps < 0:
            raise ValueError(f'eps must be >= 0, got {eps}')
        weights = class_weight_tensor(class_weights, 'class_weights')
        if weights is not None:
            if not bool((weights > 0).any()):
                raise ValueError('class_weights must have a positive entry')
            weights = weights / weights.sum()
        self.ignore_index = ignore_index
        self.eps = float(eps)
        self.register_buffer('class_weights', weights, persistent=False)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_inputs(logits, target)
        check_num_classes(self.class_weights, logits, 'class_weights')
        if not bool((target != self.ignore_index).any()):
            return zero_loss(logits)
        tp, pred_sum, target_sum = soft_counts(logits, target, self.ignore_index)
        fp, fn = pred_sum - tp, target_sum - tp
        num = tp + self.eps
        recall = num / (tp + fn + self.eps)
        precision = num / (tp + fp + self.eps)
        iou = num / (tp + fp + fn + self.eps)
        weights = self.class_weights
        if weights is None:
            weights = torch.full_like(tp, 1.0 / tp.numel())
        score = (weights * (recall + precision + iou)).sum() / 3.0
        return 1.0 - score

    def extra_repr(self) -> str:
        return f'ignore_index={self.ignore_index}, eps={self.eps}'
