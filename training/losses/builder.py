"""build_loss: a loss module from a config name and its options."""

from __future__ import annotations

from collections.abc import Sequence
import inspect
from typing import Any

from torch import nn

from training.losses.ce import CrossEntropy
from training.losses.composite import AuxWeighted, CEDice
from training.losses.dice import DiceLoss
from training.losses.hinge import HingeLoss
from training.losses.jetloss import JetLoss
from training.losses.ohem import OhemCrossEntropy

LOSSES: dict[str, type[nn.Module]] = {
    'ce': CrossEntropy,
    'ohem': OhemCrossEntropy,
    'hinge': HingeLoss,
    'dice': DiceLoss,
    'ce_dice': CEDice,
    'jetloss': JetLoss,
}

# Options holding one value per class, checked against num_classes.
_PER_CLASS = ('weight', 'class_weights')


def keyword_options(func: Any, *, exclude: tuple[str, ...] = ()) -> list[str]:
    """Names of the keyword arguments `func` (a function or a class) accepts."""
    params = inspect.signature(func).parameters.values()
    return [p.name for p in params
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.name not in exclude]


def check_options(what: str, func: Any, options: dict[str, Any], *,
                  exclude: tuple[str, ...] = ()) -> None:
    """TypeError naming the allowed options when `options` has a key `func` does not take."""
    allowed = keyword_options(func, exclude=exclude)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f'unknown option(s) {", ".join(map(repr, unknown))} for {what}; '
                        f'allowed: {", ".join(allowed) or "none"}')


def build_loss(name: str, *, num_classes: int, ignore_index: int = 255,
               aux_weights: Sequence[float] = (), **options: Any) -> nn.Module:
    """The loss `name` ('ce', 'ohem', 'hinge', 'dice', 'ce_dice', 'jetloss') built with
    `options` (the class's own keyword arguments), wrapped in AuxWeighted when `aux_weights`
    is not empty (one weight per auxiliary output).

    Raises:
        ValueError: Unknown name, bad num_classes or a per-class option of the wrong length.
        TypeError: An option the loss does not take.
    """
    if name not in LOSSES:
        raise ValueError(f'unknown loss {name!r}; allowed: {", ".join(LOSSES)}')
    if num_classes < 1:
        raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    cls = LOSSES[name]
    check_options(f'loss {name!r}', cls, options, exclude=('ignore_index',))
    for key in _PER_CLASS:
        value = options.get(key)
        if value is not None and len(value) != num_classes:
            raise ValueError(f'{key} has {len(value)} entries, num_classes is {num_classes}')
    loss = cls(ignore_index=ignore_index, **options)
    return AuxWeighted(loss, aux_weights) if len(aux_weights) else loss
