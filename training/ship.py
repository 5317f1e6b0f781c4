"""Ships a trained run as a package model: ONNX + sidecar + state_dict in models/, scored on
CamVid val through the runtime, timed on ONNX Runtime, and entered in models/index.yaml.

    python -m training.ship --run runs/NAME --name SHIPPED_NAME
                            [--checkpoint best|last|last-raw]
                            [--config training/configs/NAME.yaml] [--budget-min M]
                            [--notes TEXT] [--fp16-weights] [--models-dir DIR]
    python -m training.ship --latency-all    # re-time every indexed model, side by side

The state_dict is stored in float16 (half the size; it loads into the float32 network
unchanged up to fp16 rounding, for fine-tuning or the torch backend) to keep models/ within
its 30 MB; the ONNX is what the figures are measured on (with --fp16-weights its conv
weights are stored as float16 too, `models/export.py`). Latencies measured at different
times on a shared machine drift by tens of percent; --latency-all re-times all the models in
one sitting so the index compares like with like.
--checkpoint last-raw ships the raw weights of the last checkpoint of a train.ema run (its
'train_model'; 'model' is the average), e.g. bisenet_lite_camvid, whose raw final weights
scored above the average.
The training time comes from runs/queue.log (start/end lines of training/queue.sh) when
--budget-min is not given.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path
import shutil
import sys
import tempfile

import numpy as np
import torch
import yaml

from seg_perception.core.model_index import load_index
from seg_perception.core.paths import models_dir

REPO = Path(__file__).resolve().parents[1]
BINARY_TASKS = ('human', 'vehicle')


def queue_minutes(run: Path) -> float | None:
    """Minutes the run trained for, summed over its start/end lines in runs/queue.log."""
    log = run.parent / 'queue.log'
    if not log.is_file():
        return None
    total, start = 0.0, None
    for line in log.read_text().splitlines():
        parts = line.split()
        if len(parts) < 8 or parts[7] != run.name:
            continue
        stamp = datetime.strptime(' '.join(parts[:6]), '%a %b %d %H:%M:%S %Z %Y')
        if parts[6] == 'start':
            start = stamp
        elif parts[6] == 'end' and start is not None:
            total += (stamp - start).total_seconds() / 60
            start = None
    return round(total, 1) if total else None


def ort_latency_ms(onnx: Path, size: tuple[int, int], runs: int = 20) -> float:
    from seg_perception.core.segmenter import Segmenter

    segmenter = Segmenter.from_path(onnx, backend='onnxruntime')
    image = np.random.default_rng(0).integers(0, 255, (*size, 3), np.uint8)
    for _ in range(3):
        segmenter(image, confidence=False)
    # The backend's own time (inference_ms), as the node's diagnostics report it.
    times = [segmenter(image, confidence=False).inference_ms for _ in range(runs)]
    return round(float(np.median(times)), 1)


def retime_all(index_path: Path) -> dict[str, float]:
    """Re-measures latency_ms of every model in the index (in place); returns name -> ms."""
    data = yaml.safe_load(index_path.read_text())
    times = {}
    for entry in data['models']:
        entry['latency_ms'] = times[entry['name']] = ort_latency_ms(
            index_path.parent / entry['file'], tuple(entry['input_size']))
    write_index(index_path, data['models'], data['launch'])
    return times


def raw_checkpoint(last: Path, dest: Path) -> Path:
    """Writes the raw weights of the checkpoint `last` (train.ema runs keep them as
    'train_model') as dest/last-raw.pt with the checkpoint's sidecar; returns its path."""
    from training.checkpoint import load, save_atomic

    state = load(last)
    if 'train_model' not in state:
        raise ValueError(f'{last} has no raw weights (train_model): the run did not use '
                         'train.ema, so its model is the raw network; use --checkpoint last')
    out = dest / 'last-raw.pt'
    save_atomic({'model': state['train_model']}, out)
    shutil.copy(last.with_suffix('.yaml'), out.with_suffix('.yaml'))
    return out


