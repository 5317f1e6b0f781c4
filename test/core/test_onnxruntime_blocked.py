"""The blocked-layout rewrite of ORT's optimised graph (`onnxruntime_blocked`): each kind of
op it moves, against ORT's own graph, on real ONNX Runtime sessions; where it must not move
an op; and JetSeg through the backend."""

from __future__ import annotations

import numpy as np
import pytest
import torch

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from seg_perception.core.backends import create_backend  # noqa: E402
from seg_perception.core.backends.onnxruntime_backend import load  # noqa: E402
from seg_perception.core.backends.onnxruntime_blocked import keep_blocked  # noqa: E402
from seg_perception.core.backends.onnxruntime_rewrites import (  # noqa: E402
    inferred_shapes,
    nchwc_block_size,
)
from seg_perception.models import build_model  # noqa: E402
from seg_perception.models.export import export_onnx  # noqa: E402

BLOCK = nchwc_block_size()
pytestmark = pytest.mark.skipif(not BLOCK, reason='ONNX Runtime uses no NCHWc layout on '
                                                  'this CPU (needs x86 with AVX2)')
SHAPE = (1, 2 * BLOCK if BLOCK else 16, 10, 12)


class Net:
    """A hand-built ONNX graph: convs around the ops under test, so that ORT's transformer
    blocks the convs and reorders around the rest."""

    def __init__(self, channels: int = SHAPE[1]):
        self.nodes, self.inits, self.channels = [], [], channels
        self.rng = np.random.default_rng(0)

    def conv(self, x: str, out: str, cout: int | None = None, kernel: int = 3,
             cin: int | None = None) -> str:
        cout = cout or self.channels
        w = self.rng.standard_normal((cout, cin or self.channels, kernel, kernel)) * 0.2
        self.inits.append(numpy_helper.from_array(w.astype(np.float32), f'{out}.w'))
        self.nodes.append(helper.make_node('Conv', [x, f'{out}.w'], [out], name=out,
                                           pads=[kernel // 2] * 4))
        return out

    def const(self, name: str, value) -> str:
        self.inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], out: str, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def model(self, output: str, shape=None) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, 'net', [helper.make_tensor_value_info('x', TensorProto.FLOAT, SHAPE)],
            [helper.make_tensor_value_info(output, TensorProto.FLOAT, shape)], self.inits)
        return helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)],
                                 ir_version=8)


def _options(**kw) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = 1
    for key, value in kw.items():
        setattr(options, key, value)
    return options


def _optimized(model: onnx.ModelProto, tmp_path) -> onnx.ModelProto:
    """ORT's own optimised graph (with the NCHWc transform), as it writes it."""
    path = tmp_path / 'optimized.onnx'
    ort.InferenceSession(model.SerializeToString(), _options(optimized_model_filepath=str(path)),
                         providers=['CPUExecutionProvider'])
    return onnx.load(str(path))


def _run(model: onnx.ModelProto, x: np.ndarray, optimise: bool = True) -> np.ndarray:
    level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimise else \
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(),
                                   _options(graph_optimization_level=level),
                                   providers=['CPUExecutionProvider'])
    return session.run(None, {'x': x})[0]


def _reorders(model: onnx.ModelProto) -> int:
    return sum(n.op_type in ('ReorderInput', 'ReorderOutput') for n in model.graph.node)


def _rewrite(model: onnx.ModelProto, tmp_path):
    """(ORT's output, the rewritten graph's output, ops moved, reorders before, after)."""
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(np.float32) * 3
    optimized = _optimized(model, tmp_path)
    before = _reorders(optimized)
    moved = keep_blocked(optimized, inferred_shapes(model), BLOCK)
    return _run(model, x), _run(optimized, x, optimise=False), moved, before, \
        _reorders(optimized)


def test_elementwise_chain_between_convs_stays_blocked_bit_for_bit(tmp_path):
    """JetSeg's REU, x * exp(min(x, 0)), between two convs: ORT reorders out and back in."""
    net = Net()
    c = net.conv('x', 'c')
    clipped = net.op('Clip', [c, '', net.const('zero', 0.0)], 'clip')
    net.op('Mul', [c, net.op('Exp', [clipped], 'exp')], 'reu')
    model = net.model(net.conv('reu', 'y'))
    expected, got, moved, before, after = _rewrite(model, tmp_path)
    assert moved == 3 and after == before - 2
    assert got.tobytes() == expected.tobytes()


def test_same_shape_operand_from_outside_gets_its_own_reorder(tmp_path):
    """Add(blocked REU-like output, a plain tensor of the same shape): the plain operand is
    reordered in, the Add's output no longer needs reordering back out and in again."""
    net = Net()
    a = net.op('Exp', [net.conv('x', 'a')], 'exp')
    net.op('Add', [a, net.op('Softsign', ['x'], 'plain')], 'sum')  # Softsign: never blocked
    model = net.model(net.conv('sum', 'y'))
    expected, got, moved, before, after = _rewrite(model, tmp_path)
    assert moved == 2 and after == before - 1
    assert got.tobytes() == expected.tobytes()


