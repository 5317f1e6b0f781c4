"""TensorRT lint of ONNX graphs: each rule on a tiny hand-built graph that breaks it and on one
that passes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip('onnx')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from seg_perception.core.onnx_lint import (  # noqa: E402
    TENSORRT_OPS,
    LintIssue,
    OnnxLintError,
    check_onnx,
    has_qdq,
    lint_onnx,
)

REPO = Path(__file__).resolve().parents[2]
F32, I8 = TensorProto.FLOAT, TensorProto.INT8


def make_model(nodes, *, inputs=None, outputs=None, initializers=(), opset=17, check=True):
    """A model around `nodes`: input 'x' (1, 4, 8, 8) and a float 4-D output 'y' by default."""
    inputs = inputs or [helper.make_tensor_value_info('x', F32, [1, 4, 8, 8])]
    outputs = outputs or [helper.make_tensor_value_info('y', F32, [None] * 4)]
    graph = helper.make_graph(nodes, 'g', inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', opset)])
    if check:
        onnx.checker.check_model(model)
    return model


def const(name, value, dtype=None):
    return numpy_helper.from_array(np.asarray(value, dtype=dtype), name)


def codes(model) -> list[str]:
    return [issue.code for issue in lint_onnx(model)]


def qdq_conv_model(*, weight_axis=0, weight_scales=None, act_zero=0, weight_zero=0,
                   conv='Conv', resize_mode='linear'):
    """x -> Q/DQ (scale 1) -> Conv(DQ(INT8 weights)) -> Resize -> y: the form the Q/DQ
    export writes; the keywords break one thing at a time."""
    cout = 6
    shape = (cout, 4, 3, 3) if conv == 'Conv' else (4, cout, 3, 3)
    weights = np.where(np.random.default_rng(0).random(shape) > 0.5, 1, -1).astype(np.int8)
    scales = np.linspace(0.1, 0.6, shape[weight_axis] if weight_scales is None
                         else weight_scales).astype(np.float32)
    inits = [const('one', 1.0, np.float32), const('act_zp', act_zero, np.int8),
             const('w_q', weights), const('w_scale', scales),
             const('w_zp', np.full(scales.shape, weight_zero, np.int8)),
             const('roi', [], np.float32), const('scales', [1, 1, 2, 2], np.float32)]
    nodes = [
        helper.make_node('QuantizeLinear', ['x', 'one', 'act_zp'], ['xq'], name='q'),
        helper.make_node('DequantizeLinear', ['xq', 'one', 'act_zp'], ['xd'], name='dq'),
        helper.make_node('DequantizeLinear', ['w_q', 'w_scale', 'w_zp'], ['w'], name='w_dq',
                         axis=weight_axis),
        helper.make_node(conv, ['xd', 'w'], ['c'], name='conv', pads=[1, 1, 1, 1]),
        helper.make_node('Resize', ['c', 'roi', 'scales'], ['y'], name='up', mode=resize_mode),
    ]
    return make_model(nodes, initializers=inits)


def test_a_tensorrt_style_qdq_graph_passes():
    model = qdq_conv_model()
    assert lint_onnx(model) == []
    check_onnx(model)  # no raise
    assert has_qdq(model)
    assert {'Conv', 'QuantizeLinear', 'DequantizeLinear', 'Resize'} <= TENSORRT_OPS


def test_opset_above_17_is_flagged():
    relu = [helper.make_node('Relu', ['x'], ['y'])]
    assert codes(make_model(relu, opset=18)) == ['opset']
    assert codes(make_model(relu, opset=17)) == []


def test_ops_outside_the_allow_list_and_custom_domains_are_flagged():
    unique = make_model([helper.make_node('Unique', ['x'], ['y'], name='u')], check=False)
    assert lint_onnx(unique) == [
        LintIssue('unsupported-op', 'u', 'Unique is not in the TensorRT op list')]
    custom = make_model([helper.make_node('Swish', ['x'], ['y'], domain='my.ops')], check=False)
    assert codes(custom) == ['unsupported-op']
    assert 'my.ops::Swish' in str(lint_onnx(custom)[0])
    assert codes(make_model([helper.make_node('Relu', ['x'], ['y'])])) == []


@pytest.mark.parametrize('mode, expected', [('cubic', ['resize-mode']), ('linear', []),
                                            ('nearest', [])])
def test_resize_mode_nearest_or_linear_only(mode, expected):
    assert codes(qdq_conv_model(resize_mode=mode)) == expected


def test_resize_default_mode_is_nearest_and_crop_and_resize_is_flagged():
    inits = [const('roi', [], np.float32), const('scales', [1, 1, 2, 2], np.float32)]
    default = helper.make_node('Resize', ['x', 'roi', 'scales'], ['y'])
    assert codes(make_model([default], initializers=inits)) == []
    crop = helper.make_node('Resize', ['x', 'roi', 'scales'], ['y'], mode='linear',
                            coordinate_transformation_mode='tf_crop_and_resize')
    assert codes(make_model([crop], initializers=inits)) == ['resize-coordinates']


def test_nonzero_zero_points_are_flagged():
    assert codes(qdq_conv_model(act_zero=3)) == ['qdq-zero-point', 'qdq-zero-point']
    assert codes(qdq_conv_model(weight_zero=1)) == ['qdq-zero-point']


def test_quantize_without_zero_point_would_be_uint8():
    nodes = [helper.make_node('QuantizeLinear', ['x', 'one'], ['q']),
             helper.make_node('DequantizeLinear', ['q', 'one'], ['y'])]
    issues = lint_onnx(make_model(nodes, initializers=[const('one', 1.0, np.float32)]))
    # The QuantizeLinear lacks the zero point; the DequantizeLinear reads its UINT8 output.
    assert [i.code for i in issues] == ['qdq-zero-point', 'qdq-type']
    assert 'UINT8' in issues[0].message and 'UINT8' in issues[1].message


def test_int32_dequantize_is_flagged():
    # ONNX Runtime's quantize_static writes biases as INT32 -> DequantizeLinear.
    inits = [const('b_q', [1, 2, 3, 4], np.int32), const('b_s', 0.5, np.float32),
             const('b_zp', 0, np.int32)]
    nodes = [helper.make_node('DequantizeLinear', ['b_q', 'b_s', 'b_zp'], ['b'], name='bias'),
             helper.make_node('Add', ['x', 'b'], ['y'])]
    bias_model = make_model(nodes, inputs=[helper.make_tensor_value_info('x', F32, [1, 4])],
                            outputs=[helper.make_tensor_value_info('y', F32, [1, 4])],
                            initializers=inits)
    assert lint_onnx(bias_model) == [LintIssue(
        'dq-int32', 'bias', 'DequantizeLinear of INT32 (a quantised bias?): TensorRT keeps '
        'biases float, export them float')]


def test_uint8_quantisation_is_flagged():
    inits = [const('one', 1.0, np.float32), const('zp', 0, np.uint8)]
    nodes = [helper.make_node('QuantizeLinear', ['x', 'one', 'zp'], ['q']),
             helper.make_node('DequantizeLinear', ['q', 'one', 'zp'], ['y'])]
    assert codes(make_model(nodes, initializers=inits)) == ['qdq-type', 'qdq-type']


def test_activation_quantize_must_be_followed_by_dequantize():
    inits = [const('one', 1.0, np.float32), const('zp', 0, np.int8)]
    to_relu = [helper.make_node('QuantizeLinear', ['x', 'one', 'zp'], ['q'], name='q'),
               helper.make_node('Cast', ['q'], ['y'], to=F32)]
    issues = lint_onnx(make_model(to_relu, initializers=inits))
    assert [i.code for i in issues] == ['qdq-placement'] and issues[0].node == 'q'
    as_output = [helper.make_node('QuantizeLinear', ['x', 'one', 'zp'], ['y'], name='q')]
    out = [helper.make_tensor_value_info('y', I8, [1, 4, 8, 8])]
    assert codes(make_model(as_output, outputs=out, initializers=inits)) == ['qdq-placement']


def test_dequantize_must_read_a_quantize_or_a_constant():
    inits = [const('one', 1.0, np.float32), const('zp', 0, np.int8)]
    nodes = [helper.make_node('DequantizeLinear', ['x', 'one', 'zp'], ['y'])]
    int8_input = [helper.make_tensor_value_info('x', I8, [1, 4, 8, 8])]
    assert codes(make_model(nodes, inputs=int8_input, initializers=inits)) == ['qdq-placement']


def test_weight_dequantize_needs_an_int8_initializer():
    model = qdq_conv_model()
    # Replace the INT8 weights by float weights -> QuantizeLinear (fake-quantised weights).
    graph = model.graph
    w_q = next(i for i in graph.initializer if i.name == 'w_q')
    graph.initializer.remove(w_q)
    graph.initializer.extend([const('w_f', numpy_helper.to_array(w_q).astype(np.float32)),
                              const('w_scale_q', 1.0, np.float32), const('w_zp_q', 0, np.int8)])
    graph.node.insert(0, helper.make_node('QuantizeLinear', ['w_f', 'w_scale_q', 'w_zp_q'],
                                          ['w_q'], name='w_quant'))
    issues = lint_onnx(model)
    assert [(i.code, i.node) for i in issues] == [('qdq-weight', 'w_dq')]


def test_weight_scales_per_tensor_or_per_channel_on_axis_0():
    assert codes(qdq_conv_model(weight_scales=1)) == []  # per tensor
    assert codes(qdq_conv_model(weight_axis=1)) == ['qdq-weight']  # 4 scales on axis 1
    assert codes(qdq_conv_model(weight_scales=3)) == ['qdq-weight']  # wrong count
    # ConvTranspose kernels are (C_in, C_out, kh, kw); TensorRT quantises them on axis 0 too.
    assert codes(qdq_conv_model(conv='ConvTranspose')) == []
    assert codes(qdq_conv_model(conv='ConvTranspose', weight_axis=1)) == ['qdq-weight']


def test_scales_must_be_positive_constants_and_per_tensor_for_activations():
    nodes = [helper.make_node('QuantizeLinear', ['x', 's', 'zp'], ['q']),
             helper.make_node('DequantizeLinear', ['q', 's', 'zp'], ['y'])]
    for scale, expected in [([0.5, 0.5, 0.5, 0.5], ['qdq-scale']), (-1.0, ['qdq-scale'] * 2),
                            (0.5, [])]:
        zp = np.zeros(np.shape(scale), np.int8)
        inits = [const('s', scale, np.float32), const('zp', zp)]
        kwargs = {'axis': 1} if np.ndim(scale) else {}
        for node in nodes:
            node.attribute.extend([helper.make_attribute(k, v) for k, v in kwargs.items()])
        assert codes(make_model(nodes, initializers=inits)) == expected, scale
        for node in nodes:
            del node.attribute[:]
    scale_input = [helper.make_tensor_value_info('x', F32, [1, 4, 8, 8]),
                   helper.make_tensor_value_info('s', F32, [])]
    dynamic = make_model(nodes, inputs=scale_input, initializers=[const('zp', 0, np.int8)])
    assert codes(dynamic) == ['qdq-scale', 'qdq-scale']


def test_adaptive_pooling_left_in_the_graph_is_flagged():
    out = [helper.make_tensor_value_info('y', F32, [1, 4, 3, 3])]
    aten = helper.make_node('ATen', ['x'], ['y'], name='pool', domain='org.pytorch.aten',
                            operator='adaptive_avg_pool2d')
    issues = lint_onnx(make_model([aten], outputs=out, check=False))
    assert [(i.code, i.node) for i in issues] == [('adaptive-pool', 'pool')]
    assert 'non-global output 3x3' in issues[0].message
    glob = [helper.make_tensor_value_info('y', F32, [1, 4, 1, 1])]
    custom = helper.make_node('AdaptiveAvgPool2d', ['x'], ['y'], domain='custom')
    issues = lint_onnx(make_model([custom], outputs=glob, check=False))
    assert [i.code for i in issues] == ['adaptive-pool'] and 'GlobalAveragePool' in str(issues[0])
    assert codes(make_model([helper.make_node('GlobalAveragePool', ['x'], ['y'])])) == []


def test_input_shape_must_be_static():
    relu = [helper.make_node('Relu', ['x'], ['y'])]
    for dims in (['N', 4, 8, 8], [1, 4, None, 8]):
        dynamic = [helper.make_tensor_value_info('x', F32, dims)]
        assert lint_onnx(make_model(relu, inputs=dynamic))[0].code == 'dynamic-input', dims
    unknown = [helper.make_tensor_value_info('x', F32, None)]
    assert codes(make_model(relu, inputs=unknown, check=False)) == ['dynamic-input']
    assert codes(make_model(relu)) == []


def test_check_onnx_lists_every_issue_and_reads_files(tmp_path):
    bad = qdq_conv_model(resize_mode='cubic', act_zero=2)
    path = tmp_path / 'bad.onnx'
    onnx.save(make_model(list(bad.graph.node), initializers=list(bad.graph.initializer),
                         opset=18, check=False), path)
    with pytest.raises(OnnxLintError) as info:
        check_onnx(path)
    assert [i.code for i in info.value.issues] == [
        'opset', 'qdq-zero-point', 'qdq-zero-point', 'resize-mode']
    message = str(info.value)
    assert str(path) in message and '4 TensorRT lint issue(s)' in message
    assert '[resize-mode] up:' in message and '[opset] <graph>:' in message
    good = tmp_path / 'good.onnx'
    onnx.save(qdq_conv_model(), good)
    check_onnx(good)
    assert lint_onnx(str(good)) == [] and has_qdq(good)
    assert not has_qdq(make_model([helper.make_node('Relu', ['x'], ['y'])]))


def test_shipped_model_passes():
    shipped = REPO / 'models' / 'fcn_tiny_camvid.onnx'
    if not shipped.exists():
        pytest.skip(f'{shipped} not found')
    assert lint_onnx(shipped) == []
