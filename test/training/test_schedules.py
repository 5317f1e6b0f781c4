"""Schedules at key steps / epochs, the scheduler builder and its resume, the optimiser
builder, and the phased-binarisation schedule paired with set_binary_fraction."""

from __future__ import annotations

import io
import math

import pytest
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, OneCycleLR

from seg_perception.models.binarize import set_binary_fraction
from seg_perception.models.layers.binary import BinaryConv2d
from training.schedules import (
    binary_fraction,
    build_optimizer,
    build_scheduler,
    cosine_restarts_lr,
    poly_lr,
)


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-9, abs=1e-15)


def half_cosine(progress: float) -> float:
    """(1 + cos(pi * progress)) / 2: 1 at a segment start, 0 at its end."""
    return (1 + math.cos(math.pi * progress)) / 2


def make_optimizer(name: str = 'sgd', lr: float = 0.1) -> torch.optim.Optimizer:
    return build_optimizer(nn.Linear(2, 2).parameters(), name=name, lr=lr)


def lrs_over(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The lr used by optimiser steps 0 .. steps - 1."""
    out = []
    for _ in range(steps):
        out.append(scheduler.optimizer.param_groups[0]['lr'])
        scheduler.optimizer.step()
        scheduler.step()
    return out


# --- poly ------------------------------------------------------------------------------------

def test_poly_without_warmup_is_fbsnet_formula():
    assert poly_lr(0.01, 0, 1000) == approx(0.01)
    assert poly_lr(0.01, 500, 1000) == approx(0.01 * 0.5 ** 0.9)
    assert poly_lr(0.01, 999, 1000) == approx(0.01 * 0.001 ** 0.9)
    assert poly_lr(0.01, 1000, 1000) == 0.0
    assert poly_lr(0.01, 1200, 1000) == 0.0
    assert poly_lr(0.01, 500, 1000, power=1.0) == approx(0.005)


def test_poly_warmup_is_linear_from_ratio_then_decays_over_the_rest():
    kwargs = {'total_steps': 1000, 'warmup_steps': 100, 'warmup_ratio': 0.1}
    assert poly_lr(0.01, 0, **kwargs) == approx(0.001)               # start: ratio x base
    assert poly_lr(0.01, 50, **kwargs) == approx(0.01 * (0.1 + 0.9 * 0.5))
    assert poly_lr(0.01, 100, **kwargs) == approx(0.01)              # end of warm-up: base
    assert poly_lr(0.01, 550, **kwargs) == approx(0.01 * 0.5 ** 0.9)  # middle of the decay
    assert poly_lr(0.01, 1000, **kwargs) == 0.0                      # end


def test_poly_rejects_bad_arguments():
    with pytest.raises(ValueError, match='total_steps'):
        poly_lr(0.01, 0, 0)
    with pytest.raises(ValueError, match='warmup_steps'):
        poly_lr(0.01, 0, 100, warmup_steps=100)
    with pytest.raises(ValueError, match='step'):
        poly_lr(0.01, -1, 100)


# --- cosine with restarts ----------------------------------------------------------------------

@pytest.mark.parametrize('epoch, expected_factor', [
    (0.0, 1.0),                           # start of segment [0, 50)
    (25.0, 0.5),
    (49.99, half_cosine(49.99 / 50)),     # ~0 just before the first restart
    (50.0, 1.0),                          # restart
    (100.0, 0.5),                         # middle of [50, 150)
    (149.99, half_cosine(99.99 / 100)),
    (150.0, 1.0),                         # restart
    (165.0, 0.5),                         # middle of [150, 180)
    (179.99, half_cosine(29.99 / 30)),
    (180.0, 0.0),                         # end
    (200.0, 0.0),
])
def test_cosine_restarts_bisegunet_table10(epoch, expected_factor):
    base, low = 1e-3, 1e-5
    assert cosine_restarts_lr(base, epoch) == approx(base * expected_factor)
    assert cosine_restarts_lr(base, epoch, min_lr=low) == approx(
        low + (base - low) * expected_factor)


def test_cosine_restarts_near_restart_values():
    assert cosine_restarts_lr(1e-3, 49.99) < 1e-9 < cosine_restarts_lr(1e-3, 50.0)


def test_cosine_restarts_custom_segments_and_validation():
    assert cosine_restarts_lr(1.0, 15.0, restarts=(10,), total_epochs=30) == approx(
        half_cosine(0.25))
    assert cosine_restarts_lr(1.0, 5.0, restarts=(), total_epochs=10) == approx(0.5)
    for restarts in [(150, 50), (50, 50), (0, 50), (50, 180)]:
        with pytest.raises(ValueError, match='restarts'):
            cosine_restarts_lr(1.0, 1.0, restarts=restarts, total_epochs=180)


# --- build_scheduler -------------------------------------------------------------------------

def test_poly_scheduler_steps_once_per_optimiser_step():
    opt = make_optimizer(lr=0.1)
    sched = build_scheduler(opt, name='poly', total_steps=10, steps_per_epoch=5,
                            warmup_steps=2, warmup_ratio=0.5)
    assert isinstance(sched, LambdaLR)
    lrs = lrs_over(sched, 10)
    assert lrs[:3] == [approx(0.05), approx(0.075), approx(0.1)]
    assert lrs == [approx(poly_lr(0.1, i, 10, 0.9, 2, 0.5)) for i in range(10)]


def test_cosine_restarts_scheduler_uses_epochs_of_steps_per_epoch():
    opt = make_optimizer('adam', lr=1e-3)
    sched = build_scheduler(opt, name='cosine_restarts', total_steps=360, steps_per_epoch=2,
                            restarts=[50, 150], min_lr=1e-5)
    lrs = lrs_over(sched, 360)
    assert lrs[0] == approx(1e-3)
    assert lrs[99] == approx(cosine_restarts_lr(1e-3, 49.5, min_lr=1e-5))
    assert lrs[100] == approx(1e-3)                    # epoch 50: restart
    assert lrs[200] == approx(1e-5 + (1e-3 - 1e-5) / 2)  # epoch 100
    assert lrs[300] == approx(1e-3)                    # epoch 150: restart
    assert lrs[359] == approx(cosine_restarts_lr(1e-3, 179.5, min_lr=1e-5))


def test_cosine_restarts_min_lr_is_absolute_per_param_group():
    params = [{'params': [nn.Parameter(torch.zeros(1))], 'lr': 1e-3},
              {'params': [nn.Parameter(torch.zeros(1))], 'lr': 1e-2}]
    opt = build_optimizer(params, name='adam', lr=1e-3)
    sched = build_scheduler(opt, name='cosine_restarts', total_steps=10, steps_per_epoch=1,
                            restarts=[], min_lr=1e-4)
    for _ in range(5):
        opt.step()
        sched.step()
    assert [g['lr'] for g in opt.param_groups] == [
        approx(1e-4 + (1e-3 - 1e-4) / 2), approx(1e-4 + (1e-2 - 1e-4) / 2)]


def test_onecycle_via_builder():
    opt = make_optimizer('sgd', lr=0.1)
    sched = build_scheduler(opt, name='onecycle', total_steps=100, steps_per_epoch=10)
    assert isinstance(sched, OneCycleLR)
    assert opt.param_groups[0]['momentum'] == approx(0.95)  # cycled against the lr
    lrs = lrs_over(sched, 100)
    assert lrs[0] == approx(0.1 / 25)              # max_lr / div_factor
    assert max(lrs) == approx(0.1) and lrs.index(max(lrs)) == 29  # pct_start 0.3
    assert lrs[-1] == approx(0.1 / 25 / 1e4)       # / final_div_factor


def test_onecycle_options_are_forwarded():
    opt = make_optimizer('adamw', lr=0.1)
    sched = build_scheduler(opt, name='onecycle', total_steps=10, steps_per_epoch=10,
                            max_lr=0.5, div_factor=10.0, anneal_strategy='linear')
    assert lrs_over(sched, 1) == [approx(0.05)]


def test_constant_scheduler():
    opt = make_optimizer(lr=0.02)
    sched = build_scheduler(opt, name='constant', total_steps=5, steps_per_epoch=1)
    assert lrs_over(sched, 5) == [approx(0.02)] * 5


def test_build_scheduler_errors_name_the_allowed_values():
    opt = make_optimizer()
    with pytest.raises(ValueError, match='poly, cosine_restarts, onecycle, constant'):
        build_scheduler(opt, name='step', total_steps=10, steps_per_epoch=1)
    with pytest.raises(TypeError, match="'powr'.*allowed: power, warmup_steps, warmup_ratio"):
        build_scheduler(opt, name='poly', total_steps=10, steps_per_epoch=1, powr=0.9)
    with pytest.raises(TypeError, match='allowed: none'):
        build_scheduler(opt, name='constant', total_steps=10, steps_per_epoch=1, power=0.9)
    with pytest.raises(ValueError, match='restarts'):
        build_scheduler(opt, name='cosine_restarts', total_steps=100, steps_per_epoch=1,
                        restarts=[50, 150])


@pytest.mark.parametrize('name, options', [
    ('poly', {'warmup_steps': 5, 'warmup_ratio': 0.2}),
    ('cosine_restarts', {'restarts': [3, 7], 'min_lr': 1e-4}),
    ('onecycle', {}),
    ('constant', {}),
])
def test_scheduler_state_dict_round_trip_resumes_exactly(name, options):
    def build() -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        opt = make_optimizer('adam', lr=0.01)
        return opt, build_scheduler(opt, name=name, total_steps=40, steps_per_epoch=4,
                                    **options)

    opt, sched = build()
    lrs_over(sched, 13)
    buffer = io.BytesIO()  # through a checkpoint file, loaded the safe way
    torch.save({'optimizer': opt.state_dict(), 'scheduler': sched.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)

    opt2, sched2 = build()
    opt2.load_state_dict(state['optimizer'])
    sched2.load_state_dict(state['scheduler'])
    assert sched2.get_last_lr() == sched.get_last_lr()
    assert lrs_over(sched2, 20) == lrs_over(sched, 20)


# --- build_optimizer ---------------------------------------------------------------------------

def test_build_optimizer_variants():
    params = list(nn.Linear(2, 2).parameters())
    sgd = build_optimizer(params, name='sgd', lr=0.025, weight_decay=1e-4)
    assert isinstance(sgd, torch.optim.SGD)
    assert sgd.defaults['momentum'] == 0.9 and sgd.defaults['weight_decay'] == 1e-4
    adam = build_optimizer(params, name='adam', lr=1e-3, betas=[0.9, 0.999])
    assert isinstance(adam, torch.optim.Adam) and adam.defaults['betas'] == (0.9, 0.999)
    assert adam.defaults['weight_decay'] == 0.0
    adamw = build_optimizer(params, name='adamw', lr=1e-4, weight_decay=1e-4)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults['weight_decay'] == 1e-4
    with pytest.raises(ValueError, match='sgd, adam, adamw'):
        build_optimizer(params, name='rmsprop', lr=0.1)


# --- phased binarisation -----------------------------------------------------------------------

@pytest.mark.parametrize('epoch, expected', [
    (0, 0.0), (49.99, 0.0),               # float phase
    (50, 0.01), (50.5, 0.01), (51, 0.02),  # one more whole epoch, one more step
    (100, 0.51), (148, 0.99),
    (149, 1.0), (149.5, 1.0),             # the last epoch of the phase is fully binary
    (150, 1.0), (179, 1.0),
])
def test_binary_fraction_table10(epoch, expected):
    assert binary_fraction(epoch, 50, 150) == approx(expected)


def test_binary_fraction_edge_cases():
    assert binary_fraction(9.9, 10, 10) == 0.0
    assert binary_fraction(10, 10, 10) == 1.0
    assert binary_fraction(0, 0, 4) == 0.25
    with pytest.raises(ValueError):
        binary_fraction(0, 150, 50)
    with pytest.raises(ValueError):
        binary_fraction(0, -1, 50)


def test_binary_fraction_with_set_binary_fraction_turns_groups_binary_by_depth():
    model = nn.Sequential(*(BinaryConv2d(1, 1, 3, padding=1) for _ in range(4)))
    expected = {0: 0, 49: 0, 50: 1, 74: 1, 75: 2, 99: 2, 100: 3, 124: 3, 125: 4, 149: 4,
                150: 4, 179: 4}
    for epoch, count in expected.items():
        assert set_binary_fraction(model, binary_fraction(epoch, 50, 150)) == count, epoch
        assert [layer.binary for layer in model] == [True] * count + [False] * (4 - count)
