"""ONNX Runtime load-time rewrites: each form against the op it replaces, and every zoo model
through the backend against torch."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch
from torch import nn

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from seg_perception.core.artifact import Normalization, load_artifact  # noqa: E402
from seg_perception.core.backends import create_backend  # noqa: E402
from seg_perception.core.backends.onnxruntime_rewrites import (  # noqa: E402
    narrow_conv_to_column_split,
    nchwc_block_size,
    parallel_convs_to_one,
    prelu_to_fast_forms,
    rewrite_for_onnxruntime,
    sign_to_hard_sigmoids,
)
from seg_perception.models import build_model, list_models  # noqa: E402
from seg_perception.models.binarize import (  # noqa: E402
    binary_layers,
    deploy_model,
    trained_like_statistics,
)
from seg_perception.models.export import export_onnx  # noqa: E402
from seg_perception.models.layers.binary import BinaryConv2d  # noqa: E402
from seg_perception.models.normalized import Normalized  # noqa: E402
from test.core.test_segmenter import edit_sidecar  # noqa: E402

NUM_CLASSES = 11
NORM = Normalization()


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=['CPUExecutionProvider'])


def _prelu_model(slope: np.ndarray, shape=(1, 32, 5, 7)) -> onnx.ModelProto:
    """x -> identity 1x1 Conv -> PRelu: the conv keeps x's values and makes the PRelu input a
    conv output, as in the zoo."""
    channels = shape[1]
    eye = np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1)
    nodes = [helper.make_node('Conv', ['x', 'eye'], ['c'], name='conv'),
             helper.make_node('PRelu', ['c', 'slope'], ['y'], name='prelu')]
    graph = helper.make_graph(nodes, 'prelu', [helper.make_tensor_value_info(
        'x', TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            'y', TensorProto.FLOAT, shape)], [numpy_helper.from_array(slope, 'slope'),
                                              numpy_helper.from_array(eye, 'eye')])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)


def _prelu(x: np.ndarray, slope: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x, x * slope)


@pytest.fixture
def x() -> np.ndarray:
    values = np.random.default_rng(0).standard_normal((1, 32, 5, 7)).astype(np.float32) * 10
    values[0, :, 0, 0] = 0.0
    return values


def test_prelu_max_form_is_bit_exact(x):
    slope = np.linspace(-0.5, 1.0, 32, dtype=np.float32).reshape(32, 1, 1)  # 1.0 included
    model = _prelu_model(slope)
    assert prelu_to_fast_forms(model, block=0) == 1
    assert [n.op_type for n in model.graph.node] == ['Conv', 'Mul', 'Max']
    assert np.array_equal(_session(model).run(None, {'x': x})[0], _prelu(x, slope))


def test_prelu_nchwc_form_within_float_rounding_of_x(x):
    slope = np.linspace(-0.5, 1.5, 32, dtype=np.float32).reshape(1, 32, 1, 1)  # any sign, > 1
    model = _prelu_model(slope)
    assert prelu_to_fast_forms(model, block=16) == 1
    assert 'PRelu' not in {n.op_type for n in model.graph.node}
    got, expected = _session(model).run(None, {'x': x})[0], _prelu(x, slope)
    assert np.array_equal(got[x >= 0], x[x >= 0])  # x + (1 - s) * Relu(-x) = x + 0
    # x < 0: x + (1 - s) * -x rounds three times, each within 2^-24 of a value <= 2.5 |x|.
    assert (np.abs(got - expected) <= 2.0 ** -21 * np.abs(x)).all()


def test_prelu_kept_where_no_fast_form_applies(x):
    mixed = np.linspace(-0.5, 1.5, 32, dtype=np.float32).reshape(32, 1, 1)
    assert prelu_to_fast_forms(_prelu_model(mixed), block=0) == 0  # Max needs slopes <= 1
    unaligned = np.full((24, 1, 1), 2.0, np.float32)
    model = _prelu_model(unaligned, shape=(1, 24, 5, 7))
    assert prelu_to_fast_forms(model, block=16) == 0  # 24 channels: not whole NCHWc blocks
    assert [n.op_type for n in model.graph.node] == ['Conv', 'PRelu']


def _sign_model(channels: int = 32, after_conv: bool = False) -> onnx.ModelProto:
    """x -> Where(x >= 0, 1, -1) -> identity 1x1 Conv: the sign as the float deploy export
    writes it (`models.layers.binary.sign`), read by a conv as a binary conv reads it.
    `after_conv`: x goes through an identity 1x1 Conv first, so that ORT fuses the first
    HardSigmoid of the rewrite into a conv, as in the zoo."""
    shape = (1, channels, 8, 8)
    eye = np.eye(channels, dtype=np.float32).reshape(channels, channels, 1, 1)
    first = [helper.make_node('Conv', ['x', 'eye'], ['xc'], name='first')] if after_conv \
        else []
    nodes = [*first,
             helper.make_node('GreaterOrEqual', ['xc' if after_conv else 'x', 'zero'], ['ge'],
                              name='ge'),
             helper.make_node('Where', ['ge', 'plus', 'minus'], ['s'], name='sign'),
             helper.make_node('Conv', ['s', 'eye'], ['y'], name='conv')]
    inits = [numpy_helper.from_array(np.array(v, np.float32), n)
             for n, v in (('zero', 0.0), ('plus', 1.0), ('minus', -1.0))]
    graph = helper.make_graph(nodes, 'sign', [helper.make_tensor_value_info(
        'x', TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            'y', TensorProto.FLOAT, shape)], [*inits, numpy_helper.from_array(eye, 'eye')])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)


@pytest.mark.parametrize('after_conv', [False, True])
def test_sign_hard_sigmoid_form_is_bit_exact_at_the_edges(after_conv):
    """Every float class where a cheaper form could go wrong: +-0, the least denormals, the
    floats next to 0 and 1 / -1, the largest finite values and the infinities; on a graph
    input and on a conv output (where ORT fuses the HardSigmoid into the conv)."""
    tiny = np.float32(2.0 ** -149)
    edges = np.array([0.0, -0.0, tiny, -tiny, 2.0 ** -126, -(2.0 ** -126), 1e-30, -1e-30,
                      np.nextafter(np.float32(1), np.float32(0)), 1.0, -1.0,
                      np.nextafter(np.float32(-1), np.float32(0)), 3.4e38, -3.4e38,
                      np.inf, -np.inf], np.float32)
    if after_conv:  # the conv's zero weights would make 0 * inf = NaN of every inf
        edges = edges[np.isfinite(edges)]
    rng = np.random.default_rng(6)
    x = (rng.standard_normal((1, 32, 8, 8)) * 10).astype(np.float32)
    x.reshape(-1)[:edges.size * 4] = np.tile(edges, 4)
    model = _sign_model(after_conv=after_conv)
    expected = _session(model).run(None, {'x': x})[0]
    np.testing.assert_array_equal(expected, np.where(x >= 0, 1.0, -1.0).astype(np.float32))
    assert sign_to_hard_sigmoids(model, block=16) == 1
    assert [n.op_type for n in model.graph.node][-4:] == [
        'HardSigmoid', 'Conv', 'Clip', 'Conv']
    got = _session(model).run(None, {'x': x})[0]
    assert got.tobytes() == expected.tobytes()  # -0 vs +0 would show here too


def test_sign_kept_where_the_layout_does_not_apply():
    assert sign_to_hard_sigmoids(_sign_model(24), block=16) == 0  # not whole NCHWc blocks
    assert sign_to_hard_sigmoids(_sign_model(32), block=0) == 0  # no NCHWc on this CPU
    model = _sign_model(32)
    model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array(2.0, np.float32),
                                                                'plus'))
    assert sign_to_hard_sigmoids(model, block=16) == 0  # Where(x >= 0, 2, -1): not a sign
    assert [n.op_type for n in model.graph.node] == ['GreaterOrEqual', 'Where', 'Conv']


def _conv_model(cin: int, cout: int, kernel: tuple[int, int], bias: bool = True,
                **attrs) -> onnx.ModelProto:
    rng = np.random.default_rng(4)
    inits = [numpy_helper.from_array(
        rng.standard_normal((cout, cin // attrs.get('group', 1), *kernel)).astype(np.float32),
        'w')]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), 'b'))
    node = helper.make_node('Conv', ['x', 'w', 'b'][:len(inits) + 1], ['y'], name='conv',
                            **attrs)
    graph = helper.make_graph([node], 'conv', [helper.make_tensor_value_info(
        'x', TensorProto.FLOAT, (1, cin, 23, 30))], [helper.make_tensor_value_info(
            'y', TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)


@pytest.mark.parametrize('cin, cout, kernel, bias, attrs', [
    (16, 4, (7, 7), True, {'pads': [6, 6, 6, 6], 'dilations': [2, 2]}),  # bisegunet's
    (32, 3, (5, 7), False, {'pads': [1, 3, 2, 0], 'dilations': [1, 2]}),
])
def test_column_split_computes_the_same_conv(cin, cout, kernel, bias, attrs):
    model = _conv_model(cin, cout, kernel, bias, **attrs)
    image = np.random.default_rng(5).standard_normal((1, cin, 23, 30)).astype(np.float32)
    expected = _session(model).run(None, {'x': image})[0]
    assert narrow_conv_to_column_split(model, block=16) == 1
    assert [n.op_type for n in model.graph.node] == ['Conv'] * 3
    got = _session(model).run(None, {'x': image})[0]
    assert got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize('cout, kernel, attrs', [
    (4, (7, 7), {'strides': [2, 2]}), (4, (7, 7), {'group': 4}), (4, (3, 3), {}),
    (32, (7, 7), {}),  # fills NCHWc blocks already
])
def test_column_split_only_for_narrow_wide_kernel_stride_one_convs(cout, kernel, attrs):
    assert narrow_conv_to_column_split(_conv_model(16, cout, kernel, **attrs), block=16) == 0
    assert narrow_conv_to_column_split(_conv_model(2, 1, (7, 7)), block=16) == 0  # CBAM SAM
    assert narrow_conv_to_column_split(_conv_model(16, 4, (7, 7)), block=0) == 0  # no NCHWc


def _parallel_model(branches, act='Relu', shape=(1, 3, 20, 24)) -> onnx.ModelProto:
    """x -> one Conv per (cout, kernel, pads, strides, dilations) branch, each then `act`
    (None: none) -> Concat on channels."""
    rng = np.random.default_rng(3)
    nodes, inits, outs = [], [], []
    for i, (cout, k, pads, strides, dil) in enumerate(branches):
        w = rng.standard_normal((cout, shape[1], k, k)).astype(np.float32)
        inits += [numpy_helper.from_array(w, f'w{i}'),
                  numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), f'b{i}')]
        nodes.append(helper.make_node('Conv', ['x', f'w{i}', f'b{i}'], [f'c{i}'], pads=pads,
                                      strides=strides, dilations=dil, name=f'conv{i}'))
        if act:
            nodes.append(helper.make_node(act, [f'c{i}'], [f'a{i}'], name=f'act{i}'))
        outs.append(f'a{i}' if act else f'c{i}')
    nodes.append(helper.make_node('Concat', outs, ['y'], axis=1, name='cat'))
    graph = helper.make_graph(nodes, 'parallel', [helper.make_tensor_value_info(
        'x', TensorProto.FLOAT, shape)], [helper.make_tensor_value_info(
            'y', TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)], ir_version=8)


GATEWAY = [(4, 3, [1] * 4, [1, 1], [1, 1]), (4, 5, [2] * 4, [1, 1], [1, 1]),
           (8, 7, [3] * 4, [1, 1], [1, 1])]


@pytest.mark.parametrize('branches,act', [
    (GATEWAY, 'Relu'),                                              # BiSegUNet's gateway
    (GATEWAY, None),
    ([(4, 1, [0] * 4, [2, 2], [6, 6]), (4, 3, [6] * 4, [2, 2], [6, 6])], 'Relu'),  # ASPP-like
    ([(4, 3, [1] * 4, [1, 1], [1, 1]), (4, 3, [2, 2, 0, 0], [1, 1], [1, 1])], None),  # shifted
])
def test_parallel_convs_become_one_conv_with_the_same_outputs(branches, act):
    model = _parallel_model(branches, act)
    x = np.random.default_rng(4).standard_normal((1, 3, 20, 24)).astype(np.float32)
    expected = _session(model).run(None, {'x': x})[0]
    assert parallel_convs_to_one(model) == 1
    assert [n.op_type for n in model.graph.node] == ['Conv'] + ([act] if act else [])
    got = _session(model).run(None, {'x': x})[0]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize('branches', [
    [(4, 3, [1] * 4, [1, 1], [1, 1]), (4, 3, [1] * 4, [2, 2], [1, 1])],   # strides differ
    [(4, 3, [1] * 4, [1, 1], [1, 1]), (4, 3, [2] * 4, [1, 1], [2, 2])],   # dilations differ
    [(4, 3, [2] * 4, [1, 1], [2, 2]), (4, 3, [1, 1, 3, 3], [1, 1], [2, 2])],  # half a tap
])
def test_parallel_convs_kept_where_they_do_not_combine(branches):
    model = _parallel_model(branches)
    before = [n.op_type for n in model.graph.node]
    assert parallel_convs_to_one(model) == 0
    assert [n.op_type for n in model.graph.node] == before


def test_parallel_convs_kept_when_a_branch_is_read_elsewhere_or_acts_differ():
    model = _parallel_model(GATEWAY)
    model.graph.output.append(helper.make_tensor_value_info('c1', TensorProto.FLOAT, None))
    assert parallel_convs_to_one(model) == 0   # c1 is also a graph output
    model = _parallel_model(GATEWAY)
    model.graph.node[1].op_type = 'Sigmoid'    # act0 differs from the others
    assert parallel_convs_to_one(model) == 0


def _randomise(net: nn.Module) -> nn.Module:
    """`trained_like_statistics` plus per-channel PReLU slopes (fresh ones are all 0.25)."""
    trained_like_statistics(net)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.PReLU):
                module.weight.uniform_(-0.2, 0.8)
    return net


def _graph_ops(path) -> list[str]:
    return [n.op_type for n in onnx.load(str(path)).graph.node]


@pytest.mark.parametrize('name', list_models())
def test_backend_matches_torch_for_every_zoo_model(name, tmp_path):
    torch.manual_seed(0)
    net = _randomise(build_model(name, num_classes=NUM_CLASSES)).eval()
    if binary_layers(net):
        deploy_model(net)
    size = (96, 128)
    artifact = export_onnx(net, tmp_path / f'{name}.onnx', model_name=name,
                           class_set='camvid11', num_classes=NUM_CLASSES, input_size=size)
    backend = create_backend('onnxruntime', artifact)
    assert backend.rewrites.get('prelu', 0) == _graph_ops(artifact.path).count('PRelu')
    assert backend.rewrites.get('parallel_convs', 0) == (name == 'bisegunet')  # its gateway
    block = nchwc_block_size()
    if name == 'bisegunet' and block:  # every sign but those on 8 and 4 channels (8: AVX2 only)
        unaligned = 2 if block == 16 else 1
        assert backend.rewrites['sign'] == _graph_ops(artifact.path).count('Where') - unaligned
    pixels = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        expected = Normalized(net, NORM.mean, NORM.std).eval()(pixels).numpy()
    got = backend.infer(pixels.numpy())
    err = np.abs(got - expected).max() / np.abs(expected).max()
    assert err <= 1e-4, f'{name}: relative error {err:.2e}'


@pytest.fixture(scope='module')
def binary_qdq(tmp_path_factory):
    """A deployed bisegunet (BN and PReLU randomised) and its INT8 Q/DQ export at 120 x 160."""
    torch.manual_seed(0)
    net = deploy_model(_randomise(build_model('bisegunet', num_classes=NUM_CLASSES,
                                              width=0.0625)))
    path = tmp_path_factory.mktemp('qdq') / 'bisegunet_qdq.onnx'
    artifact = export_onnx(net, path, model_name='bisegunet', class_set='camvid11',
                           num_classes=NUM_CLASSES, input_size=(120, 160), qdq=True)
    return net, artifact


def test_binary_qdq_convs_become_exact_float_convs(binary_qdq):
    _, artifact = binary_qdq
    model = onnx.load(str(artifact.path))
    binary_convs = sum(n.op_type == 'QuantizeLinear' for n in model.graph.node)
    counts = rewrite_for_onnxruntime(model)
    ops = [n.op_type for n in model.graph.node]
    assert binary_convs > 0 and counts['binary_conv'] == binary_convs
    assert not {'QuantizeLinear', 'DequantizeLinear', 'ConvInteger'} & set(ops)
    loaded = create_backend('onnxruntime', artifact).rewrites
    assert {k: v for k, v in loaded.items() if k != 'blocked_layout'} == counts


def _exact_binary_model(tmp_path, camvid_model, cin=64, classes=11, size=(12, 14)):
    """image -> integer 1x1 conv 3 -> cin (-127.5 bias: exact half-integer sums, never 0) ->
    sign -> Q/DQ(1) -> Conv(DQ(INT8 +-1, alpha), bias) -> classes: the exact Q/DQ export's
    binary conv with a 576-term sum, as a model file the backend loads. Returns (path, the
    pieces to compute the expected output with)."""
    rng = np.random.default_rng(7)
    w1 = rng.integers(-2, 3, (cin, 3, 1, 1)).astype(np.float32)
    w = rng.choice(np.array([-1, 1], np.int8), (classes, cin, 3, 3))
    alpha = rng.uniform(0.01, 0.2, classes).astype(np.float32)
    bias = rng.standard_normal(classes).astype(np.float32)
    consts = {'zero': np.float32(0), 'plus': np.float32(1), 'minus': np.float32(-1),
              'one': np.float32(1), 'zp': np.int8(0), 'w1': w1,
              'b1': np.full(cin, -127.5, np.float32), 'w': w, 'alpha': alpha,
              'wzp': np.zeros(classes, np.int8), 'b': bias}
    nodes = [helper.make_node('Conv', ['image', 'w1', 'b1'], ['x']),
             helper.make_node('GreaterOrEqual', ['x', 'zero'], ['ge']),
             helper.make_node('Where', ['ge', 'plus', 'minus'], ['s']),
             helper.make_node('QuantizeLinear', ['s', 'one', 'zp'], ['q']),
             helper.make_node('DequantizeLinear', ['q', 'one', 'zp'], ['dq']),
             helper.make_node('DequantizeLinear', ['w', 'alpha', 'wzp'], ['wf'], axis=0),
             helper.make_node('Conv', ['dq', 'wf', 'b'], ['scores'], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(nodes, 'exact', [helper.make_tensor_value_info(
        'image', TensorProto.FLOAT, (1, 3, *size))], [helper.make_tensor_value_info(
            'scores', TensorProto.FLOAT, (1, classes, *size))],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()])
    path = tmp_path / 'exact.onnx'
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)],
                                ir_version=8), str(path))
    shutil.copy(camvid_model.with_suffix('.yaml'), path.with_suffix('.yaml'))
    edit_sidecar(path, input_size=list(size), num_classes=classes)
    return path, (w1, w, alpha, bias)


def test_exact_binary_convs_give_the_integer_sums_scaled_once_bit_for_bit(camvid_model,
                                                                        tmp_path):
    """What TensorRT's INT8 kernel computes: the integer sum of +-1 products, times alpha,
    plus bias, each step rounded once in float32. ORT's ConvMulFusion, were it left on, would
    fold alpha back into the weights and round at every addition (1299 of the 1848 outputs
    differ then), so the backend turns it off for these graphs."""
    path, (w1, w, alpha, bias) = _exact_binary_model(tmp_path, camvid_model)
    backend = create_backend('onnxruntime', load_artifact(path))
    assert backend.rewrites['binary_conv'] == 1
    image = np.random.default_rng(8).integers(0, 256, (1, 3, 12, 14)).astype(np.float32)
    x = np.einsum('oc,nchw->nohw', w1[:, :, 0, 0].astype(np.float64), image) - 127.5
    sums = torch.nn.functional.conv2d(torch.from_numpy(np.where(x >= 0, 1.0, -1.0)),
                                      torch.from_numpy(w.astype(np.float64)), padding=1)
    expected = (sums.numpy().astype(np.float32) * alpha.reshape(-1, 1, 1)
                + bias.reshape(-1, 1, 1)).astype(np.float32)
    got = backend.infer(image)
    assert got.tobytes() == expected.tobytes(), f'{int((got != expected).sum())} differ'


def test_exact_binary_convs_give_the_torch_deploy_labels_on_camvid(binary_qdq, camvid_root):
    net, artifact = binary_qdq
    backend = create_backend('onnxruntime', artifact)
    plain = ort.InferenceSession(str(artifact.path), providers=['CPUExecutionProvider'])
    reference = Normalized(net, NORM.mean, NORM.std).eval()
    names = sorted((camvid_root / 'val').glob('*.png'))
    for path in names[:: len(names) // 4][:4]:
        rgb = cv2.resize(cv2.imread(str(path))[:, :, ::-1], (160, 120),
                         interpolation=cv2.INTER_AREA)
        frame = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], np.float32)
        with torch.no_grad():
            expected = reference(torch.from_numpy(frame)).numpy()
        got, unrewritten = backend.infer(frame), plain.run(None, {'image': frame})[0]
        assert np.array_equal(got.argmax(1), expected.argmax(1)), path.name
        # Against the Q/DQ graph it replaces: float rounding only. (Against torch, every ORT
        # form of this net, float export included, differs by 6e-2 at a few pixels of some
        # frames: a sign input within rounding of 0 that torch's float sums put on the other
        # side.)
        err = np.abs(got - unrewritten).max() / np.abs(unrewritten).max()
        assert err <= 1e-5, f'{path.name}: relative error {err:.2e}'


def test_exact_binary_convs_keep_zero_alpha_channels_and_bias(tmp_path):
    torch.manual_seed(0)
    layer = BinaryConv2d(4, 3, 3, padding=1, bias=True)
    with torch.no_grad():
        layer.weight[1] = 0  # alpha = 0: exported as INT8 zeros with scale 1
        layer.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    net = deploy_model(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), layer, nn.Conv2d(3, 2, 1)))
    artifact = export_onnx(net, tmp_path / 'zero.onnx', model_name='x', class_set='camvid11',
                           num_classes=2, input_size=(8, 10), qdq=True)
    backend = create_backend('onnxruntime', artifact)
    assert backend.rewrites == {'binary_conv': 1}
    image = torch.rand(1, 3, 8, 10, generator=torch.Generator().manual_seed(3)) * 255
    with torch.no_grad():
        expected = Normalized(net, NORM.mean, NORM.std).eval()(image).numpy()
    got = backend.infer(image.numpy())
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize('name', ['bisenet_lite', 'fbsnet'])
def test_fp16_weights_halve_the_file_and_load_as_the_float_graph(name, tmp_path):
    """export_onnx(fp16_weights=True): conv weights stored as float16 behind a Cast. The
    backend's in-memory float graph (rewrites on) and ORT's own Cast folding (the file as it
    is) give the same scores; against torch only the one rounding of the weights differs; the
    PRelu rewrite still finds fbsnet's PRelus. Binary networks are refused."""
    from seg_perception.core.onnx_lint import check_onnx

    torch.manual_seed(0)
    net = _randomise(build_model(name, num_classes=NUM_CLASSES)).eval()
    size = (96, 128)
    common = dict(model_name=name, class_set='camvid11', num_classes=NUM_CLASSES,
                  input_size=size)
    full = export_onnx(net, tmp_path / 'full.onnx', **common)
    half = export_onnx(net, tmp_path / 'half.onnx', fp16_weights=True, **common)
    check_onnx(half.path)  # the TensorRT lint (Cast is allowed); raises on an issue
    ratio = half.path.stat().st_size / full.path.stat().st_size
    # fbsnet keeps float32 weights outside convs (PRelu slopes, BN of unfused branches).
    assert 0.45 < ratio < (0.55 if name == 'bisenet_lite' else 0.75), ratio
    graph = onnx.load(str(half.path)).graph
    assert sum(i.data_type == TensorProto.FLOAT16 for i in graph.initializer) > 10
    backend = create_backend('onnxruntime', half)
    assert backend.rewrites['fp16_weights'] > 10
    assert backend.rewrites.get('prelu', 0) == create_backend(
        'onnxruntime', full).rewrites.get('prelu', 0)
    pixels = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(2)) * 255
    got = backend.infer(pixels.numpy())
    plain = _session(onnx.load(str(half.path))).run(None, {'image': pixels.numpy()})[0]
    if set(backend.rewrites) == {'fp16_weights'}:
        np.testing.assert_array_equal(got, plain)
    else:  # the other rewrites reorder sums (an NCHWc Upsample for a Resize): rounding apart
        assert np.abs(got - plain).max() / np.abs(plain).max() <= 1e-5
    with torch.no_grad():
        expected = Normalized(net, NORM.mean, NORM.std).eval()(pixels).numpy()
    err = np.abs(got - expected).max() / np.abs(expected).max()
    assert 1e-6 < err <= 1e-2, f'{name}: relative error {err:.2e}'


def test_fp16_weights_refused_for_binary_networks(tmp_path):
    net = build_model('bisegunet', num_classes=NUM_CLASSES).eval()
    with pytest.raises(ValueError, match='binary layers'):
        export_onnx(net, tmp_path / 'b.onnx', model_name='bisegunet', class_set='camvid11',
                    num_classes=NUM_CLASSES, input_size=(96, 128), fp16_weights=True)
