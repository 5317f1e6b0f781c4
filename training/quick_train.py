"""Trains a small model on CamVid within a time budget and exports it with its sidecar.

The stop-gap that gives the demo and the node tests a model that really segments street
scenes until the full training stack (datasets, losses, schedules, resume) lands. Plain CE
with the void label ignored, Adam, random flips, half-resolution frames held in memory.

    python -m training.quick_train --minutes 6 --out models/fcn_tiny_camvid.onnx
"""

from __future__ import annotations

import argparse
from pathlib import Path
import time

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from seg_perception.core.classes import load_class_set
from seg_perception.models import build_model
from seg_perception.models.export import export_onnx

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / 'shared' / 'datasets' / 'camvid'


def load_split(root: Path, split: str, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """All frames of a CamVid split, resized to `size` (H, W): images bilinear, labels nearest."""
    names = sorted(p.name for p in (root / split).glob('*.png'))
    if not names:
        raise FileNotFoundError(f'no CamVid frames in {root / split}')
    images, labels = [], []
    for name in tqdm(names, desc=f'loading {split}', unit='frame'):
        img = cv2.imread(str(root / split / name), cv2.IMREAD_COLOR)[:, :, ::-1]
        lab = cv2.imread(str(root / f'{split}annot' / name), cv2.IMREAD_GRAYSCALE)
        images.append(cv2.resize(img, size[::-1], interpolation=cv2.INTER_LINEAR))
        labels.append(cv2.resize(lab, size[::-1], interpolation=cv2.INTER_NEAREST))
    return np.stack(images), np.stack(labels)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', type=Path, default=DEFAULT_DATA)
    parser.add_argument('--model', default='fcn_tiny')
    parser.add_argument('--minutes', type=float, default=6.0)
    parser.add_argument('--train-size', default='180x240', help='H x W for training')
    parser.add_argument('--export-size', default='360x480', help='H x W of the ONNX input')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--lr', type=float, default=3e-3)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', type=Path, required=True, help='ONNX path; .pt saved beside')
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    torch.set_num_threads(args.threads)
    class_set = load_class_set('camvid11')
    size = tuple(int(v) for v in args.train_size.split('x'))
    images, labels = load_split(args.data, 'train', size)
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    model = build_model(args.model, num_classes=class_set.num_classes)
    optim = torch.optim.Adam(model.parameters(), lr=args.lr)
    deadline = time.monotonic() + args.minutes * 60
    step = 0
    bar = tqdm(total=int(args.minutes * 60), desc='training', unit='s')
    model.train()
    while time.monotonic() < deadline:
        idx = rng.choice(len(images), args.batch, replace=False)
        img, lab = images[idx].copy(), labels[idx].copy()
        flip = rng.random(args.batch) < 0.5
        img[flip], lab[flip] = img[flip, :, ::-1], lab[flip, :, ::-1]
        x = torch.from_numpy(((img / 255.0 - mean) / std).astype(np.float32)).permute(0, 3, 1, 2)
        y = torch.from_numpy(lab.astype(np.int64))
        # Cosine decay over the time budget.
        frac = 1.0 - max(0.0, deadline - time.monotonic()) / (args.minutes * 60)
        for group in optim.param_groups:
            group['lr'] = args.lr * 0.5 * (1 + np.cos(np.pi * frac))
        loss = F.cross_entropy(model(x), y, ignore_index=class_set.ignore_index)
        optim.zero_grad()
        loss.backward()
        optim.step()
        step += 1
        bar.n = int(args.minutes * 60 * frac)
        bar.set_postfix(step=step, loss=f'{loss.item():.3f}')
    bar.close()
    model.eval()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'model': model.state_dict()}, args.out.with_suffix('.pt'))
    export_size = tuple(int(v) for v in args.export_size.split('x'))
    export_onnx(model, args.out, model_name=args.model, class_set=class_set.name,
                num_classes=class_set.num_classes, input_size=export_size)
    print(f'{step} steps; wrote {args.out}, {args.out.with_suffix(".pt")} and the sidecar')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
