"""bag_eval end to end: make_bag on CamVid frames, the live node over Fast DDS, the report.

bag_eval runs as a user runs it (its own process, its own node process), on a ROS domain of
its own so that it cannot see the probe nodes of the other ROS tests.
"""

from __future__ import annotations

from dataclasses import fields
import json
import os
from pathlib import Path
import subprocess
import sys

import cv2
import pytest

from seg_perception.core.bagio import plan_frames, write_bag
from seg_perception.core.drivable import DEFAULT_CLASSES, DrivableConfig
from seg_perception.ros.params import SegmenterNodeConfig

_WORKER = int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0').removeprefix('gw') or 0)
DOMAIN = str(90 + _WORKER)
REPORT_KEYS = {'miou', 'per_class_iou', 'pixel_accuracy', 'dice', 'latency_ms', 'frames'}


def bag_eval(*args) -> tuple[dict | None, subprocess.CompletedProcess]:
    cmd = [sys.executable, '-m', 'seg_perception.tools.bag_eval', '--quiet',
           '--domain-id', DOMAIN, *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    report = Path(args[list(args).index('--report') + 1]) / 'report.json'
    return (json.loads(report.read_text()) if proc.returncode == 0 else None), proc


def ok(result):
    report, proc = result
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return report


@pytest.fixture(scope='module')
def val_bag(camvid_root, tmp_path_factory) -> Path:
    """The first 10 CamVid val frames with ground truth, 10 Hz, sqlite3."""
    out = tmp_path_factory.mktemp('bags') / 'val10'
    write_bag(plan_frames(camvid_root / 'val', camvid_root / 'valannot', rate=10, limit=10), out)
    return out


@pytest.fixture(scope='module')
def offline(val_bag, camvid_model, tmp_path_factory):
    return ok(bag_eval('--bag', val_bag, '--model', camvid_model, '--offline', '--report',
                       tmp_path_factory.mktemp('offline')))


def test_live_deterministic_equals_offline(val_bag, camvid_model, offline, tmp_path):
    live = ok(bag_eval('--bag', val_bag, '--model', camvid_model, '--deterministic',
                       '--report', tmp_path))
    assert REPORT_KEYS <= live.keys() and REPORT_KEYS <= offline.keys()
    assert live['frames'] == {'sent': 10, 'processed': 10, 'dropped': 0, 'scored': 10,
                              'rejected': 0}
    assert live['confusion_matrix'] == offline['confusion_matrix']
    assert live['miou'] == offline['miou'] and live['per_class_iou'] == offline['per_class_iou']
    assert live['pixel_accuracy'] == offline['pixel_accuracy']
    assert set(live['per_class_iou']) >= {'Road', 'Car', 'Pedestrian'}
    lat = live['latency_ms']
    assert lat['count'] == 10 and 0 < lat['p50'] <= lat['p95'] <= lat['p99'] <= lat['max']
    assert offline['latency_ms']['p50'] is None  # offline has no transport latency
    # The report folder: JSON, markdown, charts and sample rows that decode.
    for name in ('report.md', 'per_class_iou.png', 'latency_hist.png'):
        assert (tmp_path / name).is_file(), name
    samples = sorted((tmp_path / 'samples').glob('*.png'))
    assert len(samples) == 4
    for png in [tmp_path / 'per_class_iou.png', tmp_path / 'latency_hist.png', *samples]:
        image = cv2.imread(str(png))
        assert image is not None and image.size > 0, png
    # input | ground truth | overlay | drivable, 320 px each
    assert cv2.imread(str(samples[0])).shape == (240, 1280, 3)
    assert 'mIoU' in (tmp_path / 'report.md').read_text()


def test_realtime_overload_drops_instead_of_queueing(val_bag, camvid_model, tmp_path):
    # 10 frames recorded at 10 Hz played 200x faster: one frame every 0.5 ms, far faster than
    # the node's ~10 ms per frame. Queueing would make the last frame wait for all the others.
    report = ok(bag_eval('--bag', val_bag, '--model', camvid_model, '--rate-scale', 200,
                         '--report', tmp_path))
    frames = report['frames']
    assert frames['sent'] == 10 and frames['processed'] + frames['dropped'] == 10
    assert frames['dropped'] >= 3, frames
    assert frames['processed'] >= 1
    assert int(report['node_diagnostics']['frames_dropped']) >= 1
    # Newest-frame-only: what is processed is at most ~2 frames behind, never 10.
    assert report['latency_ms']['max'] < 250, report['latency_ms']


def test_two_nodes_binary_task_compressed_sim_time_and_record(camvid_root, camvid_model,
                                                              binary_model, tmp_path):
    """The segmenter and a vehicle_mask node on one compressed camera, replayed together."""
    bag = tmp_path / 'bag'
    write_bag(plan_frames(camvid_root / 'val', camvid_root / 'valannot', rate=10, limit=4),
              bag, storage='mcap', compressed=True)
    common = ('--bag', bag, '--model', binary_model, '--task', 'vehicle',
              '--extra', f'multiclass={camvid_model}')
    off = ok(bag_eval(*common, '--offline', '--report', tmp_path / 'off'))
    live = ok(bag_eval(*common, '--deterministic', '--use-sim-time', '--record',
                       tmp_path / 'rec', '--report', tmp_path / 'live'))
    assert live['confusion_matrix'] == off['confusion_matrix']
    assert live['frames']['processed'] == 4
    assert list(live['per_class_iou']) == ['background', 'vehicle']
    assert live['positive_iou'] == live['per_class_iou']['vehicle']
    assert set(live['tasks']) == {'vehicle', 'multiclass'}
    multi = json.loads((tmp_path / 'live' / 'multiclass' / 'report.json').read_text())
    multi_off = json.loads((tmp_path / 'off' / 'multiclass' / 'report.json').read_text())
    assert multi['confusion_matrix'] == multi_off['confusion_matrix']
    assert multi['frames']['processed'] == 4 and multi['node'] == '/bag_eval/segmenter'
    assert live['tasks']['multiclass']['miou'] == multi['miou']
    from seg_perception.core.bagio import iter_messages

    topics = {}
    for topic, _, _ in iter_messages(tmp_path / 'rec'):
        topics[topic] = topics.get(topic, 0) + 1
    assert topics == {f'/bag_eval/{node}/{output}': 4
                      for node, outputs in (('vehicle_mask', ('labels', 'overlay', 'mask')),
                                            ('segmenter', ('labels', 'overlay', 'drivable')))
                      for output in outputs}


def test_refusals_name_the_problem(val_bag, camvid_model, binary_model, tmp_path):
    _, proc = bag_eval('--bag', val_bag, '--model', tmp_path / 'missing.onnx', '--offline',
                       '--report', tmp_path / 'r1')
    assert proc.returncode == 2 and 'missing.onnx' in proc.stderr
    _, proc = bag_eval('--bag', val_bag, '--model', binary_model, '--task', 'human',
                       '--offline', '--report', tmp_path / 'r2')
    assert proc.returncode == 2 and 'needs a binary_human model' in proc.stderr
    _, proc = bag_eval('--bag', tmp_path, '--model', camvid_model, '--offline',
                       '--report', tmp_path / 'r3')
    assert proc.returncode == 2 and 'not a rosbag2 folder' in proc.stderr


def test_offline_drivable_matches_node_defaults():
    node = SegmenterNodeConfig()
    default = DrivableConfig(class_ids=(0,))
    assert tuple(node.drivable_classes) == DEFAULT_CLASSES
    names = {f.name for f in fields(DrivableConfig)} - {'class_ids'}
    assert {n: getattr(default, n) for n in names} == {
        n: getattr(node, f'drivable_{n}') for n in names}


def _command(spec) -> list[str]:
    """What launch_ros runs for a NodeSpec (ros2 run + --ros-args), with this venv's scripts."""
    cmd = [str(Path(sys.executable).parent / spec.executable)]
    if spec.executable == 'bag_eval':
        return cmd + spec.arguments + ['--quiet']
    ros = ['--ros-args', '-r', f'__node:={spec.name}', '-r', f'__ns:=/{spec.namespace}']
    for param in spec.parameters:
        if isinstance(param, dict):
            ros += [a for k, v in param.items() for a in ('-p', f'{k}:={str(v).lower()}')]
        else:
            ros += ['--params-file', param]
    ros += [a for src, dst in spec.remappings for a in ('-r', f'{src}:={dst}')]
    return cmd + ros + spec.arguments[1:]


def test_replay_launch_nodes_run_together(val_bag, camvid_model, tmp_path):
    """launch/replay.launch.py's node list, started as launch_ros would start it."""
    from seg_perception.launch_config import replay_nodes
    from seg_perception.tools.ros_env import ros_environment

    params = tmp_path / 'replay.yaml'
    params.write_text(f'/**/segmenter:\n  ros__parameters:\n    model: {camvid_model}\n'
                      '    backend: onnxruntime\n')
    specs = replay_nodes(bag=str(val_bag), report=str(tmp_path / 'report'), namespace='replay',
                         params_file=params, masks=False, deterministic=True)
    assert [s.executable for s in specs] == ['segmenter_node', 'bag_eval']
    env = ros_environment(int(DOMAIN), tmp_path / 'ros_log')
    node = subprocess.Popen(_command(specs[0]), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        evaluator = subprocess.run(_command(specs[1]), env=env, capture_output=True, text=True,
                                   timeout=120)
    finally:
        node.terminate()
        log = node.communicate(timeout=10)[0]
    assert evaluator.returncode == 0, evaluator.stderr + evaluator.stdout + log
    report = json.loads((tmp_path / 'report' / 'report.json').read_text())
    assert report['node'] == '/replay/segmenter' and report['mode'] == 'deterministic'
    assert report['frames']['processed'] == 10


def test_replay_nodes_refuse_bad_arguments(tmp_path):
    from seg_perception.launch_config import replay_nodes

    with pytest.raises(ValueError, match='bag must name'):
        replay_nodes(bag=' ')
    with pytest.raises(ValueError, match='rate_scale'):
        replay_nodes(bag='b', rate_scale=0)
    params = tmp_path / 'p.yaml'
    params.write_text('/**/segmenter:\n  ros__parameters:\n    backend: onnxruntime\n')
    with pytest.raises(ValueError, match='sets no model for segmenter'):
        replay_nodes(bag='b', params_file=params, masks=False)


def test_deterministic_replay_resends_a_frame_sent_before_the_node_listened(
        ros_node, val_bag, camvid_model):
    """The node starts only after the first frame was published (to nobody, as a frame sent
    while endpoints still match can be): the player re-sends it and both frames are scored."""
    import threading

    from seg_perception.core.bagio import read_bag
    from seg_perception.ros.bag_player import BagPlayer
    from test.ros.conftest import NodeProcess, node_log

    frames = read_bag(val_bag, limit=2).frames
    ns = '/resend_test'
    player = BagPlayer(ros_node, f'{ns}/image', {f'{ns}/segmenter': ('labels',)},
                       compressed=False)
    procs = []
    late = threading.Timer(0.5, lambda: procs.append(NodeProcess(
        ns, {'model': str(camvid_model), 'backend': 'onnxruntime'}, node_log(ns))))
    late.start()
    try:
        notes = player.play(frames, deterministic=True, timeout=60, resend_after=1.0)
    finally:
        late.join()
        player.close()
        for proc in procs:
            proc.stop()
    assert all(player.results(f) is not None for f in frames), notes
    assert len(notes) == 1 and notes[0].startswith('frame 0 ') and 'sent' in notes[0], notes
    assert int(notes[0].split('sent ')[1].split('x')[0]) >= 2
