"""Scoring a model on a bag's frames and writing the report (no ROS here).

The live replay (seg_perception.ros.bag_player) and the offline path (`offline_run`, straight
through the Segmenter) both hand per-frame predictions to `Scorer`, which uses the project's
one ConfusionMatrix, so the same frames give the same numbers either way.

Report folder:
    report.json         miou, per_class_iou, pixel_accuracy, dice, latency_ms {p50, p95, p99,
                        mean, max}, frames {sent, processed, dropped, scored, rejected}, fps,
                        positive_iou (binary tasks), confusion_matrix, warnings, settings
    report.md           the same as tables, with the pictures
    per_class_iou.png   bar chart
    latency_hist.png    input-to-output latency histogram (live modes)
    samples/NNN.png     input | ground truth | prediction overlay | drivable area (or mask)
"""

from __future__ import annotations

from dataclasses import dataclass, field
import json
from pathlib import Path

import cv2
import numpy as np

from seg_perception.core.classes import BINARY_TASKS, ClassSet, load_class_set, task_target
from seg_perception.core.metrics import ConfusionMatrix
from seg_perception.core.visualize import colorize, overlay

TASKS = ('multiclass', *BINARY_TASKS)
GROUND_TRUTH_CLASS_SET = 'camvid11'  # what make_bag's /camera/labels_gt holds for CamVid


def check_task(task: str, model_class_set: str) -> None:
    """Raises ValueError when a model cannot be scored on `task`."""
    if task not in TASKS:
        raise ValueError(f'task must be one of {", ".join(TASKS)}, got {task!r}')
    expected = BINARY_TASKS.get(task)
    if expected and model_class_set != expected:
        raise ValueError(f'task {task} needs a {expected} model, this one predicts '
                         f'{model_class_set}')
    if task == 'multiclass' and model_class_set != GROUND_TRUTH_CLASS_SET:
        raise ValueError(f'task multiclass scores {GROUND_TRUTH_CLASS_SET} models against the '
                         f'bag\'s ground truth; this one predicts {model_class_set}')


@dataclass
class FrameResult:
    """What came back for one frame (arrays at the input size)."""

    index: int
    stamp_ns: int
    labels: np.ndarray
    latency_ms: float | None = None
    overlay: np.ndarray | None = None
    drivable: np.ndarray | None = None
    mask: np.ndarray | None = None


@dataclass
class Scorer:
    """Accumulates the metrics of one run."""

    class_set: ClassSet
    task: str
    gt_class_set: ClassSet = field(default_factory=lambda: load_class_set(
        GROUND_TRUTH_CLASS_SET))

    def __post_init__(self):
        self.cm = ConfusionMatrix(self.class_set.num_classes, self.class_set.ignore_index)
        self.latencies: list[float] = []
        self.scored = 0
        self.processed = 0

    def add(self, result: FrameResult, label: np.ndarray | None) -> None:
        self.processed += 1
        if result.latency_ms is not None:
            self.latencies.append(result.latency_ms)
        if label is not None:
            self.cm.update(result.labels, task_target(label, self.gt_class_set, self.task))
            self.scored += 1

    def summary(self, *, sent: int, rejected: int = 0, wall_s: float | None = None) -> dict:
        iou = self.cm.per_class_iou()
        out = {
            'task': self.task,
            'class_set': self.class_set.name,
            'miou': _num(self.cm.miou()),
            'per_class_iou': {n: _num(v) for n, v in zip(self.class_set.names, iou,
                                                          strict=True)},
            'pixel_accuracy': _num(self.cm.pixel_accuracy()),
            'dice': _num(self.cm.dice()),
            'latency_ms': latency_summary(self.latencies),
            'frames': {'sent': sent, 'processed': self.processed,
                       'dropped': sent - self.processed, 'scored': self.scored,
                       'rejected': rejected},
            'fps': (self.processed / wall_s) if wall_s else None,
            'confusion_matrix': self.cm.matrix.tolist(),
        }
        if self.task in BINARY_TASKS:
            out['positive_iou'] = _num(iou[1])
        return out


def latency_summary(values: list[float]) -> dict:
    if not values:
        return {'p50': None, 'p95': None, 'p99': None, 'mean': None, 'max': None, 'count': 0}
    arr = np.asarray(values)
    return {'p50': float(np.percentile(arr, 50)), 'p95': float(np.percentile(arr, 95)),
            'p99': float(np.percentile(arr, 99)), 'mean': float(arr.mean()),
            'max': float(arr.max()), 'count': int(arr.size)}


def _num(value) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value


def sample_indices(count: int, samples: int) -> list[int]:
    """`samples` frame indices spread evenly over `count` frames."""
    if count <= 0 or samples <= 0:
        return []
    return sorted({int(round(i)) for i in np.linspace(0, count - 1, min(samples, count))})


