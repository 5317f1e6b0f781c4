import numpy as np
import pytest
import yaml

from seg_perception.core.classes import CLASS_SET_NAMES, load_class_set, parse_class_set
from seg_perception.tools.gen_class_sets import cityscapes19


@pytest.mark.parametrize('name', CLASS_SET_NAMES)
def test_every_class_set_loads(name):
    cs = load_class_set(name)
    assert cs.name == name
    assert cs.colors.shape == (cs.num_classes, 3)
    assert cs.palette.shape == (256, 3)


def test_camvid11_has_void_at_11_and_road_drivable():
    cs = load_class_set('camvid11')
    assert cs.num_classes == 11
    assert cs.ignore_index == 11
    assert cs.names[3] == 'Road' and cs.index('road') == 3
    assert cs.drivable == ('Road',)
    assert tuple(cs.palette[3]) == (128, 64, 128)
    assert tuple(cs.palette[11]) == (0, 0, 0)


def test_cityscapes19_matches_cityscapesscripts_table():
    from cityscapesscripts.helpers.labels import trainId2label

    cs = load_class_set('cityscapes19')
    assert cs.num_classes == 19 and cs.ignore_index == 255
    for train_id, name in enumerate(cs.names):
        label = trainId2label[train_id]
        assert name == label.name
        assert tuple(cs.colors[train_id]) == label.color
    # And the file is exactly what the generator writes today.
    shipped = yaml.safe_load(open(cs_path('cityscapes19')))
    assert shipped == cityscapes19()


def cs_path(name):
    from seg_perception.core.classes import class_set_path

    return class_set_path(name)


@pytest.mark.parametrize('name,positive', [('binary_human', 'human'),
                                           ('binary_vehicle', 'vehicle')])
def test_binary_sets(name, positive):
    cs = load_class_set(name)
    assert cs.is_binary and cs.names == ('background', positive)


def test_unknown_class_name_and_set_raise_with_names():
    with pytest.raises(KeyError, match='camvid11'):
        load_class_set('camvid11').index('Lava')
    with pytest.raises(FileNotFoundError, match='known'):
        load_class_set('nope')


def test_malformed_class_set_is_rejected():
    with pytest.raises(ValueError, match='without gaps'):
        parse_class_set({'name': 'x', 'classes': [{'id': 0, 'name': 'a', 'color': [0, 0, 0]},
                                                  {'id': 2, 'name': 'b', 'color': [1, 1, 1]}]})


def test_palette_lookup_is_a_colour_image():
    from seg_perception.core.visualize import colorize

    labels = np.array([[0, 3], [11, 8]], np.uint8)
    color = colorize(labels, load_class_set('camvid11'))
    assert color.shape == (2, 2, 3) and color.dtype == np.uint8
    assert color[0, 1].tolist() == [128, 64, 128] and color[1, 1].tolist() == [64, 0, 128]
