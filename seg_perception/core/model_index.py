"""models/index.yaml: the shipped models, what they were trained for and how well they do.

Keys of each entry in `models:` (README's model table is made from the same figures):
    name          short name
    file          ONNX file relative to models/ (its .yaml sidecar and .pt state_dict beside it)
    task          multiclass | human | vehicle
    architecture  registry name (bisenet_lite, ...) and options in `options`
    loss          training loss
    input_size    [H, W] network input
    config        training config that reproduces it
    budget_min    CPU minutes the training run took here
    val           CamVid val figures at 360x480 output: miou and pixel_accuracy (multiclass),
                  iou of the positive class (human / vehicle); the regression test holds the
                  models to these minus one point
    latency_ms    ONNX Runtime CPU latency here (2 cores), median at input_size
`launch:` maps each launch file to {node name: model file} (the configs it loads use them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seg_perception.core.paths import models_dir

TASKS = ('multiclass', 'human', 'vehicle')
REQUIRED = ('name', 'file', 'task', 'architecture', 'loss', 'input_size', 'val')


@dataclass(frozen=True)
class ShippedModel:
    name: str
    file: str
    task: str
    architecture: str
    loss: str
    input_size: tuple[int, int]
    val: dict
    options: dict = field(default_factory=dict)
    config: str = ''
    budget_min: float | None = None
    latency_ms: float | None = None
    notes: str = ''

    @property
    def path(self) -> Path:
        return models_dir() / self.file

    @property
    def score(self) -> float:
        """The figure the regression test checks: mIoU (multiclass) or positive-class IoU."""
        return float(self.val['miou'] if self.task == 'multiclass' else self.val['iou'])


@dataclass(frozen=True)
class ModelIndex:
    models: tuple[ShippedModel, ...]
    launch: dict[str, dict[str, str]]

    def by_file(self, file: str) -> ShippedModel:
        for model in self.models:
            if model.file == file:
                return model
        raise KeyError(f'{file} is not in models/index.yaml '
                       f'({", ".join(m.file for m in self.models)})')


def load_index(path: Path | None = None) -> ModelIndex:
    """Reads and checks models/index.yaml; ValueError names the entry and the key."""
    path = path or models_dir() / 'index.yaml'
    data = yaml.safe_load(path.read_text()) or {}
    models = []
    for i, entry in enumerate(data.get('models') or []):
        missing = [k for k in REQUIRED if k not in entry]
        if missing:
            raise ValueError(f'{path}: model {i} ({entry.get("name", "?")}) lacks '
                             f'{", ".join(missing)}')
        if entry['task'] not in TASKS:
            raise ValueError(f'{path}: {entry["name"]}: task must be one of {TASKS}')
        key = 'miou' if entry['task'] == 'multiclass' else 'iou'
        if key not in entry['val']:
            raise ValueError(f'{path}: {entry["name"]}: val needs {key}')
        entry = dict(entry, input_size=tuple(entry['input_size']))
        models.append(ShippedModel(**entry))
    launch = {str(k): dict(v) for k, v in (data.get('launch') or {}).items()}
    return ModelIndex(tuple(models), launch)
