"""Lifecycle behaviour: autostart, managed transitions, and a model that cannot load."""

from __future__ import annotations

import shutil
import subprocess
import sys

from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
import numpy as np
import pytest
from rcl_interfaces.srv import SetParameters

from test.ros.conftest import NodeProcess, node_log
from test.ros.test_parameters import call, value_msg
from test.ros.test_segmenter_node import by_stamp, image_msg


def lifecycle_client(ros_node, fqn: str):
    """(state(), transition(id)) of the lifecycle node `fqn`, through its services."""

    def state() -> int:
        return call(ros_node, GetState, f'{fqn}/get_state', GetState.Request()).current_state.id

    def transition(tid: int) -> bool:
        req = ChangeState.Request(transition=Transition(id=tid))
        return call(ros_node, ChangeState, f'{fqn}/change_state', req).success

    return state, transition


def test_autostart_with_missing_model_exits_nonzero_naming_the_file(tmp_path):
    missing = tmp_path / 'absent.onnx'
    proc = subprocess.run(
        [sys.executable, '-m', 'seg_perception.ros.segmenter_node', '--ros-args',
         '-r', '__ns:=/t_missing', '-p', f'model:={missing}'],
        capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f'cannot load model {missing}: file not found' in proc.stderr + proc.stdout


def test_managed_node_stays_unconfigured_until_the_model_is_fixed(
        start_node, ros_node, camvid_model, tmp_path, val_frames):
    from rcl_interfaces.msg import Parameter

    model = tmp_path / 'later.onnx'
    proc, probe = start_node('/t_managed', {'model': str(model), 'autostart': False},
                             outputs=(), connect=False)
    state, transition = lifecycle_client(ros_node, proc.fqn)

    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    assert not transition(Transition.TRANSITION_CONFIGURE)
    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    assert proc.proc.poll() is None, 'a managed node must not exit on a failed configure'
    assert f'cannot load model {model}: file not found' in proc.output()

    # Fix the file; `model` may change while unconfigured. Configure and activate again.
    shutil.copy(camvid_model, model)
    shutil.copy(camvid_model.with_suffix('.yaml'), model.with_suffix('.yaml'))
    req = SetParameters.Request(parameters=[Parameter(name='model', value=value_msg(str(model)))])
    assert call(ros_node, SetParameters, f'{proc.fqn}/set_parameters', req).results[0].successful
    assert transition(Transition.TRANSITION_CONFIGURE)
    assert state() == State.PRIMARY_STATE_INACTIVE
    assert transition(Transition.TRANSITION_ACTIVATE)
    assert state() == State.PRIMARY_STATE_ACTIVE
    probe.subscribe('labels')
    probe.wait_connected()
    probe.image_pub.publish(image_msg(val_frames[0][1], 7000))
    probe.wait_for(lambda p: by_stamp(p, 'labels', 7000), what='labels after activation')

    # Deactivated: no outputs, frames are not processed.
    assert transition(Transition.TRANSITION_DEACTIVATE)
    probe.image_pub.publish(image_msg(val_frames[0][1], 7001))
    with pytest.raises(AssertionError, match='timed out'):
        probe.wait_for(lambda p: by_stamp(p, 'labels', 7001), timeout=2.0)
    assert transition(Transition.TRANSITION_CLEANUP)
    assert state() == State.PRIMARY_STATE_UNCONFIGURED


def test_sigterm_exits_cleanly(camvid_model):
    proc = NodeProcess('/t_sigterm', {'model': str(camvid_model)}, node_log('/t_sigterm'))
    try:
        import time

        deadline = time.monotonic() + 30
        while 'listening on' not in proc.output() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert 'listening on /t_sigterm/image' in proc.output()
    finally:
        code = proc.stop()
    assert code in (0, -15), proc.output()


def test_parameter_yaml_applies_to_a_namespaced_node(tmp_path, ros_node, camvid_model):
    """config/segmenter.yaml keys nodes as /**/segmenter: any namespace picks them up."""
    from rcl_interfaces.srv import GetParameters
    import rclpy
    import yaml

    from seg_perception.core.paths import config_dir

    shipped = yaml.safe_load((config_dir() / 'segmenter.yaml').read_text())
    assert list(shipped) == ['/**/segmenter']
    shipped['/**/segmenter']['ros__parameters'].update(model=str(camvid_model),
                                                        overlay_alpha=0.25)
    params = tmp_path / 'params.yaml'
    params.write_text(yaml.safe_dump(shipped))
    proc = NodeProcess('/t_yaml/robot', {}, node_log('/t_yaml'),
                       ros_args=['--params-file', str(params)])
    try:
        req = GetParameters.Request(names=['overlay_alpha', 'model', 'qos_depth'])
        values = call(ros_node, GetParameters, f'{proc.fqn}/get_parameters', req).values
        got = [rclpy.parameter.parameter_value_to_python(v) for v in values]
        assert got == [0.25, str(camvid_model), 10]
    finally:
        proc.stop()


def _edit_sidecar(model, **changes):
    import yaml

    side = model.with_suffix('.yaml')
    side.write_text(yaml.safe_dump({**yaml.safe_load(side.read_text()), **changes}))


# How a model file goes wrong in the field -> the cause the node must name (with the file).
BROKEN_MODELS = {
    'truncated': (lambda m: m.write_bytes(m.read_bytes()[:3000]), 'not a loadable ONNX model'),
    'not a model': (lambda m: m.write_bytes(bytes(range(256)) * 16), 'not a loadable ONNX model'),
    'sidecar missing': (lambda m: m.with_suffix('.yaml').unlink(), 'sidecar {side} not found'),
    'class count': (lambda m: _edit_sidecar(m, num_classes=2, class_set='binary_vehicle'),
                    'network outputs 11 classes but the sidecar says 2'),
    'input size': (lambda m: _edit_sidecar(m, input_size=[360, 480]),
                   'network input shape [1, 3, 180, 240] does not match the sidecar input_size'),
}


def _place_model(camvid_model, model, damage=None) -> str:
    """A fresh copy of the test model at `model`, damaged; returns the expected message."""
    shutil.copy(camvid_model, model)
    shutil.copy(camvid_model.with_suffix('.yaml'), model.with_suffix('.yaml'))
    if damage is None:
        return ''
    mutate, cause = BROKEN_MODELS[damage]
    mutate(model)
    return f'cannot load model {model}: ' + cause.format(side=model.with_suffix('.yaml'))


@pytest.mark.parametrize('damage', list(BROKEN_MODELS))
def test_autostart_with_a_broken_model_exits_1_naming_file_and_cause(damage, camvid_model,
                                                                     tmp_path):
    model = tmp_path / 'broken.onnx'
    expected = _place_model(camvid_model, model, damage)
    proc = subprocess.run(
        [sys.executable, '-m', 'seg_perception.ros.segmenter_node', '--ros-args',
         '-r', '__ns:=/t_broken', '-p', f'model:={model}'],
        capture_output=True, text=True, timeout=60)
    output = proc.stderr + proc.stdout
    assert proc.returncode == 1, output
    assert expected in output and 'cannot start:' in output
    assert 'Traceback' not in output, 'a clean exit, not a crash'


def test_managed_node_survives_every_broken_model_and_configures_once_fixed(
        start_node, ros_node, camvid_model, tmp_path, val_frames):
    from seg_perception.core.segmenter import Segmenter
    from test.ros.test_segmenter_node import labels_of

    model = tmp_path / 'fleet.onnx'
    _place_model(camvid_model, model, 'truncated')
    proc, probe = start_node('/t_broken_managed', {'model': str(model), 'autostart': False,
                                                   'diagnostics_period': 0.2},
                             outputs=(), connect=False)
    state, transition = lifecycle_client(ros_node, proc.fqn)

    for damage in BROKEN_MODELS:
        expected = _place_model(camvid_model, model, damage)
        assert not transition(Transition.TRANSITION_CONFIGURE), damage
        assert state() == State.PRIMARY_STATE_UNCONFIGURED
        probe.wait_for(lambda p, e=expected: e in proc.output(), timeout=5.0,
                       what=f'the {damage} message in the log')
        assert proc.proc.poll() is None, f'the node exited on a {damage} model'
    assert probe.last_diagnostics()['state'] == 'unconfigured'

    _place_model(camvid_model, model)
    assert transition(Transition.TRANSITION_CONFIGURE)
    assert transition(Transition.TRANSITION_ACTIVATE)
    probe.subscribe('labels')
    probe.wait_connected()
    rgb = val_frames[1][1]
    probe.image_pub.publish(image_msg(rgb, 7100))
    probe.wait_for(lambda p: by_stamp(p, 'labels', 7100), what='labels once fixed')
    expected_labels = Segmenter.from_path(camvid_model)(rgb).labels
    np.testing.assert_array_equal(labels_of(by_stamp(probe, 'labels', 7100)[0]),
                                  expected_labels)
    assert probe.last_diagnostics()['state'] == 'active'
