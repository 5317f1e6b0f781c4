"""ONNX export checks: the TensorRT lint on every zoo model, and the exact INT8 Q/DQ export of
binary networks (graph form, lint, ONNX Runtime parity on CamVid frames)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

onnx = pytest.importorskip('onnx')
ort = pytest.importorskip('onnxruntime')
from onnx import numpy_helper  # noqa: E402

from seg_perception.core.artifact import Normalization, sidecar_path  # noqa: E402
from seg_perception.core.onnx_lint import OnnxLintError, has_qdq, lint_onnx  # noqa: E402
from seg_perception.models import build_model, list_models  # noqa: E402
from seg_perception.models.binarize import (  # noqa: E402
    binarize_model,
    binary_layers,
    deploy_model,
    trained_like_statistics,
)
from seg_perception.models.export import export_onnx, qdq_export  # noqa: E402
from seg_perception.models.layers.binary import BinaryConv2d  # noqa: E402
from seg_perception.models.normalized import Normalized  # noqa: E402
from seg_perception.tools.export_model import main as export_model  # noqa: E402

NUM_CLASSES = 11
SIZE = (120, 160)  # CamVid 360 x 480 / 3
NORM = Normalization()


def _export(net: nn.Module, path, size=SIZE, **kwargs):
    return export_onnx(net, path, model_name='x', class_set='camvid11', num_classes=NUM_CLASSES,
                       input_size=size, **kwargs)


@pytest.mark.parametrize('name', list_models())
def test_float_export_of_every_zoo_model_passes_the_lint(name, tmp_path):
    torch.manual_seed(0)
    net = build_model(name, num_classes=NUM_CLASSES)
    if binary_layers(net):
        deploy_model(net)  # export_model's float form of a binary model
    artifact = _export(net, tmp_path / f'{name}.onnx', size=(96, 128), lint=False)
    assert lint_onnx(artifact.path) == []
    assert not has_qdq(artifact.path)


def _build(kind: str) -> nn.Module:
    torch.manual_seed(0)
    if kind == 'bisegunet':
        net = build_model('bisegunet', num_classes=NUM_CLASSES, width=0.0625)
    else:
        net = build_model('bisenet_lite', num_classes=NUM_CLASSES)
        options = {'binarizer': 'dab'} if kind == 'bisenet_lite_dab' else {}
        binarize_model(net, example_input=torch.randn(1, 3, 96, 128), **options)
    return deploy_model(trained_like_statistics(net))


@pytest.fixture(scope='module', params=['bisegunet', 'bisenet_lite', 'bisenet_lite_dab'])
def exported(request, tmp_path_factory):
    net = _build(request.param)
    path = tmp_path_factory.mktemp('qdq') / f'{request.param}.onnx'
    artifact = _export(net, path, qdq=True)
    return request.param, net, onnx.load(str(artifact.path)), artifact.path


class _Graph:
    def __init__(self, model):
        self.nodes = list(model.graph.node)
        self.inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.producer = {out: node for node in self.nodes for out in node.output}
        self.consumers = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def op(self, name):
        node = self.producer.get(name)
        return node.op_type if node is not None else None


def _eval_binary_layers(net: nn.Module) -> list[tuple[str, BinaryConv2d]]:
    """The binary layers an eval forward runs (not e.g. BiSeNet's training-only aux heads)."""
    ran = []
    handles = [layer.register_forward_hook(lambda *_, name=name: ran.append(name))
               for name, layer in binary_layers(net)]
    with torch.no_grad():
        net.eval()(torch.zeros(1, 3, 64, 64))
    for handle in handles:
        handle.remove()
    return [(name, layer) for name, layer in binary_layers(net) if name in ran]


def _axis(node) -> int:
    return next((a.i for a in node.attribute if a.name == 'axis'), 1)


def test_weights_are_int8_signs_with_alpha_scales(exported):
    kind, net, model, _ = exported
    graph = _Graph(model)
    weight_dq = [graph.producer[n.input[1]] for n in graph.nodes
                 if n.op_type == 'Conv' and graph.op(n.input[1]) == 'DequantizeLinear']
    # Matched to the layers by their sign patterns (unique for random weights).
    by_signs = {graph.inits[dq.input[0]].tobytes(): dq for dq in weight_dq}
    layers = _eval_binary_layers(net)
    assert len(weight_dq) == len(by_signs) == len(layers), kind
    for name, layer in layers:
        signs = torch.where(layer.weight >= 0, 1, -1).to(torch.int8).numpy()
        dq = by_signs.pop(signs.tobytes(), None)
        assert dq is not None, f'{kind}: no INT8 weights for {name}'
        q, scale, zero = (graph.inits[n] for n in dq.input)  # all initializers
        assert q.dtype == np.int8 and q.shape == signs.shape, name
        assert set(np.unique(q)) == {-1, 1}, name
        alpha = layer.weight.detach().abs().mean((1, 2, 3))  # weight_scale 'mean'
        assert scale.dtype == np.float32 and np.array_equal(scale, alpha.numpy()), name
        assert zero.dtype == np.int8 and zero.shape == scale.shape and not zero.any()
        assert _axis(dq) == 0
        # Dequantised, the weights are the deploy weights bit for bit.
        assert np.array_equal(q * scale[:, None, None, None], layer.weight_bin.numpy())


def test_activations_are_the_pure_sign_through_unit_scale_qdq(exported):
    kind, _, model, _ = exported
    graph = _Graph(model)
    quantizers = [n for n in graph.nodes if n.op_type == 'QuantizeLinear']
    assert quantizers, kind
    for q in quantizers:
        assert graph.op(q.input[0]) == 'Where'  # GreaterOrEqual -> Where: sign(0) = +1
        assert graph.op(graph.producer[q.input[0]].input[0]) == 'GreaterOrEqual'
        scale, zero = graph.inits[q.input[1]], graph.inits[q.input[2]]
        assert scale.dtype == np.float32 and scale.size == 1 and scale.item() == 1.0
        assert zero.dtype == np.int8 and zero.item() == 0
        consumers = graph.consumers[q.output[0]]
        assert [c.op_type for c in consumers] == ['DequantizeLinear'] * len(consumers)
        assert all(list(c.input[1:]) == list(q.input[1:]) for c in consumers)
    # Every binary conv reads a dequantised sign (through the DAB scale Mul with DAB).
    for node in graph.nodes:
        if node.op_type == 'Conv' and graph.op(node.input[1]) == 'DequantizeLinear':
            source = graph.producer[node.input[0]]
            if kind == 'bisenet_lite_dab':
                assert source.op_type == 'Mul'
                assert 'DequantizeLinear' in [graph.op(name) for name in source.input]
            else:
                assert source.op_type == 'DequantizeLinear'


def test_no_straight_through_arithmetic_in_the_graph(exported):
    _, _, model, _ = exported
    graph = _Graph(model)
    ops = {n.op_type for n in graph.nodes}
    assert 'Sign' not in ops
    # The STE x + (sign(x) - x).detach() exports as Sign -> Sub -> Add.
    chains = [(sub.name, add.name) for sub in graph.nodes if sub.op_type == 'Sub'
              and 'Sign' in [graph.op(name) for name in sub.input]
              for add in graph.consumers.get(sub.output[0], []) if add.op_type == 'Add']
    assert chains == []


def test_qdq_export_passes_the_lint(exported):
    _, _, _, path = exported
    assert lint_onnx(path) == []
    assert has_qdq(path) and sidecar_path(path).exists()


def test_torch_qdq_forward_is_bit_identical_to_deploy(exported):
    _, net, _, _ = exported
    x = torch.randn(1, 3, *SIZE)
    with torch.no_grad():
        expected = net(x)
        with qdq_export(net):
            assert all(layer.qdq_params is not None for _, layer in binary_layers(net))
            got = net(x)
    assert torch.equal(got, expected)
    assert all(layer.qdq_params is None for _, layer in binary_layers(net))


@pytest.fixture(scope='module')
def camvid_frames(camvid_root) -> np.ndarray:
    """Two CamVid val frames as the graph takes them: (2, 3, H, W) float32 RGB 0..255."""
    names = sorted((camvid_root / 'val').glob('*.png'))
    frames = []
    for path in (names[0], names[len(names) // 2]):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        assert bgr is not None, path
        rgb = cv2.resize(bgr[:, :, ::-1], SIZE[::-1], interpolation=cv2.INTER_AREA)
        frames.append(rgb.transpose(2, 0, 1))
    return np.stack(frames).astype(np.float32)


def test_onnx_runtime_matches_torch_deploy_on_camvid(exported, camvid_frames):
    kind, net, _, path = exported
    session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
    reference = Normalized(net, NORM.mean, NORM.std).eval()
    labels = []
    for frame in camvid_frames:
        with torch.no_grad():
            expected = reference(torch.from_numpy(frame[None].copy())).numpy()
        got = session.run(None, {'image': frame[None]})[0]
        assert got.shape == expected.shape == (1, NUM_CLASSES, *SIZE)
        assert np.array_equal(got.argmax(1), expected.argmax(1)), kind
        err = np.abs(got - expected).max() / np.abs(expected).max()
        assert err <= 1e-4, f'{kind}: relative error {err:.2e}'
        labels.append(expected.argmax(1))
    if kind == 'bisenet_lite_dab':
        # Plain-sign binary layers after a ReLU see sign(x >= 0) = +1 everywhere, so those
        # two networks give the same labels on every image; DAB's thresholds do not.
        assert (labels[0] != labels[1]).mean() > 0.01


def test_qdq_export_needs_deployed_binary_layers(tmp_path):
    net = build_model('fcn_tiny', num_classes=NUM_CLASSES)
    with pytest.raises(ValueError, match='needs binary layers'):
        _export(net, tmp_path / 'float.onnx', qdq=True)
    binarize_model(net, example_input=torch.randn(1, 3, 64, 96))
    with pytest.raises(ValueError, match='deploy_model first'):
        _export(net, tmp_path / 'training.onnx', qdq=True)
    with pytest.raises(RuntimeError, match='deploy'):
        binary_layers(net)[0][1].set_qdq_export(True)


def test_zero_alpha_channel_exports_int8_zeros_exactly(tmp_path):
    torch.manual_seed(0)
    layer = BinaryConv2d(4, 3, 3, padding=1)
    with torch.no_grad():
        layer.weight[1] = 0  # alpha = 0: weight_bin row 0, no valid scale alpha
    net = deploy_model(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), layer, nn.Conv2d(3, 2, 1)))
    artifact = _export(net, tmp_path / 'zero.onnx', size=(8, 10), qdq=True)
    graph = _Graph(onnx.load(str(artifact.path)))
    (dq,) = [graph.producer[n.input[1]] for n in graph.nodes
             if n.op_type == 'Conv' and graph.op(n.input[1]) == 'DequantizeLinear']
    q, scale = graph.inits[dq.input[0]], graph.inits[dq.input[1]]
    assert not q[1].any() and scale[1] == 1.0 and set(np.unique(q[[0, 2]])) == {-1, 1}
    image = torch.rand(1, 3, 8, 10) * 255
    with torch.no_grad():
        expected = Normalized(net, NORM.mean, NORM.std).eval()(image).numpy()
    session = ort.InferenceSession(str(artifact.path), providers=['CPUExecutionProvider'])
    got = session.run(None, {'image': image.numpy()})[0]
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


class _Bicubic(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode='bicubic', align_corners=False)


def test_lint_failure_raises_and_writes_no_sidecar(tmp_path):
    out = tmp_path / 'cubic.onnx'
    sidecar_path(out).write_text('stale')
    with pytest.raises(OnnxLintError, match='resize-mode'):
        _export(_Bicubic(), out, size=(8, 8))
    assert out.exists() and not sidecar_path(out).exists()
    _export(_Bicubic(), out, size=(8, 8), lint=False)  # debugging escape hatch
    assert sidecar_path(out).exists()


def test_export_model_cli_writes_qdq_for_binary_models(tmp_path, capsys):
    out = tmp_path / 'bisegunet.onnx'
    assert export_model(['--model', 'bisegunet', '--num-classes', '11', '--size', '64x96',
                         '--out', str(out)]) == 0
    assert has_qdq(out) and lint_onnx(out) == [] and sidecar_path(out).exists()
    float_out = tmp_path / 'fcn.onnx'
    assert export_model(['--model', 'fcn_tiny', '--num-classes', '11', '--size', '64x96',
                         '--out', str(float_out)]) == 0
    assert not has_qdq(float_out)
    with pytest.raises(SystemExit):
        export_model(['--model', 'fcn_tiny', '--num-classes', '11', '--size', '64x96',
                      '--binary', '--out', str(tmp_path / 'x.onnx')])
    assert 'no binary layers' in capsys.readouterr().err
