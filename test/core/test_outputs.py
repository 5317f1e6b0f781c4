import numpy as np

from seg_perception.core.classes import load_class_set
from seg_perception.core.drivable import DrivableArea, DrivableConfig
from seg_perception.core.outputs import render_outputs
from seg_perception.core.segmenter import Segmentation, resize_nearest


def make_result(size=(6, 8), net=(3, 4)):
    rng = np.random.default_rng(0)
    net_labels = rng.integers(0, 11, net, dtype=np.uint8)
    net_labels[-1] = 3  # road along the bottom
    labels = resize_nearest(net_labels, size)
    return Segmentation(labels, np.full(size, 200, np.uint8), None, 1.0, net_labels)


def test_only_wanted_outputs_are_made():
    result = make_result()
    rgb = np.zeros((6, 8, 3), np.uint8)
    cs = load_class_set('camvid11')
    assert set(render_outputs(result, rgb, {'labels'}, cs)) == {'labels'}
    assert set(render_outputs(result, rgb, {'overlay'}, cs)) == {'overlay'}
    assert render_outputs(result, rgb, set(), cs) == {}
    # No estimator (binary model) or no mask (multi-class model): not made even if wanted.
    assert set(render_outputs(result, rgb, {'drivable', 'mask'}, cs)) == set()


def test_colour_and_drivable_from_network_labels_equal_full_size_ones():
    result = make_result()
    rgb = np.full((6, 8, 3), 100, np.uint8)
    cs = load_class_set('camvid11')
    estimator = DrivableArea(DrivableConfig(class_ids=(3,), close_kernel=0, open_kernel=0))
    out = render_outputs(result, rgb, {'color', 'overlay', 'drivable', 'confidence'}, cs,
                         estimator, overlay_alpha=1.0)
    np.testing.assert_array_equal(out['color'], cs.palette[result.labels])
    np.testing.assert_array_equal(out['overlay'], cs.palette[result.labels])
    full = DrivableArea(DrivableConfig(class_ids=(3,), close_kernel=0, open_kernel=0))
    np.testing.assert_array_equal(out['drivable'], full(result.labels))
    assert out['drivable'][-1].min() == 255
    assert out['confidence'] is result.confidence
