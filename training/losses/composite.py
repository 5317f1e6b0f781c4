"""Loss combinations: BiSegUNet's CE + Dice hybrid (eq. 20) and auxiliary-head weighting."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from training.losses.ce import CrossEntropy
from training.losses.dice import DiceLoss


class CEDice(nn.Module):
    """lambda_1 CE + lambda_2 Dice (BiSegUNet eq. 20).

    The paper gives no values for lambda_1 and lambda_2 (Table 10 only says "hybrid
    cross-entropy + Dice"), so both default to 1. Its label smoothing (eq. 26) has no value
    either: off by default. The binary-weight regulariser (eqs. 24-25, lambda_3 ~ 1e-4)
    needs the model, not the logits: the training loop adds
    lambda_3 * seg_perception.models.binarize.binary_weight_l1(model).

    Args:
        ce_weight: lambda_1.
        dice_weight: lambda_2.
        ignore_index: Target value of pixels to skip (both terms).
        weight: Per-class weights of the CE term, or None.
        label_smoothing: CE label smoothing eps (eq. 26).
        smooth: Dice smoothing term.
    """

    def __init__(self, *, ce_weight: float = 1.0, dice_weight: float = 1.0,
                 ignore_index: int = 255, weight: Sequence[float] | torch.Tensor | None = None,
                 label_smoothing: float = 0.0, smooth: float = 1.0):
        super().__init__()
        if ce_weight < 0 or dice_weight < 0:
            raise ValueError(f'ce_weight and dice_weight must be >= 0, got {ce_weight}, '
                             f'{dice_weight}')
        self.ce_weight = float(ce_weight)
        self.dice_weight = float(dice_weight)
        self.ce = CrossEntropy(ignore_index=ignore_index, weight=weight,
                               label_smoothing=label_smoothing)
        self.dice = DiceLoss(ignore_index=ignore_index, smooth=smooth)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (self.ce_weight * self.ce(logits, target)
                + self.dice_weight * self.dice(logits, target))

    def extra_repr(self) -> str:
        return f'ce_weight={self.ce_weight}, dice_weight={self.dice_weight}'


class AuxWeighted(nn.Module):
    """loss(main) + sum_i w_i loss(aux_i) for models with auxiliary heads (BiSeNet eq. 2,
    alpha = 1 for both context-path heads).

    `outputs` is either a tuple (main, aux_1, ..., aux_k) with k = len(aux_weights), or a
    single Tensor, taken as the main output alone (a model in eval mode returns only its
    main logits, so the same criterion serves validation). A tuple of another length raises
    ValueError.

    Args:
        loss: The criterion applied to every output.
        aux_weights: One weight per auxiliary output.
    """

    def __init__(self, loss: nn.Module, aux_weights: Sequence[float] = (1.0, 1.0)):
        super().__init__()
        self.loss = loss
        self.aux_weights = tuple(float(w) for w in aux_weights)

    def forward(self, outputs: torch.Tensor | Sequence[torch.Tensor],
                target: torch.Tensor) -> torch.Tensor:
        if isinstance(outputs, torch.Tensor):
            return self.loss(outputs, target)
        outputs = tuple(outputs)
        if len(outputs) != 1 + len(self.aux_weights):
            raise ValueError(f'got {len(outputs)} outputs but {len(self.aux_weights)} aux '
                             f'weights: expected (main, {len(self.aux_weights)} aux outputs)')
        total = self.loss(outputs[0], target)
        for weight, aux in zip(self.aux_weights, outputs[1:], strict=True):
            total = total + weight * self.loss(aux, target)
        return total

    def extra_repr(self) -> str:
        return f'aux_weights={self.aux_weights}'
