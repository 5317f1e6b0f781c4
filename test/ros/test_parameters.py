"""Parameter validation through the real parameter services of a running node."""

from __future__ import annotations

import time

import pytest
from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
from rcl_interfaces.srv import DescribeParameters, GetParameters, SetParameters
import rclpy

from seg_perception.ros.params import SegmenterNodeConfig


def call(node, srv_type, name, request, timeout=10.0):
    client = node.create_client(srv_type, name)
    try:
        assert client.wait_for_service(timeout_sec=timeout), f'no service {name}'
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert future.done(), f'{name} did not answer'
        return future.result()
    finally:
        node.destroy_client(client)


def value_msg(value) -> ParameterValue:
    return rclpy.parameter.Parameter('x', value=value).get_parameter_value()


@pytest.fixture(scope='module')
def param_node(start_node, camvid_model, ros_node):
    proc, probe = start_node('/t_params', {'model': str(camvid_model)},
                             outputs=('labels', 'overlay', 'drivable'))

    def set_param(name, value):
        value = value if isinstance(value, ParameterValue) else value_msg(value)
        req = SetParameters.Request(parameters=[Parameter(name=name, value=value)])
        return call(ros_node, SetParameters, f'{proc.fqn}/set_parameters', req).results[0]

    def get_param(name):
        req = GetParameters.Request(names=[name])
        value = call(ros_node, GetParameters, f'{proc.fqn}/get_parameters', req).values[0]
        return rclpy.parameter.parameter_value_to_python(value)

    return proc, set_param, get_param, probe


@pytest.mark.parametrize('name,value,reason', [
    ('overlay_alpha', 1.5, 'overlay_alpha'),
    ('drivable_bottom_band', 0.0, 'drivable_bottom_band'),
    ('drivable_smoothing_frames', 0, 'drivable_smoothing_frames'),
    ('qos_depth', 0, 'qos_depth'),
    ('backend', 'cuda', 'backend must be one of auto, onnxruntime, openvino, torch'),
    ('input_transport', 'theora', 'input_transport must be one of raw, compressed'),
    ('model', 'other.onnx', 'model is read on configure'),
    ('drivable_classes', ['Lava'], "class 'Lava' is not in class set 'camvid11'"),
    ('drivable_classes', [''], 'at least one class name'),
    ('overlay_alpha', 'half', 'Wrong parameter type'),
])
def test_invalid_values_are_rejected_with_reason_and_nothing_changes(param_node, name, value,
                                                                     reason):
    _, set_param, get_param, _ = param_node
    before = get_param(name)
    result = set_param(name, value)
    assert not result.successful
    assert reason in result.reason
    assert get_param(name) == before


NAN, INF = float('nan'), float('inf')
EMPTY_STRING_ARRAY = ParameterValue(type=ParameterType.PARAMETER_STRING_ARRAY,
                                    string_array_value=[])


# Every class of invalid value, on parameters of each kind. `reason` is a fragment of what
# the parameter service answers.
@pytest.mark.parametrize('name,value,reason', [
    # below / above the descriptor range (float and int)
    ('overlay_alpha', -0.1, 'overlay_alpha'),
    ('diagnostics_period', 0.0, 'diagnostics_period'),
    ('threads', -1, 'threads'),
    ('drivable_close_kernel', 102, 'drivable_close_kernel'),
    ('camera_pitch', 2.0, 'camera_pitch'),
    # not a number, not finite
    ('overlay_alpha', NAN, 'overlay_alpha'),
    ('binary_threshold', NAN, 'binary_threshold'),
    ('binary_threshold', INF, 'binary_threshold'),
    ('grid_resolution', -INF, 'grid_resolution'),
    # wrong type: int for float, float for int, bool / list for string, string for list
    ('overlay_alpha', 1, 'Wrong parameter type'),
    ('qos_depth', 2.0, 'Wrong parameter type'),
    ('backend', True, 'Wrong parameter type'),
    ('grid_frame', ['a', 'b'], 'Wrong parameter type'),
    ('drivable_classes', 'road', 'Wrong parameter type'),
    ('grid_homography', ['1'] * 9, 'Wrong parameter type'),
    ('autostart', 'yes', 'Wrong parameter type'),
    # not one of the choices
    ('precision', 'int4', 'precision must be one of fp32, fp16, int8'),
    ('qos_reliability', 'sometimes', 'qos_reliability must be one of best_effort, reliable'),
    # empty or malformed names
    ('grid_frame', '', 'grid_frame must name a TF frame'),
    ('grid_frame', '/map', 'grid_frame must name a TF frame'),
    ('drivable_classes', EMPTY_STRING_ARRAY, 'at least one class name'),
    ('grid_homography', [1.0] * 8, 'grid_homography must have 9 values'),
    ('grid_homography', [1.0] * 8 + [NAN], 'grid_homography values must be finite'),
    # valid values of parameters read on configure, while configured
    ('backend', 'onnxruntime', 'backend is read on configure'),
    ('precision', 'fp32', 'precision is read on configure'),
    ('threads', 1, 'threads is read on configure'),
    ('intra_op_spinning', True, 'intra_op_spinning is read on configure'),
    ('input_transport', 'compressed', 'input_transport is read on configure'),
    ('qos_reliability', 'reliable', 'qos_reliability is read on configure'),
    ('qos_depth', 5, 'qos_depth is read on configure'),
    ('grid_enabled', True, 'grid_enabled is read on configure'),
])
def test_every_invalid_value_class_is_rejected_with_its_reason(param_node, name, value, reason):
    _, set_param, get_param, _ = param_node
    before = get_param(name)
    result = set_param(name, value)
    assert not result.successful and reason in result.reason, result.reason
    after = get_param(name)
    assert after == before or (after != after and before != before)  # nan == nan here