def sample_row(rgb: np.ndarray, label: np.ndarray | None, result: FrameResult,
               class_set: ClassSet, task: str, gt_class_set: ClassSet,
               width: int = 320) -> np.ndarray:
    """input | ground truth | prediction overlay | drivable area (multiclass) or mask."""
    if label is not None:
        gt = colorize(task_target(label, gt_class_set, task), class_set)
    else:
        gt = np.zeros_like(rgb)
    pred = result.overlay if result.overlay is not None else overlay(
        rgb, colorize(result.labels, class_set), 0.5)
    last = result.drivable if task == 'multiclass' else result.mask
    if last is None:
        last = np.zeros(rgb.shape[:2], np.uint8)
    tiles = []
    for image in (rgb, gt, pred, last):
        if image.ndim == 2:
            image = np.dstack([image] * 3)
        height = int(round(image.shape[0] * width / image.shape[1]))
        tiles.append(cv2.resize(image, (width, height), interpolation=cv2.INTER_NEAREST))
    return np.hstack(tiles)


def write_report(folder: Path, report: dict, rows: list[tuple[int, np.ndarray]]) -> list[Path]:
    """Writes report.json, report.md, the charts and the sample rows; returns the files."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    json_path = folder / 'report.json'
    json_path.write_text(json.dumps(report, indent=2))
    written.append(json_path)

    names = list(report['per_class_iou'])
    values = [100 * (v or 0.0) for v in report['per_class_iou'].values()]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(names) + 2), 3.6))
    bars = ax.bar(names, values, color='#3b7dd8')
    ax.bar_label(bars, fmt='%.1f', fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel('IoU (%)')
    miou = report['miou']
    ax.set_title(f'{report.get("model_name", "model")} on {report.get("bag_name", "bag")}: '
                 f'mIoU {100 * miou:.1f}' if miou is not None else 'per-class IoU')
    plt.setp(ax.get_xticklabels(), rotation=30, ha='right')
    fig.tight_layout()
    iou_png = folder / 'per_class_iou.png'
    fig.savefig(iou_png, dpi=110)
    plt.close(fig)
    written.append(iou_png)

    latency = report.get('latencies_ms') or []
    if latency:
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
        ax.hist(latency, bins=min(40, max(5, len(latency) // 3)), color='#d8703b')
        for key, style in (('p50', '-'), ('p99', '--')):
            value = report['latency_ms'][key]
            ax.axvline(value, color='k', linestyle=style, label=f'{key} {value:.1f} ms')
        ax.set_xlabel('input stamp -> output received (ms)')
        ax.set_ylabel('frames')
        ax.legend()
        ax.set_title(f'latency, {report["mode"]} replay')
        fig.tight_layout()
        hist_png = folder / 'latency_hist.png'
        fig.savefig(hist_png, dpi=110)
        plt.close(fig)
        written.append(hist_png)

    sample_dir = folder / 'samples'
    sample_dir.mkdir(exist_ok=True)
    sample_files = []
    for index, row in rows:
        path = sample_dir / f'{index:04d}.png'
        cv2.imwrite(str(path), row[:, :, ::-1])
        sample_files.append(path)
    written += sample_files

    md = folder / 'report.md'
    md.write_text(_markdown(report, folder, sample_files))
    written.append(md)
    return written


def _pct(value) -> str:
    return '–' if value is None else f'{100 * value:.1f}'


def _ms(value) -> str:
    return '–' if value is None else f'{value:.1f}'


def _markdown(report: dict, folder: Path, samples: list[Path]) -> str:
    frames, lat = report['frames'], report['latency_ms']
    lines = [
        f'# {report.get("model_name", "model")} on {report.get("bag_name", "bag")}',
        '',
        f'Task **{report["task"]}**, {report["mode"]} replay, backend '
        f'{report.get("backend", "?")}.',
        '',
        '| metric | value |',
        '|---|---|',
        f'| mIoU | {_pct(report["miou"])} |',
    ]
    if 'positive_iou' in report:
        lines.append(f'| IoU of {report["task"]} | {_pct(report["positive_iou"])} |')
    lines += [
        f'| pixel accuracy | {_pct(report["pixel_accuracy"])} |',
        f'| Dice | {_pct(report["dice"])} |',
        f'| frames sent / processed / dropped / scored | {frames["sent"]} / '
        f'{frames["processed"]} / {frames["dropped"]} / {frames["scored"]} |',
        f'| latency p50 / p95 / p99 (ms) | {_ms(lat["p50"])} / {_ms(lat["p95"])} / '
        f'{_ms(lat["p99"])} |',
        f'| FPS | {report["fps"]:.1f} |' if report.get('fps') else '| FPS | – |',
        '',
        '## Per-class IoU',
        '',
        '| class | IoU |',
        '|---|---|',
    ]
    lines += [f'| {name} | {_pct(v)} |' for name, v in report['per_class_iou'].items()]
    lines += ['', '![per-class IoU](per_class_iou.png)', '']
    if (folder / 'latency_hist.png').exists():
        lines += ['![latency](latency_hist.png)', '']
    if samples:
        last = 'drivable area' if report['task'] == 'multiclass' else 'mask'
        lines += ['## Samples', '', f'input | ground truth | prediction | {last}', '']
        lines += [f'![frame {p.stem}](samples/{p.name})' for p in samples]
        lines.append('')
    if report.get('warnings'):
        lines += ['## Warnings', ''] + [f'- {w}' for w in report['warnings']] + ['']
    return '\n'.join(lines)
