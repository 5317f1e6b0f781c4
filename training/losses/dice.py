"""Soft multi-class Dice loss (BiSegUNet eq. 19, computed per class and averaged)."""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from training.losses.utils import check_inputs, valid_target, zero_loss


def soft_counts(logits: torch.Tensor, target: torch.Tensor,
                ignore_index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-level soft counts per class over the non-ignored pixels, each (C,):
    intersection sum_i p_ic y_ic, predicted mass sum_i p_ic and target count sum_i y_ic, with
    p the softmax probabilities (float32) and y the one-hot target."""
    valid, safe = valid_target(target, ignore_index)
    prob = F.softmax(logits.float(), dim=1)
    mask = valid.unsqueeze(1).to(prob.dtype)
    onehot = F.one_hot(safe, prob.shape[1]).permute(0, 3, 1, 2).to(prob.dtype) * mask
    # where(), not prob * mask: the masked mass is exactly 0 even for non-finite logits.
    prob = torch.where(mask.bool(), prob, torch.zeros_like(prob))
    dims = (0, 2, 3)
    return (prob * onehot).sum(dims), prob.sum(dims), onehot.sum(dims)


class DiceLoss(nn.Module):
    """1 - mean_c D_c with D_c = (2 sum_i p_ic y_ic + smooth) / (sum_i p_ic + sum_i y_ic +
    smooth) (eq. 19 plus the usual smoothing term).

    Reduction: the sums run over every non-ignored pixel of the whole batch (one Dice per
    class per batch, not per image), and the mean runs over the classes present in the batch,
    i.e. that occur in the target or are the arg-max prediction of at least one non-ignored
    pixel. Classes absent from both would only add a near-constant term. A batch whose
    pixels are all ignored gives 0.

    Args:
        ignore_index: Target value of pixels to skip.
        smooth: Added to numerator and denominator (>= 0).
    """

    def __init__(self, *, ignore_index: int = 255, smooth: float = 1.0):
        super().__init__()
        if smooth < 0:
            raise ValueError(f'smooth must be >= 0, got {smooth}')
        self.ignore_index = ignore_index
        self.smooth = float(smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_inputs(logits, target)
        valid = target != self.ignore_index
        if not bool(valid.any()):
            return zero_loss(logits)
        inter, pred_sum, target_sum = soft_counts(logits, target, self.ignore_index)
        predicted = torch.bincount(logits.detach().argmax(dim=1)[valid],
                                   minlength=logits.shape[1])
        present = (target_sum > 0) | (predicted > 0)
        dice = (2.0 * inter + self.smooth) / (pred_sum + target_sum + self.smooth)
        return 1.0 - dice[present].mean()

    def extra_repr(self) -> str:
        return f'ignore_index={self.ignore_index}, smooth={self.smooth}'
