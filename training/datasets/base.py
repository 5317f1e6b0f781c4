"""Segmentation dataset base: (image, label) path pairs, a raw-label lookup table, a transform.

Every layout module (camvid, cityscapes, voc, ade20k) only finds its pairs and builds its
lookup table (LUT); reading, label mapping and augmentation are shared here. A LUT is a
np.uint8[256] indexed by the raw value stored in the label file, so mapping a label is one
fancy-index (`lut[raw]`) and binary views are just another table.

Augmentation seeding: with `seed` set, sample `i` of epoch `e` is transformed with
`np.random.default_rng((seed, e, i))` passed as `transform(image, label, rng=...)`, so a
sample's augmentation depends only on (seed, epoch, index): not on the number of DataLoader
workers, the order they run in, or whether training was resumed. Call `set_epoch(e)` at the
start of each epoch (workers copy the dataset when an epoch's iterator starts, so this needs
`persistent_workers=False`). With `seed=None` the transform is called as
`transform(image, label)` and uses its own generator; see `training.transforms.seed_worker`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset

TASKS = ('multiclass', 'human', 'vehicle')
BINARY_CLASS_SETS = {'human': 'binary_human', 'vehicle': 'binary_vehicle'}
BINARY_IGNORE = 255  # void label of the binary_human / binary_vehicle class sets

Pair = tuple[Path, Path]
Transform = Callable[..., tuple[Any, Any]]


def check_choice(what: str, value: str, allowed: Sequence[str], owner: str) -> str:
    """Returns `value` if it is in `allowed`, else raises ValueError naming the allowed ones."""
    if value not in allowed:
        raise ValueError(f'unknown {what} {value!r} for {owner}; allowed: {", ".join(allowed)}')
    return value


def make_lut(mapping: Mapping[int, int], *, default: int) -> np.ndarray:
    """A uint8[256] table: raw label value -> training id, `default` for unlisted values."""
    lut = np.full(256, default, np.uint8)
    for raw, train_id in mapping.items():
        lut[raw] = train_id
    return lut


@dataclass(frozen=True)
class LabelSpec:
    """How raw label values become training ids for one task.

    Attributes:
        lut: uint8[256] table, raw value -> training id or `ignore_index`.
        num_classes: Number of predicted classes.
        ignore_index: Training id of void pixels.
        class_set: Name of the matching `seg_perception` class set, or None if there is none.
        class_names: Name of each training id.
    """

    lut: np.ndarray
    num_classes: int
    ignore_index: int
    class_set: str | None
    class_names: tuple[str, ...]


def task_spec(multiclass: LabelSpec, task: str, positives: Mapping[str, Iterable[int]],
              owner: str) -> LabelSpec:
    """The LabelSpec of `task`, derived from the layout's multiclass one.

    Binary views: raw values in `positives[task]` -> 1, every other value that is a class in
    the multiclass view -> 0, multiclass void -> 255. Positives win over void, so a class the
    multiclass benchmark ignores (Cityscapes caravan, trailer) can still be a positive.

    Args:
        multiclass: The layout's multiclass spec.
        task: One of TASKS.
        positives: Raw label values of the positive class, per binary task the layout supports.
        owner: Dataset name for error messages.
    """
    supported = ('multiclass', *positives)
    check_choice('task', task, supported, owner)
    if task == 'multiclass':
        return multiclass
    labelled = multiclass.lut != multiclass.ignore_index
    lut = np.where(labelled, 0, BINARY_IGNORE).astype(np.uint8)
    lut[np.asarray(list(positives[task]), np.int64)] = 1
    return LabelSpec(lut=lut, num_classes=2, ignore_index=BINARY_IGNORE,
                     class_set=BINARY_CLASS_SETS[task], class_names=('background', task))


def require_dir(path: Path, what: str) -> Path:
    """Returns `path` if it is a folder, else raises FileNotFoundError naming it and `what`."""
    if not path.is_dir():
        raise FileNotFoundError(f'{what}: folder {path} not found')
    return path


def read_list(path: Path) -> list[str]:
    """First token of each non-empty line of a split list file."""
    lines = path.read_text().splitlines()
    return [line.split()[0] for line in lines if line.strip()]


class SegmentationDataset(Dataset):
    """(image, label) pairs read with cv2, labels mapped through a LUT, then transformed.

    Without a transform an item is `(image, label)`: RGB uint8 (H, W, 3) and uint8 (H, W)
    training ids. With one it is whatever the transform returns, normally a float32 (3, H, W)
    tensor and an int64 (H, W) tensor.

    Args (constructor): `pairs`, the task's `spec`, and the `transform`, `seed`, `task` and
    `split` attributes below.

    Attributes:
        pairs: (image_path, label_path) per sample.
        spec: The LabelSpec the next five attributes come from.
        lut: uint8[256], raw label value -> training id.
        num_classes: Number of predicted classes.
        ignore_index: Training id of void pixels (11 for CamVid multiclass, else 255).
        class_set: `seg_perception` class set name, or None (VOC, ADE20K multiclass).
        class_names: Name of each training id.
        transform: Optional `transform(image, label[, rng=]) -> (image, label)`.
        seed: Per-sample augmentation seed (see the module docstring), or None.
        epoch: Epoch mixed into the per-sample seed; set with `set_epoch`.
        task: 'multiclass', 'human' or 'vehicle'.
        split: Split name, for messages.
    """

    name = 'segmentation'

    def __init__(self, pairs: Sequence[tuple[str | Path, str | Path]], spec: LabelSpec, *,
                 transform: Transform | None = None, seed: int | None = None,
                 task: str = 'multiclass', split: str = '') -> None:
        lut = np.asarray(spec.lut)
        if lut.shape != (256,) or lut.dtype != np.uint8:
            raise ValueError(f'lut must be uint8[256], got {lut.dtype}{list(lut.shape)}')
        self.pairs: list[Pair] = [(Path(i), Path(lab)) for i, lab in pairs]
        self.spec = spec
        self.lut = lut
        self.num_classes = spec.num_classes
        self.ignore_index = spec.ignore_index
        self.class_set = spec.class_set
        self.class_names = spec.class_names
        self.transform = transform
        self.seed = seed
        self.epoch = 0
        self.task = task
        self.split = split

    def __len__(self) -> int:
        return len(self.pairs)

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(split={self.split!r}, task={self.task!r}, '
                f'samples={len(self)}, num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index}, class_set={self.class_set!r})')

    def set_epoch(self, epoch: int) -> None:
        """Selects the epoch mixed into per-sample augmentation seeds."""
        self.epoch = int(epoch)

    def read_image(self, path: Path) -> np.ndarray:
        """RGB uint8 (H, W, 3)."""
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise FileNotFoundError(f'cannot read image {path}')
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)

    def read_label(self, path: Path) -> np.ndarray:
        """Raw label values, uint8 (H, W), from a single-channel 8-bit PNG.

        IMREAD_UNCHANGED rather than IMREAD_GRAYSCALE: on a grey PNG both give the stored
        values, but GRAYSCALE would silently turn a colour or palette PNG into luminance.
        """
        label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if label is None:
            raise FileNotFoundError(f'cannot read label {path}')
        if label.ndim != 2 or label.dtype != np.uint8:
            raise ValueError(f'label {path} is not a single-channel 8-bit index PNG '
                             f'(shape {label.shape}, {label.dtype})')
        return label

    def raw_item(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The image and its raw (unmapped) label values."""
        image_path, label_path = self.pairs[index]
        image, label = self.read_image(image_path), self.read_label(label_path)
        if image.shape[:2] != label.shape:
            raise ValueError(f'image {image_path} is {image.shape[:2]} but label {label_path} '
                             f'is {label.shape}')
        return image, label

    def __getitem__(self, index: int) -> tuple[Any, Any]:
        index = range(len(self))[index]  # negative indices; IndexError when out of range
        image, raw = self.raw_item(index)
        label = self.lut[raw]
        if self.transform is None:
            return image, label
        if self.seed is None:
            return self.transform(image, label)
        rng = np.random.default_rng((self.seed, self.epoch, index))
        return self.transform(image, label, rng=rng)



def match_labels(images: Sequence[Path], label_for: Callable[[Path], Path],
                 title: str) -> list[Pair]:
    """(image, label) pairs; a missing label file is an error naming both paths."""
    pairs = []
    for image in images:
        label = label_for(image)
        if not label.is_file():
            raise FileNotFoundError(f'{title}: no label {label} for {image}')
        pairs.append((image, label))
    return pairs


class LayoutDataset(SegmentationDataset):
    """A dataset in one official on-disk layout: a subclass names its splits and gives the
    functions that build the task's LabelSpec and list a split's (image, label) pairs."""

    title = 'dataset'                   # for messages, e.g. 'CamVid'
    splits: tuple[str, ...] = ()
    make_spec: Callable[[str], LabelSpec]
    find_pairs: Callable[[Path, str], list]

    def __init__(self, root: str | Path, split: str, *, task: str = 'multiclass',
                 transform: Transform | None = None, seed: int | None = None) -> None:
        check_choice('split', split, self.splits, self.title)
        spec = type(self).make_spec(task)
        super().__init__(type(self).find_pairs(Path(root), split), spec, transform=transform,
                         seed=seed, task=task, split=split)
