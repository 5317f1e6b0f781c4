"""Segmentation datasets in their official on-disk layouts, with binary human / vehicle views.

    ds = build_dataset('camvid', '/data/camvid', 'train', task='human',
                       transform=train_transform((352, 480), ignore_index=255), seed=0)

Items are `(image, label)`: numpy RGB uint8 + uint8 training ids without a transform, the
transform's output (float32 CHW / int64 HW tensors) with one. `ds.num_classes`,
`ds.ignore_index` and `ds.class_set` tell the model and the loss what the labels mean.
"""

from __future__ import annotations

from pathlib import Path

from .ade20k import ADE20K
from .base import TASKS, LabelSpec, SegmentationDataset, Transform, check_choice
from .camvid import CamVid
from .cityscapes import Cityscapes
from .voc import VOC

DATASETS: dict[str, type[SegmentationDataset]] = {
    'camvid': CamVid,
    'cityscapes': Cityscapes,
    'voc': VOC,
    'ade20k': ADE20K,
}


def build_dataset(name: str, root: str | Path, split: str, *, task: str = 'multiclass',
                  transform: Transform | None = None,
                  seed: int | None = None) -> SegmentationDataset:
    """Builds dataset `name` from its layout under `root`.

    Args:
        name: One of DATASETS: 'camvid', 'cityscapes', 'voc', 'ade20k'.
        root: Dataset root folder (see each module for the layout).
        split: Split of that dataset, e.g. 'train' / 'val' (VOC also 'trainval', 'train_aug').
        task: 'multiclass' (the dataset's classes), 'human' or 'vehicle' (binary views).
        transform: Optional `transform(image, label[, rng=])`, e.g. `train_transform(...)`.
        seed: Per-sample augmentation seed (reproducible and resumable; see `base`), or None
            to let the transform use its own generator.

    Raises:
        ValueError: Unknown name, task or split (the message lists the allowed ones).
        FileNotFoundError: The layout is not found under `root` or the split is empty.
    """
    check_choice('dataset', name, tuple(DATASETS), 'build_dataset')
    check_choice('task', task, TASKS, name)
    return DATASETS[name](root, split, task=task, transform=transform, seed=seed)


__all__ = [
    'ADE20K',
    'DATASETS',
    'TASKS',
    'VOC',
    'CamVid',
    'Cityscapes',
    'LabelSpec',
    'SegmentationDataset',
    'build_dataset',
]
