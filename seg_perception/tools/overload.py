"""Overload benchmark: a camera faster than the model, for a minute, into the segmenter node.

1280x720 CamVid frames at 60 Hz (best-effort, as camera drivers publish) for `--seconds` into
the node, whose backend is made to take `--backend-ms` per frame (seg_perception.tools.
fault_node: the real ONNX Runtime inference, then sleep for the rest). Reports

- latency from each frame's stamp (publish time) to its ~/labels arriving here, p50 / p99,
  against the requirement p99 <= 1.5 x backend time + 20 ms (backend time: the node's own
  inference p50, so the sleep and the real inference both count);
- queue growth: frames the node received but neither processed, dropped nor rejected (the
  node keeps only the newest frame: at most the one in flight), drops counted in
  /diagnostics, and whether latency drifts from the first to the last quarter of the run;
- resident memory (VmRSS) of the node process after warm-up and at the end (<= 20 MB growth).

    python -m seg_perception.tools.overload [--seconds 60] [--rate 60] [--backend-ms 100]

Exit status 0 when every requirement holds, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
import tempfile
import threading
import time

import cv2
import numpy as np

from seg_perception.core.paths import resolve_model_path
from seg_perception.tools.ros_env import apply_ros_environment

REPO = Path(__file__).resolve().parents[2]
DEFAULT_CAMVID = REPO.parent / 'shared' / 'datasets' / 'camvid'
MEMORY_LIMIT_MB = 20.0


def latency_limit_ms(backend_ms: float) -> float:
    """The requirement on p99 latency for a backend taking `backend_ms`."""
    return 1.5 * backend_ms + 20.0


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS of process `pid` and its parts (anonymous, file-backed, shared memory), MB."""
    keys = ('VmRSS', 'RssAnon', 'RssFile', 'RssShmem')
    values = {}
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        key, _, rest = line.partition(':')
        if key in keys:
            values[key] = int(rest.split()[0]) / 1024
    return values


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` (VmRSS in /proc/<pid>/status), MB."""
    return memory_mb(pid)['VmRSS']


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (/proc/<pid>/stat), s."""
    fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')


def camvid_frames(root: Path, size: tuple[int, int], count: int = 8) -> list[np.ndarray]:
    """`count` CamVid val frames (RGB) resized to `size` (H, W)."""
    names = sorted((root / 'val').glob('*.png'))[:count]
    if not names:
        raise FileNotFoundError(f'no CamVid val frames under {root} (give --data)')
    return [np.ascontiguousarray(cv2.resize(cv2.imread(str(n)), (size[1], size[0]))[:, :, ::-1])
            for n in names]


def run(node, *, model: Path, frames: list[np.ndarray], seconds: float, rate: float,
        backend_ms: float, warmup_s: float = 5.0, namespace: str = '/overload',
        qos_depth: int | None = None, log: Path | None = None) -> dict:
    """Starts the fault node, publishes for `warmup_s + seconds` and returns the figures.

    `qos_depth` None keeps the node's default input history depth.
    """
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from seg_perception.ros.conversions import array_to_image_msg
    from seg_perception.ros.frame_client import FrameClient
    from seg_perception.tools.node_process import NodeProcess

    log = log or Path(tempfile.gettempdir()) / 'seg_perception_overload' / 'node.log'
    params = {'model': str(model), 'fault_backend_ms': backend_ms}
    if qos_depth is not None:
        params['qos_depth'] = qos_depth
    proc = NodeProcess(namespace, params, log, module='seg_perception.tools.fault_node')
    client = FrameClient(node, namespace)
    client.subscribe_diagnostics()
    arrivals: list[tuple[float, float]] = []  # (stamp, arrival), s; no message is kept

    def on_labels(msg) -> None:
        now = time.time()
        arrivals.append((msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9, now))

    labels = node.create_subscription(Image, f'{client.prefix}/labels', on_labels, 10)
    camera = node.create_publisher(Image, f'{namespace}/image', qos_profile_sensor_data)
    messages = [array_to_image_msg(f, Header(frame_id='camera'), 'rgb8') for f in frames]
    try:
        deadline = time.monotonic() + 60
        while not (camera.get_subscription_count() and node.count_publishers(labels.topic_name)):
            if time.monotonic() > deadline or proc.proc.poll() is not None:
                raise RuntimeError(f'node did not come up:\n{proc.output()}')
            time.sleep(0.05)
        time.sleep(0.5)
        sent = [0]

        def publish_for(duration: float) -> None:
            """Frames due every 1 / rate s; a slot missed by more than a period is skipped,
            as a camera would (no catch-up bursts)."""
            start = time.monotonic()
            slot = 0
            while slot < duration * rate:
                delay = start + slot / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -1.0 / rate:
                    slot = int((time.monotonic() - start) * rate)
                    continue
                msg = messages[sent[0] % len(messages)]
                now = time.time()  # stamped as a driver would: when the frame goes out
                msg.header.stamp.sec, msg.header.stamp.nanosec = int(now), int(now % 1 * 1e9)
                camera.publish(msg)
                sent[0] += 1
                slot += 1

        publish_for(warmup_s)
        time.sleep(0.3)
        before = client.last_diagnostics()
        memory_start, cpu_start = memory_mb(proc.proc.pid), cpu_seconds(proc.proc.pid)
        wall_start = time.monotonic()
        sent[0] = 0
        arrivals.clear()
        t0 = time.time()
        samples = []
        stop = threading.Event()

        def sample_memory() -> None:
            while not stop.wait(1.0):
                samples.append(rss_mb(proc.proc.pid))

        sampler = threading.Thread(target=sample_memory, daemon=True)
        sampler.start()
        publish_for(seconds)
        time.sleep(max(0.5, 3 * backend_ms / 1e3))  # the last frames come out
        stop.set()
        sampler.join()
        memory_end, cpu_end = memory_mb(proc.proc.pid), cpu_seconds(proc.proc.pid)
        cpu_percent = 100 * (cpu_end - cpu_start) / (time.monotonic() - wall_start)
        after = client.last_diagnostics()
        alive = proc.proc.poll() is None
    finally:
        node.destroy_subscription(labels)
        node.destroy_publisher(camera)
        client.close()
        proc.stop()

    def delta(key: str) -> int:
        return int(after[key]) - int(before[key])

    measured = [(s, a) for s, a in arrivals if s >= t0]
    latencies = np.array([(a - s) * 1e3 for s, a in measured])
    quarter = max(1, len(latencies) // 4)
    backend = float(after['inference_p50_ms'])
    received = delta('frames_received')
    processed, dropped = delta('frames_processed'), delta('frames_dropped')
    rejected, errors = delta('frames_rejected'), delta('errors')
    return {
        'seconds': seconds, 'rate_hz': rate, 'size': list(frames[0].shape[:2]),
        'sent': sent[0], 'sent_rate_hz': sent[0] / seconds,
        'node_received': received, 'lost_in_transport': sent[0] - received,
        'processed': processed, 'dropped': dropped, 'rejected': rejected, 'errors': errors,
        # Received by the node but not accounted for: waiting or in flight at the end.
        'pending': received - processed - dropped - rejected - errors,
        'labels_received': len(latencies),
        'backend_p50_ms': backend,
        'latency_p50_ms': float(np.percentile(latencies, 50)),
        'latency_p99_ms': float(np.percentile(latencies, 99)),
        'latency_max_ms': float(latencies.max()),
        'latency_first_quarter_p50_ms': float(np.median(latencies[:quarter])),
        'latency_last_quarter_p50_ms': float(np.median(latencies[-quarter:])),
        # The node's own view (its last 300 frames): stamp -> its last publish, callback ->
        # worker, callback -> last publish, backend alone.
        **{f'node_{name}_{q}_ms': float(after[f'{name}_{q}_ms'])
           for name in ('latency', 'wait', 'processing', 'inference') for q in ('p50', 'p99')},
        'latency_limit_ms': latency_limit_ms(backend),
        'rss_start_mb': memory_start['VmRSS'], 'rss_end_mb': memory_end['VmRSS'],
        'rss_max_mb': max([memory_start['VmRSS'], memory_end['VmRSS'], *samples]),
        'rss_growth_mb': memory_end['VmRSS'] - memory_start['VmRSS'],
        'memory_start_mb': memory_start, 'memory_end_mb': memory_end,
        'rss_samples_mb': [round(v, 1) for v in samples],  # one a second
        'node_cpu_percent': cpu_percent,
        'node_alive': alive,
    }


def verdicts(r: dict) -> dict[str, bool]:
    """Each requirement of the overload case, met or not."""
    return {
        'p99 latency <= 1.5 x backend + 20 ms': r['latency_p99_ms'] <= r['latency_limit_ms'],
        'no queue growth (<= 1 frame pending)': 0 <= r['pending'] <= 1,
        'drops counted in /diagnostics': r['dropped'] > 0
        and r['processed'] + r['dropped'] + r['pending'] == r['node_received'],
        f'memory growth <= {MEMORY_LIMIT_MB:g} MB': r['rss_growth_mb'] <= MEMORY_LIMIT_MB,
        'node alive': r['node_alive'],
    }


def report(r: dict) -> str:
    lines = [
        f'{r["size"][1]}x{r["size"][0]} frames at {r["rate_hz"]:g} Hz for {r["seconds"]:g} s: '
        f'sent {r["sent"]} ({r["sent_rate_hz"]:.1f} Hz), node received {r["node_received"]} '
        f'(lost in transport {r["lost_in_transport"]})',
        f'  processed {r["processed"]}, dropped {r["dropped"]} (counted), rejected '
        f'{r["rejected"]}, errors {r["errors"]}, pending at the end {r["pending"]}',
        f'  backend p50 {r["backend_p50_ms"]:.1f} ms -> limit {r["latency_limit_ms"]:.1f} ms',
        f'  latency stamp -> labels here: p50 {r["latency_p50_ms"]:.1f} ms, p99 '
        f'{r["latency_p99_ms"]:.1f} ms, max {r["latency_max_ms"]:.1f} ms '
        f'({r["labels_received"]} frames); p99 / limit = '
        f'{r["latency_p99_ms"] / r["latency_limit_ms"]:.2f}',
        f'  first / last quarter p50 {r["latency_first_quarter_p50_ms"]:.1f} / '
        f'{r["latency_last_quarter_p50_ms"]:.1f} ms',
        '  in the node, p50 / p99: ' + ', '.join(
            f'{label} {r[f"node_{name}_p50_ms"]:.1f} / {r[f"node_{name}_p99_ms"]:.1f} ms'
            for name, label in (('latency', 'stamp -> published'), ('wait', 'wait'),
                                ('processing', 'callback -> published'),
                                ('inference', 'backend'))),
        f'  node RSS {r["rss_start_mb"]:.1f} MB after warm-up -> {r["rss_end_mb"]:.1f} MB '
        f'(growth {r["rss_growth_mb"]:+.1f} MB, max {r["rss_max_mb"]:.1f} MB); node CPU '
        f'{r["node_cpu_percent"]:.0f} % of a core',
        '  growth by part: ' + ', '.join(
            f'{key} {r["memory_end_mb"][key] - r["memory_start_mb"][key]:+.1f} MB'
            for key in ('RssAnon', 'RssFile', 'RssShmem')),
    ]
    lines += [f'  [{"ok" if ok else "FAILED"}] {name}' for name, ok in verdicts(r).items()]
    return '\n'.join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--model', default='fcn_tiny_camvid.onnx')
    parser.add_argument('--seconds', type=float, default=60.0)
    parser.add_argument('--rate', type=float, default=60.0, help='frames per second')
    parser.add_argument('--size', default='720x1280', help='H x W')
    parser.add_argument('--backend-ms', type=float, default=100.0)
    parser.add_argument('--warmup', type=float, default=5.0, help='seconds before measuring')
    parser.add_argument('--data', type=Path, default=DEFAULT_CAMVID, help='CamVid root')
    parser.add_argument('--qos-depth', type=int, help="the node's input history depth "
                                                      '(default: its own default)')
    parser.add_argument('--json', type=Path, help='also write the figures here')
    parser.add_argument('--domain-id', type=int, default=39)
    args = parser.parse_args(argv)

    size = tuple(int(v) for v in args.size.split('x'))
    frames = camvid_frames(args.data, size)
    apply_ros_environment(args.domain_id,
                          Path(tempfile.gettempdir()) / 'seg_perception_overload')

    from seg_perception.ros.frame_client import spinning_node

    with spinning_node('seg_perception_overload') as node:
        result = run(node, model=resolve_model_path(args.model), frames=frames,
                     seconds=args.seconds, rate=args.rate, backend_ms=args.backend_ms,
                     warmup_s=args.warmup, qos_depth=args.qos_depth)
    print(report(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if all(verdicts(result).values()) else 1


if __name__ == '__main__':
    raise SystemExit(main())
