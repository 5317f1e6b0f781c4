"""Learning-rate schedules, optimisers and the phased-binarisation schedule.

Schedulers step once per optimiser step. 'poly' and 'cosine_restarts' are LambdaLRs whose
factors are small callable objects: LambdaLR.state_dict() saves their attributes with the
step count, so a checkpoint restores the schedule exactly (the checkpoint's parameters win
over those the scheduler was rebuilt with). 'onecycle' is torch's OneCycleLR.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
import inspect
import math
from typing import Any

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

SCHEDULES = ('poly', 'cosine_restarts', 'onecycle', 'constant')
OPTIMIZERS = ('sgd', 'adam', 'adamw')

# BiSegUNet Table 10: restarts at epochs 50 and 150 of 180.
BISEGUNET_RESTARTS = (50, 150)
BISEGUNET_EPOCHS = 180


def poly_lr(base_lr: float, step: float, total_steps: int, power: float = 0.9,
            warmup_steps: int = 0, warmup_ratio: float = 0.1) -> float:
    """'poly' learning rate with an optional linear warm-up.

    Warm-up (step < warmup_steps): linear from warmup_ratio * base_lr at step 0 to base_lr at
    step warmup_steps. Then base_lr * (1 - (step - w) / (total - w))^power (FBSNet, BiSeNet:
    lr_0 (1 - iter / max_iter)^0.9 when w = 0), so the decay spans the steps after the
    warm-up and reaches 0 at total_steps (and stays 0 after).
    """
    if total_steps <= 0:
        raise ValueError(f'total_steps must be > 0, got {total_steps}')
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f'warmup_steps must be in [0, total_steps), got {warmup_steps}')
    if step < 0:
        raise ValueError(f'step must be >= 0, got {step}')
    if step < warmup_steps:
        return base_lr * (warmup_ratio + (1.0 - warmup_ratio) * step / warmup_steps)
    remaining = max(0.0, 1.0 - (step - warmup_steps) / (total_steps - warmup_steps))
    return base_lr * remaining ** power


def _check_restarts(restarts: Sequence[float], total_epochs: float) -> tuple[float, ...]:
    bounds = (0.0, *(float(r) for r in restarts), float(total_epochs))
    if any(b >= a for a, b in zip(bounds[1:], bounds, strict=False)):
        raise ValueError(f'restarts must increase strictly inside (0, total_epochs = '
                         f'{total_epochs}), got {tuple(restarts)}')
    return bounds


def cosine_restarts_lr(base_lr: float, epoch_float: float,
                       restarts: Sequence[float] = BISEGUNET_RESTARTS,
                       total_epochs: float = BISEGUNET_EPOCHS, min_lr: float = 0.0) -> float:
    """Cosine annealing with warm restarts at fixed epochs (BiSegUNet Table 10: 50 and 150 of
    180, at the precision-phase switches; SGDR's form without its period multiplier).

    The restarts cut [0, total_epochs) into segments; in each segment [s, e) the rate is
    min_lr + (base_lr - min_lr) (1 + cos(pi (epoch - s) / (e - s))) / 2: base_lr at every
    segment start, min_lr at its end. min_lr from total_epochs on.
    """
    bounds = _check_restarts(restarts, total_epochs)
    if epoch_float < 0:
        raise ValueError(f'epoch_float must be >= 0, got {epoch_float}')
    if epoch_float >= bounds[-1]:
        return min_lr
    start, end = next((s, e) for s, e in zip(bounds, bounds[1:], strict=False)
                      if epoch_float < e)
    progress = (epoch_float - start) / (end - start)
    return min_lr + (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress)) / 2.0


def binary_fraction(epoch: float, float_until: float, binary_from: float) -> float:
    """Fraction of the binary layers (by depth) that are binary at `epoch` (BiSegUNet's
    phased binarisation: float until E1 = float_until, layers binarised one group at a time
    by depth, fully binary from E2 = binary_from; Table 10: 50 and 150).

    Stepping: 0 before E1; in [E1, E2) stepwise per whole epoch of the phase,
    (floor(epoch - E1) + 1) / (E2 - E1) capped at 1, so it is constant within an epoch and
    the first group turns binary at E1 itself (the paper's "transition to binary weights at
    epoch 50"); 1 from E2 on. With set_binary_fraction's ceil(fraction * N), layer k
    (0-based) of N turns binary at the first whole epoch at or after E1 + k (E2 - E1) / N:
    every group gets an equal share of the phase and all are binary by E2 (for N = 4 and
    Table 10: epochs 50, 75, 100, 125).
    """
    if not 0 <= float_until <= binary_from:
        raise ValueError(f'need 0 <= float_until <= binary_from, got {float_until}, '
                         f'{binary_from}')
    if epoch < float_until:
        return 0.0
    if epoch >= binary_from:
        return 1.0
    started = math.floor(epoch - float_until) + 1  # whole epochs of the phase begun so far
    return min(1.0, started / (binary_from - float_until))


class _PolyFactor:
    """LambdaLR factor: poly_lr(1, step, ...). Attributes only, so state_dict saves them."""

    def __init__(self, total_steps: int, power: float, warmup_steps: int, warmup_ratio: float):
        self.total_steps = total_steps
        self.power = power
        self.warmup_steps = warmup_steps
        self.warmup_ratio = warmup_ratio
        poly_lr(1.0, 0, total_steps, power, warmup_steps, warmup_ratio)  # validates

    def __call__(self, step: int) -> float:
        return poly_lr(1.0, step, self.total_steps, self.power, self.warmup_steps,
                       self.warmup_ratio)


class _CosineRestartsFactor:
    """LambdaLR factor of one parameter group: cosine_restarts_lr at step / steps_per_epoch,
    relative to the group's base lr (min_lr is absolute, hence one factor per group)."""

    def __init__(self, steps_per_epoch: int, restarts: Sequence[float], total_epochs: float,
                 min_lr: float, base_lr: float):
        _check_restarts(restarts, total_epochs)
        self.steps_per_epoch = steps_per_epoch
        self.restarts = [float(r) for r in restarts]  # a list: state_dict-friendly
        self.total_epochs = float(total_epochs)
        self.min_ratio = min_lr / base_lr if base_lr > 0 else 0.0

    def __call__(self, step: int) -> float:
        return cosine_restarts_lr(1.0, step / self.steps_per_epoch, self.restarts,
                                  self.total_epochs, self.min_ratio)


class _ConstantFactor:
    def __call__(self, step: int) -> float:
        return 1.0


def _check_options(name: str, builder: Callable[..., Any], options: dict[str, Any]) -> None:
    """TypeError naming the allowed options when `options` has one `builder` does not take."""
    allowed = [p.name for p in inspect.signature(builder).parameters.values()
               if p.kind is p.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f'unknown option(s) {", ".join(map(repr, unknown))} for schedule '
                        f'{name!r}; allowed: {", ".join(allowed) or "none"}')


def _base_lrs(optimizer: torch.optim.Optimizer) -> list[float]:
    return [group.get('initial_lr', group['lr']) for group in optimizer.param_groups]


def _poly(optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int, *,
          power: float = 0.9, warmup_steps: int = 0, warmup_ratio: float = 0.1) -> LambdaLR:
    return LambdaLR(optimizer, _PolyFactor(total_steps, power, warmup_steps, warmup_ratio))


def _cosine_restarts(optimizer: torch.optim.Optimizer, total_steps: int,
                     steps_per_epoch: int, *,
                     restarts: Sequence[float] = BISEGUNET_RESTARTS,
                     min_lr: float = 0.0) -> LambdaLR:
    # The run's length sets the last segment's end: total_epochs = total_steps / epoch.
    total_epochs = total_steps / steps_per_epoch
    factors = [_CosineRestartsFactor(steps_per_epoch, restarts, total_epochs, min_lr, lr)
               for lr in _base_lrs(optimizer)]
    return LambdaLR(optimizer, factors)


def _onecycle(optimizer: torch.optim.Optimizer, total_steps: int, steps_per_epoch: int, *,
              max_lr: float | Sequence[float] | None = None, pct_start: float = 0.3,
              anneal_strategy: str = 'cos', cycle_momentum: bool = True,
              base_momentum: float = 0.85, max_momentum: float = 0.95,
              div_factor: float = 25.0, final_div_factor: float = 1e4,
              three_phase: bool = False) -> OneCycleLR:
    # max_lr defaults to the optimiser's lr (the configured lr is the peak of the cycle).
    if max_lr is None:
        max_lr = _base_lrs(optimizer)
    elif not isinstance(max_lr, (int, float)):
        max_lr = list(max_lr)
    return OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct_start,
                      anneal_strategy=anneal_strategy, cycle_momentum=cycle_momentum,
                      base_momentum=base_momentum, max_momentum=max_momentum,
                      div_factor=div_factor, final_div_factor=final_div_factor,
                      three_phase=three_phase)


def _constant(optimizer: torch.optim.Optimizer, total_steps: int,
              steps_per_epoch: int) -> LambdaLR:
    return LambdaLR(optimizer, _ConstantFactor())


_BUILDERS: dict[str, Callable[..., LRScheduler]] = {
    'poly': _poly,
    'cosine_restarts': _cosine_restarts,
    'onecycle': _onecycle,
    'constant': _constant,
}


def build_scheduler(optimizer: torch.optim.Optimizer, *, name: str, total_steps: int,
                    steps_per_epoch: int, **options: Any) -> LRScheduler:
    """A per-optimiser-step scheduler: call .step() after every optimizer.step().

    Options by name (keyword arguments, anything else raises TypeError naming these):
        poly: power=0.9, warmup_steps=0, warmup_ratio=0.1 (see poly_lr).
        cosine_restarts: restarts=(50, 150) in epochs, min_lr=0.0 (absolute); the total
            length is total_steps / steps_per_epoch epochs (see cosine_restarts_lr).
        onecycle: OneCycleLR's max_lr (default: the optimiser's lr), pct_start,
            anneal_strategy, cycle_momentum, base_momentum, max_momentum, div_factor,
            final_div_factor, three_phase.
        constant: none.
    """
    if name not in _BUILDERS:
        raise ValueError(f'unknown schedule {name!r}; allowed: {", ".join(SCHEDULES)}')
    if total_steps <= 0 or steps_per_epoch <= 0:
        raise ValueError(f'total_steps and steps_per_epoch must be > 0, got {total_steps}, '
                         f'{steps_per_epoch}')
    builder = _BUILDERS[name]
    _check_options(name, builder, options)
    return builder(optimizer, total_steps, steps_per_epoch, **options)


def build_optimizer(params: Iterable[torch.nn.Parameter] | Iterable[dict], *, name: str,
                    lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                    betas: Sequence[float] = (0.9, 0.999)) -> torch.optim.Optimizer:
    """'sgd' (uses momentum), 'adam' or 'adamw' (use betas); weight_decay for all three
    (L2 for SGD and Adam, decoupled for AdamW). `params` may be parameter groups."""
    if name not in OPTIMIZERS:
        raise ValueError(f'unknown optimizer {name!r}; allowed: {", ".join(OPTIMIZERS)}')
    if lr <= 0:
        raise ValueError(f'lr must be > 0, got {lr}')
    if name == 'sgd':
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    betas = tuple(float(b) for b in betas)
    if len(betas) != 2:
        raise ValueError(f'betas must have two values, got {betas}')
    cls = torch.optim.Adam if name == 'adam' else torch.optim.AdamW
    return cls(params, lr=lr, betas=betas, weight_decay=weight_decay)