def test_broadcast_add_stays_plain(tmp_path):
    """x + bias[1, C, 1, 1]: in the blocked buffer the bias would meet the wrong channels,
    and only Mul has a blocked broadcast form (the depthwise conv below)."""
    net = Net()
    c = net.conv('x', 'c')
    bias = net.op('Sigmoid', [net.op('ReduceMax', [c], 'pool', axes=[2, 3])], 'bias')
    net.op('Add', [c, bias], 'shifted')
    model = net.model(net.conv('shifted', 'y'))
    expected, got, moved, before, after = _rewrite(model, tmp_path)
    assert moved == 0 and after == before
    assert got.tobytes() == expected.tobytes()


def test_channel_attention_stays_blocked_pool_and_scale(tmp_path):
    """Squeeze-and-excite: x * sigmoid(conv(mean over H, W)). The mean becomes NCHWc
    GlobalAveragePool feeding the blocked 1 x 1 conv directly; the Mul a depthwise NCHWc conv
    whose filter is the attention. All four reorders around them go."""
    net = Net()
    c = net.conv('x', 'c')
    pooled = net.op('ReduceMean', [c], 'pool', axes=[2, 3], keepdims=1)
    net.op('Sigmoid', [net.conv(pooled, 'a', kernel=1)], 'att')
    net.op('Mul', [c, 'att'], 'scaled')
    model = net.model(net.conv('scaled', 'y'))
    expected, got, moved, before, after = _rewrite(model, tmp_path)
    assert moved == 2 and after == before - 4
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


def test_pool_without_kept_dims_comes_back_to_its_own_shape(tmp_path):
    """ReduceMean(keepdims=0) read by a plain Reshape: the pooled vector is reordered out
    (C numbers) and reshaped to [1, C]; the attention Mul still moves."""
    net = Net()
    c = net.conv('x', 'c')
    flat = net.op('ReduceMean', [c], 'pool', axes=[2, 3], keepdims=0)
    back = net.op('Reshape', [flat, '_shape'], 'back')
    net.inits.append(numpy_helper.from_array(np.array([1, SHAPE[1], 1, 1], np.int64),
                                             '_shape'))
    net.op('Mul', [c, net.op('Sigmoid', [back], 'att')], 'scaled')
    model = net.model(net.conv('scaled', 'y'))
    expected, got, moved, before, after = _rewrite(model, tmp_path)
    assert moved == 2
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6 * np.abs(expected).max())


