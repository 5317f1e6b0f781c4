"""PASCAL VOC 2012 segmentation, plus the SBD-augmented training set ('train_aug').

Official layout (VOCtrainval_11-May-2012.tar), under `root`, `root/VOCdevkit` or directly
`root` = VOC2012:

    VOCdevkit/VOC2012/JPEGImages/{id}.jpg
    VOCdevkit/VOC2012/SegmentationClass/{id}.png     palette PNG; pixel value = class 0..20,
                                                     255 = object border / void
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,trainval}.txt    one id per line

SBD augmentation, as commonly distributed (SegmentationClassAug.zip of DeepLab /
tensorflow-deeplab-resnet, used by DeepLabV3Plus-Pytorch and others): 10582 grey index PNGs
(same values as above) unpacked next to the official folders, and the `train_aug.txt` list
(SBD train+val + VOC train, minus VOC val):

    VOCdevkit/VOC2012/SegmentationClassAug/{id}.png
    VOCdevkit/VOC2012/ImageSets/Segmentation/train_aug.txt

The list is also looked for in `ImageSets/SegmentationAug/` and in `VOC2012/` itself, the
other places it is shipped to. Lines may be bare ids (DeepLabV3Plus-Pytorch) or DeepLab's
"/JPEGImages/{id}.jpg /SegmentationClassAug/{id}.png" pairs: the id is the first token's stem.
The images are the official JPEGImages (SBD images are VOC2011 trainval images).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from .base import (
    LabelSpec,
    LayoutDataset,
    Pair,
    make_lut,
    read_list,
    task_spec,
)

IGNORE = 255
SPLITS = ('train', 'val', 'trainval', 'train_aug')
AUG_LISTS = ('ImageSets/Segmentation/train_aug.txt', 'ImageSets/SegmentationAug/train_aug.txt',
             'train_aug.txt')
VOC_CLASSES = (
    'background', 'aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat',
    'chair', 'cow', 'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant',
    'sheep', 'sofa', 'train', 'tvmonitor',
)
# Road vehicles, as in the Cityscapes and CamVid views; aeroplane and boat are background.
POSITIVE_CLASSES = {
    'human': ('person',),
    'vehicle': ('car', 'bus', 'motorbike', 'bicycle', 'train'),
}


def voc_spec(task: str) -> LabelSpec:
    """Multiclass: 0..20 as is (no seg_perception class set), 255 void; binary views."""
    lut = make_lut({i: i for i in range(len(VOC_CLASSES))}, default=IGNORE)
    multiclass = LabelSpec(lut=lut, num_classes=len(VOC_CLASSES), ignore_index=IGNORE,
                           class_set=None, class_names=VOC_CLASSES)
    positives = {t: [VOC_CLASSES.index(n) for n in names]
                 for t, names in POSITIVE_CLASSES.items()}
    return task_spec(multiclass, task, positives, 'VOC')


def find_voc2012(root: Path) -> Path:
    """The VOC2012 folder: `root/VOCdevkit/VOC2012`, `root/VOC2012` or `root` itself."""
    for candidate in (root / 'VOCdevkit' / 'VOC2012', root / 'VOC2012', root):
        if (candidate / 'JPEGImages').is_dir():
            return candidate
    raise FileNotFoundError(f'VOC: no {root}/VOCdevkit/VOC2012/JPEGImages folder (nor '
                            f'VOC2012/JPEGImages or JPEGImages directly under {root})')


def voc_pairs(root: Path, split: str) -> list[Pair]:
    """Pairs of a split in list order."""
    voc = find_voc2012(root)
    if split == 'train_aug':
        lists = [voc / rel for rel in AUG_LISTS]
        list_file = next((p for p in lists if p.is_file()), None)
        if list_file is None:
            raise FileNotFoundError('VOC train_aug: no SBD list, looked for '
                                    + ', '.join(str(p) for p in lists))
        label_dir = voc / 'SegmentationClassAug'
    else:
        list_file = voc / 'ImageSets' / 'Segmentation' / f'{split}.txt'
        if not list_file.is_file():
            raise FileNotFoundError(f'VOC split {split!r}: no list {list_file}')
        label_dir = voc / 'SegmentationClass'
    if not label_dir.is_dir():
        raise FileNotFoundError(f'VOC split {split!r}: label folder {label_dir} not found')
    ids = [PurePosixPath(token).stem for token in read_list(list_file)]
    if not ids:
        raise FileNotFoundError(f'VOC split {split!r}: {list_file} is empty')
    pairs = [(voc / 'JPEGImages' / f'{i}.jpg', label_dir / f'{i}.png') for i in ids]
    for path in (p for pair in pairs for p in pair):
        if not path.is_file():
            raise FileNotFoundError(f'VOC split {split!r}: {path} (listed in {list_file}) '
                                    'is missing')
    return pairs


def read_index_png(path: Path) -> np.ndarray:
    """Stored index values of a palette ('P') or grey ('L') PNG, uint8 (H, W).

    PIL, not cv2: cv2 expands a palette PNG to its colours, losing the class indices.
    """
    with Image.open(path) as image:
        if image.mode not in ('P', 'L'):
            raise ValueError(f'label {path} is mode {image.mode!r}, expected a palette (P) or '
                             'grey (L) index PNG')
        return np.array(image, dtype=np.uint8)


class VOC(LayoutDataset):
    """VOC 2012 (+ SBD 'train_aug'); `task` 'multiclass' (21 classes), 'human', 'vehicle'."""

    name = 'voc'
    title = 'VOC'
    splits = SPLITS
    make_spec = staticmethod(voc_spec)
    find_pairs = staticmethod(voc_pairs)

    def read_label(self, path: Path) -> np.ndarray:
        return read_index_png(path)
