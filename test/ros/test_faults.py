"""A backend that fails on some frames: the node keeps publishing for the others and reports
the failures in /diagnostics (errors, last_error). The backend is the node's real ONNX Runtime
backend wrapped by the fault_node harness, failing on a seeded 5 % of inferences."""

from __future__ import annotations

import numpy as np
import pytest

from seg_perception.core.segmenter import Segmenter
from seg_perception.tools.fault_node import InjectedFault
from test.ros.conftest import FrameClient, NodeProcess, node_log
from test.ros.test_segmenter_node import by_stamp, image_msg, labels_of

FRAMES = 100


@pytest.fixture(scope='module')
def faulty_node(ros_node, camvid_model):
    namespace = '/t_faulty'
    proc = NodeProcess(namespace, {'model': str(camvid_model), 'qos_reliability': 'reliable',
                                   'qos_depth': 50, 'diagnostics_period': 0.1,
                                   'fault_error_fraction': 0.05, 'fault_seed': 1},
                       node_log(namespace), module='seg_perception.tools.fault_node')
    probe = FrameClient(ros_node, namespace)
    probe.subscribe('labels')
    probe.subscribe_diagnostics()
    try:
        probe.wait_connected()
        yield proc, probe
    finally:
        probe.close()
        proc.stop()


def test_failing_frames_are_counted_and_every_other_frame_is_published(faulty_node,
                                                                       camvid_model,
                                                                       val_frames):
    proc, probe = faulty_node
    offline = Segmenter.from_path(camvid_model)
    expected = [offline(rgb).labels for _, rgb, _ in val_frames]
    errors, failed, published = 0, [], []
    # One frame at a time, so none is dropped: each either comes back or adds an error.
    for i in range(FRAMES):
        stamp = 8000 + i
        probe.image_pub.publish(image_msg(val_frames[i % len(val_frames)][1], stamp))
        outcome = probe.wait_for(
            lambda p, s=stamp, e=errors: ('published' if by_stamp(p, 'labels', s) else
                                          'failed' if p.diagnostics and int(
                                              p.diagnostics[-1]['errors']) > e else None),
            what=f'frame {stamp} published or counted as an error')
        if outcome == 'failed':
            errors += 1
            failed.append(stamp)
        else:
            published.append(stamp)
            np.testing.assert_array_equal(labels_of(by_stamp(probe, 'labels', stamp)[0]),
                                          expected[i % len(val_frames)])
    assert proc.proc.poll() is None
    diag = probe.last_diagnostics()
    assert int(diag['errors']) == errors == len(failed)
    assert int(diag['frames_processed']) == len(published) == FRAMES - errors
    assert int(diag['frames_dropped']) == 0 and int(diag['frames_rejected']) == 0
    # 5 % of 100 with seed 1: a handful, not none and not most.
    assert 2 <= errors <= 12
    assert diag['last_error'].startswith(f'{InjectedFault.__name__}: injected backend fault '
                                         'on inference ')
    assert not any(by_stamp(probe, 'labels', s) for s in failed)
    # Publishing went on after the first failure.
    assert any(s > failed[0] for s in published)
    print(f'\n{FRAMES} frames, {errors} failed ({failed}), {len(published)} published; '
          f'last_error: {diag["last_error"]}')
