"""Input checks and masking helpers shared by the segmentation losses."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_inputs(logits: torch.Tensor, target: torch.Tensor) -> None:
    """Raises on anything but (N, C, H, W) float logits and (N, H, W) int64 targets."""
    if isinstance(logits, (tuple, list)):
        raise TypeError('got several outputs (main, aux, ...): build the loss with aux_weights '
                        '(AuxWeighted) to supervise auxiliary heads')
    if logits.dim() != 4 or not logits.is_floating_point():
        raise ValueError(f'logits must be (N, C, H, W) float, got {tuple(logits.shape)} '
                         f'{logits.dtype}')
    if target.dtype != torch.int64:
        raise ValueError(f'target must be int64 class indices, got {target.dtype}')
    n, _, h, w = logits.shape
    if tuple(target.shape) != (n, h, w):
        raise ValueError(f'target shape {tuple(target.shape)} does not match logits '
                         f'{tuple(logits.shape)} (expected {(n, h, w)})')


def valid_target(target: torch.Tensor, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(valid mask, target with ignored pixels set to class 0 so it can index tensors)."""
    valid = target != ignore_index
    return valid, torch.where(valid, target, torch.zeros_like(target))


def zero_loss(logits: torch.Tensor) -> torch.Tensor:
    """A 0 connected to the graph, for batches where every pixel is ignored: backward still
    runs (DDP needs every rank to reach the same reductions) and gives zero gradients."""
    return logits.sum() * 0.0


def class_weight_tensor(weight: Sequence[float] | torch.Tensor | None,
                        name: str = 'weight') -> torch.Tensor | None:
    """`weight` (a list from YAML or a tensor) as a 1-D float tensor; None stays None."""
    if weight is None:
        return None
    out = torch.as_tensor(weight, dtype=torch.float32).detach().clone()
    if out.dim() != 1 or out.numel() == 0:
        raise ValueError(f'{name} must be a non-empty 1-D sequence, got shape {tuple(out.shape)}')
    if bool((out < 0).any()):
        raise ValueError(f'{name} must be non-negative')
    return out


def check_num_classes(weight: torch.Tensor | None, logits: torch.Tensor, name: str) -> None:
    if weight is not None and weight.numel() != logits.shape[1]:
        raise ValueError(f'{name} has {weight.numel()} entries but logits have '
                         f'{logits.shape[1]} classes')
