"""Overload, shortened: 1280x720 at 60 Hz for 8 s into a node whose backend takes 100 ms.

The full minute with the figures is `python -m seg_perception.tools.overload`; here only
bounded behaviour is checked, loosely (the machine is shared): latency does not grow, the node
holds at most the frame in flight, and every frame it did not process is counted as dropped.
"""

from __future__ import annotations

import pytest

from seg_perception.tools.overload import camvid_frames, latency_limit_ms, run
from test.ros.conftest import node_log

BACKEND_MS = 100.0


@pytest.fixture(scope='module')
def overload(ros_node, camvid_model, camvid_root):
    frames = camvid_frames(camvid_root, (720, 1280), count=4)
    return run(ros_node, model=camvid_model, frames=frames, seconds=8.0, rate=60.0,
               backend_ms=BACKEND_MS, warmup_s=3.0, namespace='/t_overload',
               log=node_log('/t_overload'))


def test_the_harness_backend_takes_the_time_it_was_given(overload):
    assert overload['node_alive']
    assert BACKEND_MS <= overload['backend_p50_ms'] < BACKEND_MS + 15
    assert overload['errors'] == overload['rejected'] == 0


def test_newest_frame_only_no_queue_and_drops_counted(overload):
    r = overload
    assert r['sent_rate_hz'] > 45, 'the camera side could not keep up: no overload'
    assert 0 <= r['pending'] <= 1
    # About one frame in six gets through a 100 ms backend at 60 Hz; the rest are counted.
    assert r['dropped'] >= 3 * r['processed'] > 0
    assert r['processed'] + r['dropped'] + r['pending'] == r['node_received']
    # ~1000 / (100 ms + overhead) frames a second come out.
    assert r['processed'] >= 0.6 * r['seconds'] * 1000 / BACKEND_MS


def test_latency_is_bounded_and_does_not_grow(overload):
    r = overload
    assert r['latency_limit_ms'] == pytest.approx(latency_limit_ms(r['backend_p50_ms']))
    # A queue would add a frame period per frame: seconds of latency by the end of the run.
    assert r['latency_p99_ms'] < 2 * r['latency_limit_ms']
    assert r['latency_last_quarter_p50_ms'] < r['latency_first_quarter_p50_ms'] + 50
    assert r['latency_p50_ms'] > r['backend_p50_ms']
