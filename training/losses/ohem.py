"""Online hard example mining cross-entropy (the probability-threshold OHEM of the
BiSeNet / FBSNet code bases, TorchSeg's ProbOhemCrossEntropy2d)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from training.losses.ce import pixel_cross_entropy, weighted_mean
from training.losses.utils import (
    check_inputs,
    check_num_classes,
    class_weight_tensor,
    valid_target,
)


class OhemCrossEntropy(nn.Module):
    """Cross-entropy over the hard pixels only.

    With p the softmax probability of the true class of each non-ignored pixel:
    - fewer than `min_kept` valid pixels: every valid pixel is kept;
    - otherwise the threshold is max(thresh, the min_kept-th smallest p) and the pixels with
      p <= threshold are kept (<=, as the reference code: ties at the threshold are kept, so
      at least `min_kept` pixels always are).
    The loss is the (class-weighted) mean CE over the kept pixels. FBSNet (Cityscapes) uses
    thresh 0.7 and min_kept = batch * H * W // 16 with its class weights. Unlike the
    reference, min_kept = 0 still applies `thresh` (the reference then keeps every pixel).

    Args:
        ignore_index: Target value of pixels to skip.
        thresh: Probability threshold in (0, 1].
        min_kept: Minimum number of pixels kept per batch.
        weight: Per-class weights (C,), or None.
    """

    def __init__(self, *, ignore_index: int = 255, thresh: float = 0.7, min_kept: int = 100000,
                 weight: Sequence[float] | torch.Tensor | None = None):
        super().__init__()
        if not 0.0 < thresh <= 1.0:
            raise ValueError(f'thresh must be in (0, 1], got {thresh}')
        if min_kept < 0 or int(min_kept) != min_kept:
            raise ValueError(f'min_kept must be a non-negative integer, got {min_kept}')
        self.ignore_index = ignore_index
        self.thresh = float(thresh)
        self.min_kept = int(min_kept)
        self.register_buffer('weight', class_weight_tensor(weight), persistent=False)

    def kept_mask(self, prob: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """(N, H, W) bool mask of the pixels OHEM keeps, from the true-class probabilities."""
        num_valid = int(valid.sum())
        if num_valid <= self.min_kept:
            return valid
        threshold = torch.as_tensor(self.thresh, dtype=prob.dtype, device=prob.device)
        if self.min_kept > 0:
            kth = torch.kthvalue(prob[valid], self.min_kept).values
            threshold = torch.maximum(threshold, kth)
        return valid & (prob <= threshold)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_inputs(logits, target)
        check_num_classes(self.weight, logits, 'weight')
        valid, safe = valid_target(target, self.ignore_index)
        nll = pixel_cross_entropy(logits.float(), safe)
        # p_true = exp(-CE); selection only, so no gradient through it.
        keep = self.kept_mask(torch.exp(-nll.detach()), valid)
        return weighted_mean(nll, keep, safe, self.weight)

    def extra_repr(self) -> str:
        return (f'ignore_index={self.ignore_index}, thresh={self.thresh}, '
                f'min_kept={self.min_kept}')