def write_index(index_path: Path, models: list[dict], launch: dict) -> None:
    """Rewrites the index with `models` and `launch`, keeping its leading comment block, and
    checks that it still loads."""
    header = (index_path.read_text().split('\nmodels:')[0] + '\n') if index_path.is_file() \
        else ''
    index_path.write_text(header + yaml.safe_dump({'models': models}, sort_keys=False)
                          + yaml.safe_dump({'launch': launch}, sort_keys=False))
    load_index(index_path)  # still valid


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--latency-all', action='store_true',
                        help='only re-time every indexed model (ONNX Runtime, side by side)')
    parser.add_argument('--run', type=Path, help='training run folder')
    parser.add_argument('--name', help='file stem under models/')
    parser.add_argument('--checkpoint', choices=('best', 'last', 'last-raw'), default='best',
                        help='last-raw: the raw weights of a train.ema run (not the average)')
    parser.add_argument('--config', help='config that reproduces it (default: by run name)')
    parser.add_argument('--budget-min', type=float)
    parser.add_argument('--notes', default='')
    parser.add_argument('--fp16-weights', action='store_true',
                        help='export_model --fp16-weights (half the ONNX file)')
    parser.add_argument('--models-dir', type=Path, default=None,
                        help='where to ship (default: the package models/)')
    args = parser.parse_args(argv)
    if args.latency_all:
        for name, ms in retime_all((args.models_dir or models_dir()) / 'index.yaml').items():
            print(f'{name:32s} {ms:7.1f} ms')
        return 0
    if args.run is None or args.name is None:
        parser.error('--run and --name are required (or --latency-all)')
    raw = args.checkpoint == 'last-raw'
    ckpt = args.run / 'checkpoints' / f'{"last" if raw else args.checkpoint}.pt'
    for needed in (args.run / 'config.yaml', ckpt):
        if not needed.is_file():
            parser.error(f'{needed} not found: --run must be a training.train output folder')
    with tempfile.TemporaryDirectory() as tmp:
        if raw:
            try:
                ckpt = raw_checkpoint(ckpt, Path(tmp))
            except (OSError, ValueError) as err:
                parser.error(str(err))
        return ship(args, ckpt, args.models_dir or models_dir())


def ship(args: argparse.Namespace, ckpt: Path, dest: Path) -> int:
    """Exports `ckpt` as dest/NAME.onnx (+ sidecar, fp16 state_dict), scores and times it,
    and enters it in dest/index.yaml."""
    from seg_perception.tools import export_model
    from training.evaluate import evaluate

    cfg = yaml.safe_load((args.run / 'config.yaml').read_text())
    task = cfg['data']['task']
    num_classes = 2 if task in BINARY_TASKS else 11
    height, width = cfg['export']['size']
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / f'{args.name}.onnx'
    code = export_model.main(['--model', cfg['model']['name'], '--num-classes', str(num_classes),
                              '--size', f'{height}x{width}', '--checkpoint', str(ckpt),
                              '--out', str(out)] + (['--fp16-weights'] if args.fp16_weights
                                                    else []))
    if code:
        return code
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    state = state.get('model', state)
    half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    torch.save({'model': half}, out.with_suffix('.pt'))

    result = evaluate(str(out), 'camvid', cfg['data']['root'], 'val', task=task,
                      backend='onnxruntime')
    if task == 'multiclass':
        val = {'miou': round(100 * result['miou'], 1),
               'pixel_accuracy': round(100 * result['pixel_accuracy'], 1),
               'per_class_iou': {k: round(100 * v, 1)
                                 for k, v in result['per_class_iou'].items()}}
    else:
        val = {'iou': round(100 * result['per_class_iou'][task], 1),
               'miou': round(100 * result['miou'], 1)}
    entry = {
        'name': args.name, 'file': out.name, 'task': task,
        'architecture': cfg['model']['name'], 'options': cfg['model']['options'] or {},
        'loss': cfg['loss']['name'], 'input_size': [height, width],
        'config': args.config or f'training/configs/{args.run.name}.yaml',
        'budget_min': args.budget_min or queue_minutes(args.run),
        'val': val, 'latency_ms': ort_latency_ms(out, (height, width)), 'notes': args.notes,
    }
    if cfg['model'].get('binarize'):
        entry['options'] = dict(entry['options'], binarize=cfg['model']['binarize'])
    index_path = dest / 'index.yaml'
    data = yaml.safe_load(index_path.read_text()) if index_path.is_file() else {}
    data = data or {}
    # A re-shipped model keeps its place in the index; a new one goes last.
    models = [entry if m['name'] == args.name else m for m in data.get('models') or []]
    if not any(m['name'] == args.name for m in models):
        models.append(entry)
    data['models'] = models
    data.setdefault('launch', {})
    write_index(index_path, models, data['launch'])
    print(yaml.safe_dump(entry, sort_keys=False))
    sizes = sum(p.stat().st_size for p in dest.iterdir() if p.is_file())
    print(f'{dest} now holds {sizes / 2**20:.1f} MB', file=sys.stderr)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
