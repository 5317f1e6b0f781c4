"""Cityscapes, fine annotations, in the official layout.

    root/leftImg8bit/{split}/{city}/{city}_{seq}_{frame}_leftImg8bit.png
    root/gtFine/{split}/{city}/{city}_{seq}_{frame}_gtFine_labelIds.png

labelIds -> trainIds with the table of `cityscapesscripts.helpers.labels` (trainId 255 or -1
-> ignore 255). 'license plate' has id -1 and is never drawn into labelIds PNGs (json2labelImg
skips negative ids); raw values without a label (34..255) are mapped to ignore too.
"""

from __future__ import annotations

from pathlib import Path

from cityscapesscripts.helpers.labels import labels as CITYSCAPES_LABELS
from cityscapesscripts.helpers.labels import name2label

from .base import (
    LabelSpec,
    LayoutDataset,
    Pair,
    make_lut,
    match_labels,
    require_dir,
    task_spec,
)

CLASS_SET = 'cityscapes19'
IGNORE = 255
SPLITS = ('train', 'val', 'test')
# Binary positives by label name. caravan and trailer have trainId 255 (ignored by the
# 19-class benchmark) but are vehicles, so the vehicle view takes them from the labelIds.
POSITIVE_LABELS = {
    'human': ('person', 'rider'),
    'vehicle': ('car', 'truck', 'bus', 'train', 'motorcycle', 'bicycle', 'caravan', 'trailer'),
}


def cityscapes_spec(task: str) -> LabelSpec:
    """labelIds -> trainIds (0..18, void 255) and the binary views derived from it."""
    mapping = {label.id: label.trainId for label in CITYSCAPES_LABELS
               if 0 <= label.id < 256 and label.trainId not in (-1, IGNORE)}
    train_ids = sorted(set(mapping.values()))
    assert train_ids == list(range(len(train_ids))), train_ids  # 0..18 without gaps
    names = {label.trainId: label.name for label in CITYSCAPES_LABELS if label.id in mapping}
    multiclass = LabelSpec(lut=make_lut(mapping, default=IGNORE), num_classes=len(train_ids),
                           ignore_index=IGNORE, class_set=CLASS_SET,
                           class_names=tuple(names[i] for i in train_ids))
    positives = {task: [name2label[n].id for n in label_names]
                 for task, label_names in POSITIVE_LABELS.items()}
    return task_spec(multiclass, task, positives, 'Cityscapes')


def cityscapes_pairs(root: Path, split: str) -> list[Pair]:
    """Pairs of a split, sorted by city then frame name."""
    require_dir(root, 'Cityscapes root')
    image_dir = require_dir(root / 'leftImg8bit' / split,
                            f'Cityscapes split {split!r} images (leftImg8bit/{split}/<city>/)')
    label_dir = require_dir(root / 'gtFine' / split,
                            f'Cityscapes split {split!r} labels (gtFine/{split}/<city>/)')
    images = sorted(image_dir.glob('*/*_leftImg8bit.png'))
    if not images:
        raise FileNotFoundError(f'Cityscapes split {split!r}: no */*_leftImg8bit.png in '
                                f'{image_dir}')

    def label_for(image: Path) -> Path:
        stem = image.name.removesuffix('_leftImg8bit.png')
        return label_dir / image.parent.name / f'{stem}_gtFine_labelIds.png'

    return match_labels(images, label_for, 'Cityscapes')


class Cityscapes(LayoutDataset):
    """Cityscapes gtFine; `task` 'multiclass' (cityscapes19), 'human' or 'vehicle'."""

    name = 'cityscapes'
    title = 'Cityscapes'
    splits = SPLITS
    make_spec = staticmethod(cityscapes_spec)
    find_pairs = staticmethod(cityscapes_pairs)
