"""Node overhead benchmark: end-to-end latency minus the backend's own inference time.

For each input size the segmenter runs in its own process; this process publishes frames one
at a time (stamp = publish time), waits for `~/labels`, and takes the latency from the stamp
to the arrival. The node's /diagnostics give, over the same frames, the backend time alone
and the time from its callback to its last publish. Overhead = e2e p50 - backend p50.

    python -m seg_perception.tools.bench_node [--model M] [--sizes 480x640 720x1280]
        [--param threads:=2 intra_op_spinning:=true]   # more segmenter parameters
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
import tempfile
import time

import cv2
import numpy as np
from tqdm import tqdm

from seg_perception.core.paths import resolve_model_path
from seg_perception.tools.demo import find_camvid
from seg_perception.tools.ros_env import apply_ros_environment

# The small shipped model: what the node adds is clearest beside a fast backend.
DEFAULT_MODEL = 'fcn_tiny_camvid.onnx'


def pick_frames(root: Path, count: int) -> list[str]:
    """`count` val frames spread over the split (names are <sequence>_<frame>.png)."""
    names = sorted(p.name for p in (root / 'val').glob('*.png'))
    step = max(1, len(names) // count)
    return names[::step][:count]


ALL_OUTPUTS = ('labels', 'color', 'overlay', 'confidence', 'drivable')


def run_case(node, model: Path | None, size: tuple[int, int], outputs: tuple[str, ...],
             frames: list[np.ndarray], count: int, warmup: int, tag: str,
             params: dict[str, str] | None = None) -> dict:
    """One node process, `count` timed frames; model None runs the transport-floor echo.
    `params`: more segmenter parameters (name -> value as ROS parses `-p name:=value`)."""
    from std_msgs.msg import Header

    from seg_perception.ros.conversions import array_to_image_msg
    from seg_perception.ros.frame_client import FrameClient
    from seg_perception.tools.node_process import NodeProcess

    namespace = f'/bench_{tag}'
    log = Path(tempfile.gettempdir()) / 'seg_perception_bench' / f'{tag}.log'
    if model is None:
        proc = NodeProcess(namespace, {}, log, module='seg_perception.tools.dds_echo')
    else:
        proc = NodeProcess(namespace, {'model': str(model), 'qos_reliability': 'reliable',
                                       **(params or {})}, log)
    client = FrameClient(node, namespace)
    client.subscribe(*outputs)
    client.subscribe_diagnostics()
    images = [cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for f in frames]
    latencies = []
    try:
        client.wait_connected()
        for i in tqdm(range(warmup + count), desc=f'{tag}', unit='frame', leave=False):
            msg = array_to_image_msg(images[i % len(images)], Header(frame_id='bench'), 'rgb8')
            header = msg.header
            # Stamped as a camera driver would: when the frame is ready to go out.
            now = time.time()
            header.stamp.sec, header.stamp.nanosec = int(now), int((now % 1) * 1e9)
            client.image_pub.publish(msg)
            key = ('labels', header.stamp.sec, header.stamp.nanosec)
            client.wait_for(lambda c, k=key, o=outputs, h=header: all(
                c.by_stamp(x, h.stamp.sec, h.stamp.nanosec) for x in o), what='outputs')
            if i >= warmup:
                stamp = header.stamp.sec + header.stamp.nanosec * 1e-9
                latencies.append((client.arrival[key] - stamp) * 1e3)
            client.clear()
        diag = client.last_diagnostics() if model is not None else {}
    finally:
        client.close()
        proc.stop()
    e2e = float(np.percentile(latencies, 50))
    backend = float(diag.get('inference_p50_ms', 0.0))
    return {
        'size': f'{size[0]}x{size[1]}', 'outputs': list(outputs) if model else ['echo'],
        'frames': len(latencies),
        'e2e_p50_ms': e2e, 'e2e_p99_ms': float(np.percentile(latencies, 99)),
        'backend_p50_ms': backend,
        'node_processing_p50_ms': float(diag.get('processing_p50_ms', 'nan')),
        'node_wait_p50_ms': float(diag.get('wait_p50_ms', 'nan')),
        'overhead_ms': e2e - backend, 'overhead_fraction': (e2e - backend) / e2e,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default=DEFAULT_MODEL)
    parser.add_argument('--sizes', nargs='+', default=['480x640', '720x1280'], help='H x W')
    parser.add_argument('--frames', type=int, default=100)
    parser.add_argument('--warmup', type=int, default=10)
    parser.add_argument('--data', help='CamVid root (frames are resized to each size)')
    parser.add_argument('--json', type=Path, help='also write the results here')
    parser.add_argument('--domain-id', type=int, default=38)
    parser.add_argument('--param', nargs='+', default=[], metavar='NAME:=VALUE',
                        help='more segmenter parameters, e.g. threads:=2 '
                             'intra_op_spinning:=true')
    args = parser.parse_args(argv)

    params = {}
    for item in args.param:
        name, sep, value = item.partition(':=')
        if not sep or not name:
            parser.error(f'--param takes NAME:=VALUE, got {item!r}')
        params[name] = value
    model = resolve_model_path(args.model)
    root = find_camvid(args.data)
    frames = [np.ascontiguousarray(cv2.imread(str(root / 'val' / n))[:, :, ::-1])
              for n in pick_frames(root, 10)]
    apply_ros_environment(args.domain_id, Path(tempfile.gettempdir()) / 'seg_perception_bench')

    from seg_perception.ros.frame_client import spinning_node

    results = []
    with spinning_node('seg_perception_bench') as node:
        for size_text in args.sizes:
            size = tuple(int(v) for v in size_text.split('x'))
            floor = run_case(node, None, size, ('labels',), frames, args.frames, args.warmup,
                             f'{size[0]}x{size[1]}_echo')
            results.append(floor)
            for outputs, name in ((('labels',), 'labels'), (ALL_OUTPUTS, 'all')):
                tag = f'{size[0]}x{size[1]}_{name}'
                result = run_case(node, model, size, outputs, frames, args.frames, args.warmup,
                                  tag, params)
                result['beyond_floor_ms'] = result['overhead_ms'] - floor['e2e_p50_ms']
                results.append(result)
    extra = ''.join(f', {k}:={v}' for k, v in params.items())
    print(f'\nmodel {model.name}{extra}; {args.frames} frames per case, one in flight at a '
          'time\n')
    print(f'{"size":>9} {"outputs":>7} {"e2e p50":>8} {"e2e p99":>8} {"backend":>8} '
          f'{"in-node":>8} {"(wait)":>7} {"overhead":>9} {"share":>6} {"> floor":>8}')
    for r in results:
        outs = r['outputs'][0] if len(r['outputs']) == 1 else 'all'
        beyond = r.get('beyond_floor_ms')
        print(f'{r["size"]:>9} {outs:>7} {r["e2e_p50_ms"]:7.2f}ms {r["e2e_p99_ms"]:7.2f}ms '
              f'{r["backend_p50_ms"]:7.2f}ms {r["node_processing_p50_ms"]:7.2f}ms '
              f'{r["node_wait_p50_ms"]:6.2f}ms '
              f'{r["overhead_ms"]:8.2f}ms {100 * r["overhead_fraction"]:5.1f}% '
              + (f'{beyond:7.2f}ms' if beyond is not None else f'{"":>8}'))
    print('\ne2e = input stamp -> ~/labels received (labels are published first).')
    print('echo = a node that only answers each image with a same-size mono8 image: the '
          'DDS + rclpy floor.\nin-node = callback -> last publish (wait = callback -> worker); '
          'overhead = e2e p50 - backend p50;\n> floor = overhead beyond the echo floor at the '
          'same size: what the segmenter itself adds.')
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
