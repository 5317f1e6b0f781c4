"""ADE20K, SceneParsing 150-class benchmark (ADEChallengeData2016.zip), official layout.

    root/ADEChallengeData2016/images/{training,validation}/ADE_*.jpg     (or root = that folder)
    root/ADEChallengeData2016/annotations/{training,validation}/ADE_*.png   grey, 0..150

Annotation value 0 is 'other' (unlabelled) and 1..150 are the classes of objectInfo150.csv;
training ids are value - 1 (0..149) and 0 becomes void 255: the `reduce_zero_label`
convention. There is no ade150 class set in seg_perception, so `class_set` is None for the
multiclass view and the names are in ADE150_CLASSES. Splits 'train' / 'val' are aliases of
'training' / 'validation'.
"""

from __future__ import annotations

from pathlib import Path

from .base import (
    LabelSpec,
    LayoutDataset,
    Pair,
    make_lut,
    match_labels,
    require_dir,
    task_spec,
)

IGNORE = 255
SPLIT_FOLDERS = {'train': 'training', 'val': 'validation', 'training': 'training',
                 'validation': 'validation'}
SPLITS = tuple(SPLIT_FOLDERS)
# objectInfo150.csv order, first name of each entry; training id = index, raw value = index + 1.
ADE150_CLASSES = (
    'wall', 'building', 'sky', 'floor', 'tree', 'ceiling', 'road', 'bed', 'windowpane',
    'grass', 'cabinet', 'sidewalk', 'person', 'earth', 'door', 'table', 'mountain', 'plant',
    'curtain', 'chair', 'car', 'water', 'painting', 'sofa', 'shelf', 'house', 'sea', 'mirror',
    'rug', 'field', 'armchair', 'seat', 'fence', 'desk', 'rock', 'wardrobe', 'lamp', 'bathtub',
    'railing', 'cushion', 'base', 'box', 'column', 'signboard', 'chest of drawers', 'counter',
    'sand', 'sink', 'skyscraper', 'fireplace', 'refrigerator', 'grandstand', 'path', 'stairs',
    'runway', 'case', 'pool table', 'pillow', 'screen door', 'stairway', 'river', 'bridge',
    'bookcase', 'blind', 'coffee table', 'toilet', 'flower', 'book', 'hill', 'bench',
    'countertop', 'stove', 'palm', 'kitchen island', 'computer', 'swivel chair', 'boat', 'bar',
    'arcade machine', 'hovel', 'bus', 'towel', 'light', 'truck', 'tower', 'chandelier',
    'awning', 'streetlight', 'booth', 'television receiver', 'airplane', 'dirt track',
    'apparel', 'pole', 'land', 'bannister', 'escalator', 'ottoman', 'bottle', 'buffet',
    'poster', 'stage', 'van', 'ship', 'fountain', 'conveyer belt', 'canopy', 'washer',
    'plaything', 'swimming pool', 'stool', 'barrel', 'basket', 'waterfall', 'tent', 'bag',
    'minibike', 'cradle', 'oven', 'ball', 'food', 'step', 'tank', 'trade name', 'microwave',
    'pot', 'animal', 'bicycle', 'lake', 'dishwasher', 'screen', 'blanket', 'sculpture', 'hood',
    'sconce', 'vase', 'traffic light', 'tray', 'ashcan', 'fan', 'pier', 'crt screen', 'plate',
    'monitor', 'bulletin board', 'shower', 'radiator', 'glass', 'clock', 'flag',
)
# Road vehicles, as in the Cityscapes view (ADE150 has no train class); boat, airplane and
# ship are background. Raw values: person 13; car 21, bus 81, truck 84, van 103,
# minibike 117, bicycle 128.
POSITIVE_CLASSES = {
    'human': ('person',),
    'vehicle': ('car', 'bus', 'truck', 'van', 'minibike', 'bicycle'),
}


def ade20k_spec(task: str) -> LabelSpec:
    """Multiclass: raw 1..150 -> 0..149, 0 (other) -> 255; binary views from it."""
    lut = make_lut({i + 1: i for i in range(len(ADE150_CLASSES))}, default=IGNORE)
    multiclass = LabelSpec(lut=lut, num_classes=len(ADE150_CLASSES), ignore_index=IGNORE,
                           class_set=None, class_names=ADE150_CLASSES)
    positives = {t: [ADE150_CLASSES.index(n) + 1 for n in names]
                 for t, names in POSITIVE_CLASSES.items()}
    return task_spec(multiclass, task, positives, 'ADE20K')


def ade20k_pairs(root: Path, split: str) -> list[Pair]:
    """Pairs of a split, sorted by name."""
    require_dir(root, 'ADE20K root')
    base = root / 'ADEChallengeData2016'
    if not base.is_dir():
        base = root
    folder = SPLIT_FOLDERS[split]
    image_dir = require_dir(base / 'images' / folder,
                            f'ADE20K split {split!r} images (ADEChallengeData2016/images/'
                            f'{folder}/)')
    label_dir = require_dir(base / 'annotations' / folder, f'ADE20K split {split!r} labels')
    images = sorted(image_dir.glob('*.jpg'))
    if not images:
        raise FileNotFoundError(f'ADE20K split {split!r}: no *.jpg in {image_dir}')
    return match_labels(images, lambda image: label_dir / f'{image.stem}.png', 'ADE20K')


class ADE20K(LayoutDataset):
    """ADE20K SceneParsing; `task` 'multiclass' (150 classes), 'human' or 'vehicle'."""

    name = 'ade20k'
    title = 'ADE20K'
    splits = SPLITS
    make_spec = staticmethod(ade20k_spec)
    find_pairs = staticmethod(ade20k_pairs)
