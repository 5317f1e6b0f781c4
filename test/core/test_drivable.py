"""Drivable area on hand-drawn label maps with known answers (Road = 3 as in CamVid)."""

import numpy as np
import pytest

from seg_perception.core.drivable import DrivableArea, DrivableConfig

ROAD, CAR, SKY = 3, 8, 0


def area(**kw) -> DrivableArea:
    defaults = dict(class_ids=(ROAD,), close_kernel=0, open_kernel=0, bottom_band=0.1)
    return DrivableArea(DrivableConfig(**{**defaults, **kw}))


def test_only_regions_touching_the_bottom_band_are_kept():
    labels = np.full((40, 40), SKY, np.uint8)
    labels[30:, 5:35] = ROAD     # the road we stand on
    labels[2:8, 10:20] = ROAD    # road seen far away, not connected
    mask = area()(labels)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 255}
    expected = np.zeros((40, 40), np.uint8)
    expected[30:, 5:35] = 255
    np.testing.assert_array_equal(mask, expected)


def test_region_connected_through_a_corridor_is_kept():
    labels = np.zeros((40, 40), np.uint8)
    labels[36:, :] = ROAD
    labels[5:36, 18:22] = ROAD   # corridor up the middle
    labels[5:10, 0:40] = ROAD    # cross street reached through it
    mask = area()(labels)
    assert mask[7, 2] == 255 and mask[20, 19] == 255 and mask[20, 10] == 0


def test_closing_fills_a_lane_marking_hole():
    labels = np.full((30, 30), ROAD, np.uint8)
    labels[10:20, 14:16] = SKY   # a 2-pixel-wide lane marking misread
    assert area()(labels)[15, 14] == 0
    assert area(close_kernel=5)(labels)[15, 14] == 255


def test_opening_removes_a_thin_spur():
    labels = np.zeros((30, 30), np.uint8)
    labels[20:, :] = ROAD
    labels[5:20, 15] = ROAD      # 1-pixel spur up from the road
    assert area()(labels)[10, 15] == 255
    assert area(open_kernel=3)(labels)[10, 15] == 0
    assert area(open_kernel=3)(labels)[25, 15] == 255


def test_several_classes_and_nothing_drivable():
    labels = np.zeros((10, 10), np.uint8)
    labels[5:, :5] = ROAD
    labels[5:, 5:] = 4           # pavement
    assert area(class_ids=(ROAD, 4))(labels)[5:].min() == 255
    assert area()(np.full((10, 10), CAR, np.uint8)).max() == 0


def test_temporal_majority_vote_and_reset_on_size_change():
    estimator = area(smoothing_frames=3)
    road = np.full((10, 10), ROAD, np.uint8)
    none = np.zeros((10, 10), np.uint8)
    assert estimator(road).min() == 255        # 1 of 1
    assert estimator(none).max() == 0          # 1 of 2 is not a majority
    assert estimator(road).min() == 255        # 2 of 3
    assert estimator(none).max() == 0          # 1 of 3 (oldest road fell out)
    assert estimator(np.full((8, 8), ROAD, np.uint8)).min() == 255  # new size: fresh start


def test_bad_config_and_labels_raise():
    with pytest.raises(ValueError, match='bottom_band'):
        DrivableConfig(class_ids=(3,), bottom_band=0.0)
    with pytest.raises(ValueError, match='uint8'):
        area()(np.zeros((4, 4), np.int32))