def test_undeclared_parameters_are_refused(param_node):
    _, set_param, _, _ = param_node
    result = set_param('overlay_alhpa', 0.3)
    # rclpy names none of them ('Invalid access to undeclared parameter(s): []')
    assert not result.successful and 'undeclared parameter' in result.reason


def test_a_rejected_atomic_update_changes_nothing(param_node, ros_node):
    from rcl_interfaces.srv import SetParametersAtomically

    proc, _, get_param, _ = param_node
    before = get_param('overlay_alpha')
    req = SetParametersAtomically.Request(parameters=[
        Parameter(name='overlay_alpha', value=value_msg(before / 2 + 0.1)),
        Parameter(name='precision', value=value_msg('int4'))])
    result = call(ros_node, SetParametersAtomically, f'{proc.fqn}/set_parameters_atomically',
                  req).result
    assert not result.successful and 'precision must be one of' in result.reason
    assert get_param('overlay_alpha') == before


def test_rejected_updates_leave_the_outputs_as_they_were(param_node, val_frames):
    """Not just the stored values: what the node computes follows the old configuration."""
    from test.ros.test_segmenter_node import by_stamp, image_msg

    _, set_param, _, probe = param_node
    rgb = val_frames[2][1]

    def outputs(stamp):
        probe.image_pub.publish(image_msg(rgb, stamp))
        probe.wait_for(lambda p: all(by_stamp(p, o, stamp) for o in
                                     ('labels', 'overlay', 'drivable')), what=f'frame {stamp}')
        return [bytes(by_stamp(probe, o, stamp)[0].data)
                for o in ('labels', 'overlay', 'drivable')]

    before = outputs(6100)
    for name, value in (('overlay_alpha', NAN), ('drivable_classes', ['Road', 'Lava']),
                        ('drivable_bottom_band', 0.0), ('drivable_open_kernel', 500),
                        ('binary_threshold', INF), ('diagnostics_period', 0.0)):
        assert not set_param(name, value).successful, name
    assert outputs(6101) == before


def test_parameters_the_node_does_not_own_are_left_to_rclpy(param_node):
    _, set_param, get_param, _ = param_node
    assert set_param('use_sim_time', False).successful
    assert get_param('use_sim_time') is False


def test_valid_runtime_values_are_accepted(param_node):
    _, set_param, get_param, _ = param_node
    assert set_param('overlay_alpha', 0.3).successful
    assert get_param('overlay_alpha') == pytest.approx(0.3)
    assert set_param('drivable_classes', ['Road', 'Pavement']).successful
    assert get_param('drivable_classes') == ['Road', 'Pavement']
    assert set_param('binary_threshold', 1.25).successful


def test_every_parameter_has_a_descriptor_with_ranges(param_node, ros_node):
    proc, _, _, _ = param_node
    names = list(SegmenterNodeConfig.__dataclass_fields__)
    req = DescribeParameters.Request(names=names)
    descriptors = call(ros_node, DescribeParameters, f'{proc.fqn}/describe_parameters',
                       req).descriptors
    by_name = {d.name: d for d in descriptors}
    assert set(by_name) == set(names)
    assert all(d.description for d in descriptors)
    alpha = by_name['overlay_alpha'].floating_point_range[0]
    assert (alpha.from_value, alpha.to_value) == (0.0, 1.0)
    assert by_name['qos_depth'].integer_range[0].from_value == 1
    assert 'onnxruntime' in by_name['backend'].additional_constraints
    assert by_name['drivable_classes'].type == ParameterType.PARAMETER_STRING_ARRAY


def test_runtime_changes_take_effect_on_the_next_frame(param_node, val_frames):
    import numpy as np

    from seg_perception.core.classes import load_class_set
    from seg_perception.ros.conversions import output_array
    from test.ros.test_segmenter_node import by_stamp, image_msg, labels_of

    _, set_param, _, probe = param_node
    rgb = val_frames[0][1]

    def run(stamp):
        probe.image_pub.publish(image_msg(rgb, stamp))
        probe.wait_for(lambda p: by_stamp(p, 'overlay', stamp) and by_stamp(p, 'drivable', stamp)
                       and by_stamp(p, 'labels', stamp), what=f'frame {stamp}')
        overlay = output_array(by_stamp(probe, 'overlay', stamp)[0])
        return (labels_of(by_stamp(probe, 'labels', stamp)[0]), overlay,
                labels_of(by_stamp(probe, 'drivable', stamp)[0]))

    assert set_param('overlay_alpha', 0.0).successful
    _, overlay, _ = run(6000)
    np.testing.assert_array_equal(overlay, rgb)
    assert set_param('overlay_alpha', 1.0).successful
    assert set_param('drivable_classes', ['Sky', 'Building', 'Road', 'Tree']).successful
    assert set_param('drivable_bottom_band', 1.0).successful
    assert set_param('drivable_close_kernel', 0).successful
    assert set_param('drivable_open_kernel', 0).successful
    labels, overlay, drivable = run(6001)
    np.testing.assert_array_equal(overlay, load_class_set('camvid11').palette[labels])
    np.testing.assert_array_equal(drivable > 0, np.isin(labels, [0, 1, 3, 5]))


def test_diagnostics_period_applies_at_run_time(param_node):
    _, set_param, _, probe = param_node
    assert set_param('diagnostics_period', 0.2).successful
    with probe.lock:
        probe.diagnostics.clear()
    # Five messages within 2 s: at the old 1 s period this would take 5 s.
    probe.wait_for(lambda p: len(p.diagnostics) >= 5, timeout=2.0,
                   what='diagnostics at 5 Hz')
    assert set_param('diagnostics_period', 1.0).successful
