"""Evaluates a model artefact on a dataset split with the runtime's own Segmenter.

    python -m training.evaluate --model ARTIFACT --dataset camvid --root DIR --split val
                                [--task multiclass|human|vehicle] [--backend auto] [--json]

ARTIFACT is a training checkpoint (checkpoints/best.pt with its .yaml sidecar) or an exported
ONNX file with its sidecar. Frames go through exactly what the node runs (resize to the
network size, backend, nearest resize back), so these numbers are the deployed model's.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from tqdm import tqdm

from seg_perception.core.classes import load_class_set
from seg_perception.core.metrics import ConfusionMatrix
from seg_perception.core.segmenter import Segmenter


def evaluate(model: str, dataset: str, root: str, split: str, *, task: str = 'multiclass',
             backend: str = 'auto', limit: int | None = None, progress: bool = True) -> dict:
    """Returns miou, per_class_iou (by class name), pixel_accuracy, dice, frames."""
    from training.datasets import build_dataset

    segmenter = Segmenter.from_path(model, backend=backend)
    data = build_dataset(dataset, root, split, task=task)
    if data.class_set and data.class_set != segmenter.artifact.class_set:
        raise ValueError(f'{model} predicts {segmenter.artifact.class_set!r} but '
                         f'{dataset}/{task} is labelled as {data.class_set!r}')
    if data.num_classes != segmenter.artifact.num_classes:
        raise ValueError(f'{model} has {segmenter.artifact.num_classes} classes, '
                         f'{dataset}/{task} has {data.num_classes}')
    cm = ConfusionMatrix(data.num_classes, data.ignore_index)
    count = len(data) if limit is None else min(limit, len(data))
    for i in tqdm(range(count), desc=f'{dataset} {split}', unit='frame', disable=not progress,
                  file=sys.stderr):
        image, label = data[i]
        cm.update(segmenter(np.ascontiguousarray(image), confidence=False).labels, label)
    names = (load_class_set(data.class_set).names if data.class_set
             else tuple(str(i) for i in range(data.num_classes)))
    return {
        'miou': cm.miou(),
        'per_class_iou': {n: float(v) for n, v in zip(names, cm.per_class_iou(), strict=True)},
        'pixel_accuracy': cm.pixel_accuracy(),
        'dice': cm.dice(),
        'frames': count,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', required=True, help='checkpoint or ONNX, with sidecar')
    parser.add_argument('--dataset', default='camvid')
    parser.add_argument('--root', required=True)
    parser.add_argument('--split', default='val')
    parser.add_argument('--task', default='multiclass', choices=('multiclass', 'human',
                                                                  'vehicle'))
    parser.add_argument('--backend', default='auto')
    parser.add_argument('--limit', type=int, help='first N frames only')
    parser.add_argument('--json', action='store_true')
    args = parser.parse_args(argv)
    result = evaluate(args.model, args.dataset, args.root, args.split, task=args.task,
                      backend=args.backend, limit=args.limit)
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        print()
        return 0
    print(f'{args.dataset} {args.split} ({result["frames"]} frames): mIoU '
          f'{100 * result["miou"]:.2f}, pixel accuracy {100 * result["pixel_accuracy"]:.2f}, '
          f'Dice {100 * result["dice"]:.2f}')
    for name, iou in result['per_class_iou'].items():
        print(f'  {name:<14} {100 * iou:6.2f}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