@pytest.mark.parametrize('channels,moves', [(BLOCK, True), (BLOCK // 2, False)])
def test_concat_moves_only_for_whole_blocks(channels, moves, tmp_path):
    net = Net()
    parts = [net.op('Exp', [net.conv('x', f'c{i}', cout=channels)], f'e{i}') for i in range(2)]
    net.op('Concat', parts, 'cat', axis=1)
    model = net.model(net.conv('cat', 'y', cin=2 * channels))
    expected, got, moved, before, after = _rewrite(model, tmp_path)
    if moves:
        assert moved == 3 and after == before - 3
    else:
        # The Exps alone would only move the ReorderOutputs after them.
        assert moved == 0 and after == before
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize('mode,transform', [('linear', 'half_pixel'),
                                            ('linear', 'asymmetric'),
                                            ('linear', 'align_corners'),
                                            ('nearest', 'asymmetric')])
def test_integer_resize_after_a_moved_op_becomes_the_nchwc_upsample(mode, transform,
                                                                     tmp_path):
    net = Net()
    e = net.op('Exp', [net.conv('x', 'c')], 'exp')
    net.op('Resize', [e, '', net.const('scales', [1, 1, 2, 2])], 'up', mode=mode,
           coordinate_transformation_mode=transform, nearest_mode='floor')
    model = net.model(net.conv('up', 'y'))
    expected, got, moved, before, after = _rewrite(model, tmp_path)
    assert moved == 2 and after == before - 2
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize('scales,transform', [([1, 1, 1.5, 1.5], 'half_pixel'),
                                             ([1, 1, 2, 2], 'pytorch_half_pixel')])
def test_resize_stays_plain_where_the_nchwc_upsample_differs(scales, transform, tmp_path):
    """Non-integer factors, and a transformation mode ORT's NCHWc Upsample refuses."""
    net = Net()
    e = net.op('Exp', [net.conv('x', 'c')], 'exp')
    net.op('Resize', [e, '', net.const('scales', scales)], 'up', mode='linear',
           coordinate_transformation_mode=transform)
    model = net.model(net.conv('up', 'y'))
    optimized = _optimized(model, tmp_path)
    keep_blocked(optimized, inferred_shapes(model), BLOCK)
    assert 'Upsample' not in [n.op_type for n in optimized.graph.node]


def test_nothing_moves_where_no_reordering_is_saved(tmp_path):
    """Conv -> Exp -> Transpose: the Transpose needs the plain layout anyway, so moving the
    Exp would only move the ReorderOutput after it."""
    net = Net()
    net.op('Transpose', [net.op('Exp', [net.conv('x', 'c')], 'exp')], 'y', perm=[0, 1, 3, 2])
    model = net.model('y')
    expected, got, moved, before, after = _rewrite(model, tmp_path)
    assert moved == 0 and after == before
    assert got.tobytes() == expected.tobytes()


def test_jetseg_through_the_backend_matches_the_unrewritten_session(tmp_path):
    torch.manual_seed(0)
    net = build_model('jetseg', num_classes=11).eval()
    artifact = export_onnx(net, tmp_path / 'jetseg.onnx', model_name='jetseg',
                           class_set='camvid11', num_classes=11, input_size=(96, 128))
    blocked = create_backend('onnxruntime', artifact)
    plain = load(artifact, blocked_layout=False)
    assert blocked.rewrites.get('blocked_layout', 0) >= 10
    assert 'blocked_layout' not in plain.rewrites
    assert f"blocked_layout x{blocked.rewrites['blocked_layout']}" in \
        blocked.describe()['rewrites']
    pixels = np.random.default_rng(2).uniform(0, 255, (1, 3, 96, 128)).astype(np.float32)
    expected, got = plain.infer(pixels), blocked.infer(pixels)
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_a_misread_graph_is_caught_by_the_probe_and_ort_graph_kept(tmp_path, caplog):
    """The backend's guard: shapes that lie (taken from a look-alike model whose attention is
    full size, not [1, C, 1, 1]) make the rewrite move a broadcast Mul as if it were
    elementwise; the probe image shows the scores changed, and the backend keeps ORT's own
    session. With the true shapes it moves the Mul in its depthwise-conv form."""
    from types import SimpleNamespace

    from seg_perception.core.backends import onnxruntime_backend

    def build(full_size_attention: bool) -> onnx.ModelProto:
        net = Net()
        c = net.conv('x', 'c')
        if full_size_attention:
            net.op('Exp', [c], 'pool')
        else:
            net.op('ReduceMean', [c], 'pool', axes=[2, 3])
        net.op('Sigmoid', [net.conv('pool', 'a', kernel=1)], 'att')
        net.op('Mul', [c, 'att'], 'scaled')
        return net.model(net.conv('scaled', 'y'))

    real, look_alike = build(False), build(True)
    path = tmp_path / 'optimized.onnx'
    session = ort.InferenceSession(real.SerializeToString(),
                                   _options(optimized_model_filepath=str(path)),
                                   providers=['CPUExecutionProvider'])
    moved_anyway = keep_blocked(onnx.load(str(path)), inferred_shapes(look_alike), BLOCK)
    assert moved_anyway > 0   # the lie does mislead the rewrite
    artifact = SimpleNamespace(path=tmp_path / 'real.onnx', input_size=SHAPE[2:])
    kept, moved = onnxruntime_backend._blocked_session(
        ort, session, path, look_alike, BLOCK, _options(), ['CPUExecutionProvider'], artifact)
    assert kept is session and moved == 0
    assert 'changed the scores' in caplog.text
    honest, moved = onnxruntime_backend._blocked_session(
        ort, session, path, real, BLOCK, _options(), ['CPUExecutionProvider'], artifact)
    assert honest is not session and moved == 2   # the pool and the Mul, as a depthwise conv


def test_model_still_loads_when_ort_cannot_write_its_optimised_graph(tmp_path, monkeypatch,
                                                                       caplog):
    """A scratch directory ORT cannot write to (here: one that does not exist) costs only
    the rewrite: the backend says so and loads the model as ORT optimises it."""
    import contextlib

    from seg_perception.core.backends import onnxruntime_backend

    torch.manual_seed(0)
    artifact = export_onnx(build_model('jetseg', num_classes=11).eval(),
                           tmp_path / 'jetseg.onnx', model_name='jetseg', class_set='camvid11',
                           num_classes=11, input_size=(96, 128))
    missing = tmp_path / 'missing' / 'dir'
    monkeypatch.setattr(onnxruntime_backend.tempfile, 'TemporaryDirectory',
                        lambda **_: contextlib.nullcontext(str(missing)))
    backend = load(artifact)
    assert 'blocked_layout' not in backend.rewrites
    assert 'runs without the blocked-layout rewrite' in caplog.text
    pixels = np.random.default_rng(2).uniform(0, 255, (1, 3, 96, 128)).astype(np.float32)
    assert backend.infer(pixels).shape == (1, 11, 96, 128)
