import numpy as np
import pytest

from seg_perception.core.metrics import ConfusionMatrix


def test_hand_computed_values():
    gt = np.array([[0, 0, 1, 1], [2, 2, 9, 9]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 0, 2]])
    cm = ConfusionMatrix(3, ignore_index=9)
    cm.update(pred, gt)
    # class 0: tp 1, fp 1 (gt 2 -> 0), fn 1 (-> 1): IoU 1/3; class 1: tp 2, fp 1: 2/3;
    # class 2: tp 1, fn 1: 1/2. Ignored pixels (gt 9) count nowhere.
    np.testing.assert_allclose(cm.per_class_iou(), [1 / 3, 2 / 3, 1 / 2])
    assert cm.miou() == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert cm.pixel_accuracy() == pytest.approx(4 / 6)
    np.testing.assert_allclose(cm.per_class_dice(), [2 / 4, 4 / 5, 2 / 3])


def test_absent_class_is_nan_not_zero():
    cm = ConfusionMatrix(3)
    cm.update(np.zeros((2, 2), int), np.zeros((2, 2), int))
    iou = cm.per_class_iou()
    assert iou[0] == 1.0 and np.isnan(iou[1:]).all() and cm.miou() == 1.0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match='differ'):
        ConfusionMatrix(2).update(np.zeros((2, 2)), np.zeros((2, 3)))
