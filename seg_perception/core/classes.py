"""Class sets and colour palettes, read from `config/classes/<name>.yaml`."""

from __future__ import annotations

from dataclasses import dataclass
import functools
from pathlib import Path

import numpy as np
import yaml

from seg_perception.core.paths import config_dir

CLASS_SET_NAMES = ('camvid11', 'cityscapes19', 'binary_human', 'binary_vehicle')


@dataclass(frozen=True)
class ClassSet:
    """The classes a model predicts, their colours, and the void label of its ground truth.

    Attributes:
        name: Class set name, e.g. `camvid11`.
        names: Class names; the index is the class id the network predicts.
        colors: (num_classes, 3) uint8 RGB colours.
        ignore_index: Label value of void pixels in ground truth (not predicted), or None.
        ignore_color: RGB colour drawn for `ignore_index`.
        drivable: Names of the classes that make up the default drivable area.
    """

    name: str
    names: tuple[str, ...]
    colors: np.ndarray
    ignore_index: int | None
    ignore_color: tuple[int, int, int]
    drivable: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def is_binary(self) -> bool:
        return self.num_classes == 2

    def index(self, name: str) -> int:
        """Returns the id of class `name` (case-insensitive); raises KeyError naming the set."""
        lowered = [n.lower() for n in self.names]
        try:
            return lowered.index(name.strip().lower())
        except ValueError:
            raise KeyError(
                f'class {name!r} is not in class set {self.name!r} ({", ".join(self.names)})'
            ) from None

    @functools.cached_property
    def palette(self) -> np.ndarray:
        """(256, 3) uint8 lookup table: label value -> RGB; unknown values are black."""
        lut = np.zeros((256, 3), np.uint8)
        lut[: self.num_classes] = self.colors
        if self.ignore_index is not None and self.ignore_index >= self.num_classes:
            lut[self.ignore_index] = self.ignore_color
        return lut


def class_set_for(num_classes: int) -> str:
    """The first shipped class set with `num_classes` classes (random-weight exports)."""
    for name in CLASS_SET_NAMES:
        if load_class_set(name).num_classes == num_classes:
            return name
    raise ValueError(f'no class set has {num_classes} classes')


def class_set_path(name: str) -> Path:
    return config_dir() / 'classes' / f'{name}.yaml'


@functools.cache
def load_class_set(name_or_path: str) -> ClassSet:
    """Loads a class set by name (`camvid11`, ...) or from a YAML file path."""
    path = Path(name_or_path)
    if path.suffix not in ('.yaml', '.yml'):
        path = class_set_path(name_or_path)
    if not path.is_file():
        known = sorted(p.stem for p in (config_dir() / 'classes').glob('*.yaml'))
        raise FileNotFoundError(f'unknown class set {name_or_path!r}: no {path} (known: {known})')
    data = yaml.safe_load(path.read_text())
    return parse_class_set(data, source=str(path))


def parse_class_set(data: dict, source: str = '<dict>') -> ClassSet:
    """Builds a ClassSet from the YAML structure; raises ValueError naming `source`."""
    try:
        entries = sorted(data['classes'], key=lambda c: int(c['id']))
        ids = [int(c['id']) for c in entries]
        if ids != list(range(len(ids))):
            raise ValueError(f'class ids must be 0..N-1 without gaps, got {ids}')
        colors = np.array([c['color'] for c in entries], np.uint8).reshape(-1, 3)
        void = data.get('void') or {}
        return ClassSet(
            name=str(data['name']),
            names=tuple(str(c['name']) for c in entries),
            colors=colors,
            ignore_index=None if not void else int(void['id']),
            ignore_color=tuple(int(v) for v in void.get('color', (0, 0, 0))),
            drivable=tuple(str(n) for n in data.get('drivable', ())),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f'malformed class set {source}: {err}') from err


# Binary tasks: the class set a binary model predicts, and which classes of a multi-class
# ground truth count as positive (training's CamVid views and bag evaluation share this).
# Bicyclist is the rider together with the bicycle in CamVid: it counts as human.
BINARY_TASKS = {'human': 'binary_human', 'vehicle': 'binary_vehicle'}
POSITIVE_CLASSES = {'camvid11': {'human': ('Pedestrian', 'Bicyclist'), 'vehicle': ('Car',)}}


def task_target(label: np.ndarray, class_set: ClassSet, task: str) -> np.ndarray:
    """Multi-class ground truth -> the target of `task` (multiclass: unchanged; human /
    vehicle: 1 positive, 0 other classes, 255 void)."""
    if task == 'multiclass':
        return label
    if task not in BINARY_TASKS:
        raise ValueError(f'task must be multiclass, {" or ".join(BINARY_TASKS)}, got {task!r}')
    if class_set.name not in POSITIVE_CLASSES:
        raise ValueError(f'no {task} classes known for ground truth labelled {class_set.name!r} '
                         f'(known: {", ".join(POSITIVE_CLASSES)})')
    lut = np.full(256, 255, np.uint8)
    lut[:class_set.num_classes] = 0
    lut[[class_set.index(n) for n in POSITIVE_CLASSES[class_set.name][task]]] = 1
    return lut[label]
