"""Losses against values computed by hand on tiny tensors.

Logit pairs are chosen so that the softmax is exact: (ln 3, 0) gives p = (3/4, 1/4) and
(0, 0) gives (1/2, 1/2).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
import torch.nn.functional as F

from seg_perception.models.binarize import binary_weight_l1
from seg_perception.models.layers.binary import BinaryConv2d
from training.losses import (
    LOSSES,
    AuxWeighted,
    CEDice,
    CrossEntropy,
    DiceLoss,
    HingeLoss,
    JetLoss,
    OhemCrossEntropy,
    build_loss,
    effective_number_weights,
)

LN3 = math.log(3.0)
IGNORE = 255


def pixels(*logits: tuple[float, ...]) -> torch.Tensor:
    """(1, C, 1, W) logits from W per-pixel tuples of C scores."""
    return torch.tensor(logits, dtype=torch.float32).T.reshape(len(logits[0]), 1, -1)[None]


def labels(*classes: int) -> torch.Tensor:
    return torch.tensor(classes, dtype=torch.int64).view(1, 1, -1)


def approx(value: float) -> object:
    return pytest.approx(value, rel=1e-5, abs=1e-7)


# Two pixels, p_true = 3/4 (class 0) and 1/2 (class 1), plus an ignored pixel whose huge
# logits would dominate every loss if it leaked in.
LOGITS = pixels((LN3, 0.0), (0.0, 0.0), (-40.0, 40.0))
TARGET = labels(0, 1, IGNORE)


# --- cross-entropy ---------------------------------------------------------------------------

def test_ce_mean_over_non_ignored_pixels():
    expected = (math.log(4 / 3) + math.log(2)) / 2
    assert CrossEntropy()(LOGITS, TARGET).item() == approx(expected)


def test_ce_class_weights_weight_each_pixel_by_its_true_class():
    expected = (1 * math.log(4 / 3) + 3 * math.log(2)) / (1 + 3)
    assert CrossEntropy(weight=[1.0, 3.0])(LOGITS, TARGET).item() == approx(expected)


def test_ce_label_smoothing_by_hand_ignored_pixel_contributes_nothing():
    # eps = 0.2, C = 2: q = (0.9, 0.1) on the true / other class (BiSegUNet eq. 26).
    pixel_a = -0.9 * math.log(0.75) - 0.1 * math.log(0.25)
    pixel_b = -0.9 * math.log(0.5) - 0.1 * math.log(0.5)
    loss = CrossEntropy(label_smoothing=0.2)(LOGITS, TARGET)
    assert loss.item() == approx((pixel_a + pixel_b) / 2)
    # Same as torch's, which also leaves ignored pixels out of the smoothing term.
    reference = F.cross_entropy(LOGITS, TARGET, ignore_index=IGNORE, label_smoothing=0.2)
    assert loss.item() == approx(reference.item())


def test_ce_matches_torch_on_random_input():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 4, 3, generator=gen)
    target = torch.randint(0, 5, (2, 4, 3), generator=gen)
    target[0, 0] = IGNORE
    weight = torch.tensor([1.0, 2.0, 0.5, 1.5, 3.0])
    assert CrossEntropy(weight=weight)(logits, target).item() == approx(
        F.cross_entropy(logits, target, weight=weight, ignore_index=IGNORE).item())


def test_ce_ignore_index_is_configurable():
    target = labels(0, 1, 7)
    logits = pixels((LN3, 0.0), (0.0, 0.0), (-40.0, 40.0))
    expected = (math.log(4 / 3) + math.log(2)) / 2
    assert CrossEntropy(ignore_index=7)(logits, target).item() == approx(expected)


# --- OHEM --------------------------------------------------------------------------------------

# All class 0, p_true = 0.9, 0.75, 0.5, 0.25 (logit ln 9, ln 3, 0, -ln 3 against 0), and an
# ignored pixel with p_true ~ 0 that must never be mined.
OHEM_LOGITS = pixels((math.log(9), 0.0), (LN3, 0.0), (0.0, 0.0), (-LN3, 0.0), (-40.0, 0.0))
OHEM_TARGET = labels(0, 0, 0, 0, IGNORE)
CE_OF = {0.9: math.log(10 / 9), 0.75: math.log(4 / 3), 0.5: math.log(2), 0.25: math.log(4)}


def test_ohem_keeps_pixels_below_thresh():
    # min_kept = 1: the 1st smallest p (0.25) is under 0.7, so the threshold stays 0.7.
    loss = OhemCrossEntropy(thresh=0.7, min_kept=1)(OHEM_LOGITS, OHEM_TARGET)
    assert loss.item() == approx((CE_OF[0.5] + CE_OF[0.25]) / 2)


def test_ohem_min_kept_raises_the_threshold():
    # min_kept = 3: the 3rd smallest p is 0.75 > 0.7, so p <= 0.75 is kept.
    loss = OhemCrossEntropy(thresh=0.7, min_kept=3)(OHEM_LOGITS, OHEM_TARGET)
    assert loss.item() == approx((CE_OF[0.75] + CE_OF[0.5] + CE_OF[0.25]) / 3)


@pytest.mark.parametrize('min_kept', [4, 100000])
def test_ohem_keeps_every_valid_pixel_when_min_kept_reaches_their_count(min_kept):
    loss = OhemCrossEntropy(thresh=0.7, min_kept=min_kept)(OHEM_LOGITS, OHEM_TARGET)
    assert loss.item() == approx(sum(CE_OF.values()) / 4)


def test_ohem_min_kept_zero_still_thresholds():
    loss = OhemCrossEntropy(thresh=0.6, min_kept=0)(OHEM_LOGITS, OHEM_TARGET)
    assert loss.item() == approx((CE_OF[0.5] + CE_OF[0.25]) / 2)


def test_ohem_rejects_bad_options():
    with pytest.raises(ValueError, match='thresh'):
        OhemCrossEntropy(thresh=0.0)
    with pytest.raises(ValueError, match='min_kept'):
        OhemCrossEntropy(min_kept=-1)


# --- hinge -------------------------------------------------------------------------------------

def test_hinge_eq1_sum_over_classes_mean_over_pixels():
    logits = pixels((2.0, -0.5), (0.3, 0.4), (-40.0, 40.0))
    # Pixel a (class 0): max(0, 1 - 2) + max(0, 1 + (-0.5)) = 0 + 0.5.
    # Pixel b (class 1): max(0, 1 + 0.3) + max(0, 1 - 0.4) = 1.3 + 0.6.
    loss = HingeLoss()(logits, TARGET)
    assert loss.item() == approx((0.5 + 1.9) / 2)


def test_hinge_three_classes():
    logits = pixels((1.0, -2.0, 0.5))
    # Class 2 true: (1 + 1) + max(0, 1 - 2) + (1 - 0.5) = 2.5.
    assert HingeLoss()(logits, labels(2)).item() == approx(2.5)


def test_hinge_gradient_is_minus_zeta_on_active_margins():
    logits = pixels((2.0, -0.5), (0.3, 0.4)).requires_grad_()
    HingeLoss()(logits, labels(0, 1)).backward()
    # Active terms: a/class 1 (zeta -1: d/dy = +1), b/class 0 (+1), b/class 1 (-1); / 2 px.
    expected = pixels((0.0, 0.5), (0.5, -0.5))
    assert torch.allclose(logits.grad, expected)


def test_hinge_class_weights_weight_each_pixel_by_its_true_class():
    logits = pixels((2.0, -0.5), (0.3, 0.4), (-40.0, 40.0))
    # Per-pixel h as above: 0.5 (class 0, weight 1) and 1.9 (class 1, weight 4); the ignored
    # pixel adds neither loss nor weight.
    loss = HingeLoss(weight=[1.0, 4.0])(logits, TARGET)
    assert loss.item() == approx((0.5 * 1 + 1.9 * 4) / 5)
    assert HingeLoss(weight=[1.0, 1.0])(logits, TARGET).item() == approx((0.5 + 1.9) / 2)
    with pytest.raises(ValueError, match='weight has 3 entries'):
        HingeLoss(weight=[1.0, 1.0, 1.0])(logits, TARGET)


# --- Dice --------------------------------------------------------------------------------------

def test_dice_by_hand_with_and_without_smoothing():
    # p = (3/4, 1/4) for pixel a (class 0), (1/4, 3/4) for pixel b (class 1).
    logits = pixels((LN3, 0.0), (0.0, LN3), (-40.0, 40.0))
    # Each class: intersection 3/4, sum p = 1, sum y = 1.
    assert DiceLoss(smooth=1.0)(logits, TARGET).item() == approx(1 - 2.5 / 3)
    assert DiceLoss(smooth=0.0)(logits, TARGET).item() == approx(1 - 1.5 / 2)


def test_dice_averages_only_classes_present_in_target_or_prediction():
    # p = (6, 1, 1) / 8 and (1, 6, 1) / 8: class 2 is neither a target nor an arg-max.
    ln6 = math.log(6)
    logits = pixels((ln6, 0.0, 0.0), (0.0, ln6, 0.0))
    # Classes 0 and 1: (2 * 6/8 + 1) / (7/8 + 1 + 1) = 2.5 / 2.875 = 20 / 23.
    assert DiceLoss()(logits, labels(0, 1)).item() == approx(1 - 20 / 23)


def test_dice_counts_a_class_that_is_only_predicted():
    # Pixel b is class 1 but predicted class 0; class 2 is no target but pixel c's arg-max.
    logits = pixels((LN3, 0.0, -40.0), (LN3, 0.0, -40.0), (0.0, -40.0, LN3))
    # p rows: a (3/4, 1/4, 0), b (3/4, 1/4, 0), c (1/4, 0, 3/4); targets 0, 1, 0.
    target = labels(0, 1, 0)
    d0 = (2 * (0.75 + 0.25) + 1) / ((0.75 + 0.75 + 0.25) + 2 + 1)
    d1 = (2 * 0.25 + 1) / ((0.25 + 0.25) + 1 + 1)
    d2 = (0 + 1) / (0.75 + 0 + 1)
    assert DiceLoss()(logits, target).item() == approx(1 - (d0 + d1 + d2) / 3)


# --- CE + Dice ---------------------------------------------------------------------------------

def test_ce_dice_weighted_sum():
    logits = pixels((LN3, 0.0), (0.0, LN3), (-40.0, 40.0))
    ce = math.log(4 / 3)  # both pixels have p_true = 3/4
    dice = 1 - 2.5 / 3
    assert CEDice()(logits, TARGET).item() == approx(ce + dice)
    loss = CEDice(ce_weight=0.5, dice_weight=2.0, smooth=0.0)(logits, TARGET)
    assert loss.item() == approx(0.5 * ce + 2.0 * (1 - 1.5 / 2))


# --- JetLoss -----------------------------------------------------------------------------------

def test_jetloss_by_hand_uniform_weights():
    logits = pixels((LN3, 0.0), (0.0, LN3), (-40.0, 40.0))
    # Each class: TP 3/4, FN 1/4, FP 1/4 -> R = 3/4, P = 3/4, IoU = 3/4 / 5/4 = 3/5.
    loss = JetLoss(eps=0.0)(logits, TARGET)
    assert loss.item() == approx(1 - (0.75 + 0.75 + 0.6) / 3)


def test_jetloss_by_hand_class_weights_are_normalised():
    logits = pixels((LN3, 0.0), (LN3, 0.0), (0.0, LN3))
    target = labels(0, 0, 1)
    # Class 0: p0 = 3/4, 3/4, 1/4: TP 3/2, FN 1/2, FP 1/4 -> R 3/4, P 6/7, IoU 2/3.
    # Class 1: p1 = 1/4, 1/4, 3/4: TP 3/4, FN 1/4, FP 1/2 -> R 3/4, P 3/5, IoU 1/2.
    w0, w1 = 0.75, 0.25  # (3, 1) normalised
    recall = w0 * 0.75 + w1 * 0.75
    precision = w0 * 6 / 7 + w1 * 0.6
    iou = w0 * 2 / 3 + w1 * 0.5
    loss = JetLoss(class_weights=[3.0, 1.0], eps=0.0)(logits, target)
    assert loss.item() == approx(1 - (recall + precision + iou) / 3)


def test_jetloss_is_zero_for_a_perfect_prediction_and_decreases_towards_it():
    target = labels(0, 1)
    perfect = pixels((40.0, -40.0), (-40.0, 40.0))
    assert JetLoss()(perfect, target).item() == pytest.approx(0.0, abs=1e-6)
    worse = pixels((1.0, 0.0), (0.0, 1.0))
    better = pixels((2.0, 0.0), (0.0, 2.0))
    assert JetLoss()(better, target) < JetLoss()(worse, target)


def test_effective_number_weights_by_hand():
    # beta = 0.5: (1 - b) / (1 - b^n) = 1 for n = 1 and 2/3 for n = 2 -> (0.6, 0.4); n = 0: 0.
    weights = effective_number_weights([1, 2, 0], beta=0.5)
    assert torch.allclose(weights, torch.tensor([0.6, 0.4, 0.0]))


# --- auxiliary heads ---------------------------------------------------------------------------

def test_aux_weighted_sum_by_hand():
    main, aux1, aux2 = pixels((0.0, 0.0)), pixels((LN3, 0.0)), pixels((0.0, LN3))
    target = labels(0)
    loss = AuxWeighted(CrossEntropy(), aux_weights=(1.0, 0.4))((main, aux1, aux2), target)
    assert loss.item() == approx(math.log(2) + math.log(4 / 3) + 0.4 * math.log(4))


def test_aux_weighted_tensor_is_the_main_output_alone():
    loss = AuxWeighted(CrossEntropy(), aux_weights=(1.0, 1.0))(pixels((0.0, 0.0)), labels(0))
    assert loss.item() == approx(math.log(2))


def test_aux_weighted_length_mismatch_raises():
    crit = build_loss('ce', num_classes=2, aux_weights=(1.0, 1.0))
    assert isinstance(crit, AuxWeighted)
    out = pixels((0.0, 0.0))
    with pytest.raises(ValueError, match='outputs'):
        crit((out, out), labels(0))
    with pytest.raises(ValueError, match='outputs'):
        crit((out, out, out, out), labels(0))


def test_bare_loss_rejects_a_tuple_and_names_aux_weights():
    out = pixels((0.0, 0.0))
    with pytest.raises(TypeError, match='aux_weights'):
        CrossEntropy()((out, out), labels(0))


# --- every loss --------------------------------------------------------------------------------

@pytest.mark.parametrize('name', sorted(LOSSES))
def test_all_ignored_batch_gives_zero_with_grad(name):
    logits = torch.randn(2, 3, 2, 2, requires_grad=True)
    target = torch.full((2, 2, 2), IGNORE, dtype=torch.int64)
    loss = build_loss(name, num_classes=3)(logits, target)
    assert loss.dim() == 0 and loss.item() == 0.0 and loss.requires_grad
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize('name', sorted(LOSSES))
def test_scalar_finite_and_differentiable_with_ignored_pixels(name):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 4, generator=gen).requires_grad_()
    target = torch.randint(0, 3, (2, 4, 4), generator=gen)
    target[:, 0] = IGNORE
    loss = build_loss(name, num_classes=3)(logits, target)
    loss.backward()
    assert loss.dim() == 0 and torch.isfinite(loss)
    assert torch.isfinite(logits.grad).all()
    # Ignored pixels get no gradient.
    assert torch.equal(logits.grad[:, :, 0], torch.zeros_like(logits.grad[:, :, 0]))


def test_half_precision_logits_are_computed_in_float32():
    logits = LOGITS.half()
    assert CrossEntropy()(logits, TARGET).dtype == torch.float32


def test_shape_and_dtype_errors():
    with pytest.raises(ValueError, match='target shape'):
        CrossEntropy()(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match='int64'):
        CrossEntropy()(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.int32))
    with pytest.raises(ValueError, match='classes'):
        CrossEntropy(weight=[1.0, 2.0, 3.0])(LOGITS, TARGET)


# --- builder -----------------------------------------------------------------------------------

@pytest.mark.parametrize('name, cls', [('ce', CrossEntropy), ('ohem', OhemCrossEntropy),
                                       ('hinge', HingeLoss), ('dice', DiceLoss),
                                       ('ce_dice', CEDice), ('jetloss', JetLoss)])
def test_build_loss_names(name, cls):
    loss = build_loss(name, num_classes=2, ignore_index=7)
    assert isinstance(loss, cls)
    assert (loss.ce if name == 'ce_dice' else loss).ignore_index == 7


def test_build_loss_forwards_options():
    loss = build_loss('ohem', num_classes=2, thresh=0.6, min_kept=0)
    assert (loss.thresh, loss.min_kept) == (0.6, 0)
    loss = build_loss('ce', num_classes=2, weight=[1.0, 3.0], label_smoothing=0.1)
    assert loss.label_smoothing == 0.1 and loss.weight.tolist() == [1.0, 3.0]


def test_build_loss_unknown_name_names_the_allowed_ones():
    with pytest.raises(ValueError, match='ce, ohem, hinge, dice, ce_dice, jetloss'):
        build_loss('focal', num_classes=2)


def test_build_loss_unknown_option_names_the_allowed_ones():
    with pytest.raises(TypeError, match="'treshold'.*allowed: thresh, min_kept, weight"):
        build_loss('ohem', num_classes=2, treshold=0.7)
    with pytest.raises(TypeError, match="'smooth'"):
        build_loss('hinge', num_classes=2, smooth=1.0)


def test_build_loss_checks_per_class_option_length():
    with pytest.raises(ValueError, match='num_classes'):
        build_loss('jetloss', num_classes=3, class_weights=[1.0, 2.0])


# --- BiSegUNet eqs. 24-25: binary-weight L1 --------------------------------------------------

def test_binary_weight_l1_by_hand_in_the_final_loss():
    model = nn.Sequential(nn.Conv2d(1, 1, 1), BinaryConv2d(1, 1, 2))
    with torch.no_grad():
        model[0].weight.fill_(0.3)  # float conv: not regularised
        model[1].weight.copy_(torch.tensor([[[[0.5, -0.25], [1.5, -1.0]]]]))
    # |0.5 - 1| + |-0.25 + 1| + |1.5 - 1| + |-1 + 1| = 0.5 + 0.75 + 0.5 + 0 = 1.75.
    l_bin = binary_weight_l1(model, reduction='sum')
    assert l_bin.item() == approx(1.75)
    assert binary_weight_l1(model, reduction='mean').item() == approx(1.75 / 4)

    lambda3 = 1e-4  # Table 10
    l_total = CEDice()(LOGITS, TARGET)
    l_final = l_total + lambda3 * l_bin  # eq. 25
    assert l_final.item() == approx(l_total.item() + 1.75e-4)
    l_final.backward()
    # d|W - sign W| / dW = sign(W - sign W) (sign W a constant), 0 at W = -1.
    assert torch.allclose(model[1].weight.grad,
                          lambda3 * torch.tensor([[[[-1.0, 1.0], [1.0, 0.0]]]]))
    assert model[0].weight.grad is None


def test_binary_weight_l1_skips_layers_still_float():
    model = nn.Sequential(BinaryConv2d(1, 1, 2))
    model[0].binary = False
    assert binary_weight_l1(model).item() == 0.0
