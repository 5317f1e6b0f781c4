"""JetSeg: parameter budget, activations, attention layers, shapes, gradients, ONNX parity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from seg_perception.core.artifact import Normalization
from seg_perception.models import build_model
from seg_perception.models.export import export_onnx
import seg_perception.models.jetseg  # noqa: F401  (registers 'jetseg')
from seg_perception.models.jetseg import JetBlock, mean_divisor_groups
from seg_perception.models.layers.activations import REU, TanhExp
from seg_perception.models.layers.cbam import CBAM, SpatialAttention
from seg_perception.models.layers.eca import ECA, eca_kernel_size
from seg_perception.models.normalized import Normalized

# Nano mode, as built today; the official code measures ~32 K (32 classes) for its variant.
NANO_PARAMS_19 = 33_070
CLASSIFIER_PARAMS_PER_CLASS = 64 + 1  # 1x1 conv from 64 channels, with bias


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomize_bn(model: nn.Module) -> None:
    """Random BN statistics, so eval outputs vary (fresh BN is the identity)."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)


def test_parameter_count_nano():
    params_19 = _params(build_model('jetseg', num_classes=19))
    params_11 = _params(build_model('jetseg', num_classes=11))
    assert params_19 == NANO_PARAMS_19
    assert 10_000 <= params_19 < 100_000
    assert 30_000 <= params_19 < 36_000  # paper: 0.00003 G parameters
    assert params_19 - params_11 == 8 * CLASSIFIER_PARAMS_PER_CLASS


def test_larger_modes_and_activation_option():
    agx = build_model('jetseg', num_classes=19, mode='agx')
    assert 300_000 < _params(agx) < 400_000
    model = build_model('jetseg', num_classes=11, activation='tanhexp').eval()
    assert any(isinstance(m, TanhExp) for m in model.modules())
    assert not any(isinstance(m, REU) for m in model.modules())
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 96)).shape == (1, 11, 64, 96)
    with pytest.raises(ValueError):
        build_model('jetseg', num_classes=19, mode='tiny')


def test_group_estimate():
    # Common divisor nearest the divisors' mean.
    assert [mean_divisor_groups(*c) for c in [(3, 8), (8, 16), (16, 16), (48, 48), (64, 64),
                                              (64, 48)]] == [1, 4, 8, 12, 16, 8]
    block = JetBlock(16, 32, 32, stride=2, dilation=2, attention='sam', act_layer=REU,
                     residual=False)
    assert block.expand[0].groups == 8 and block.project.groups == 8
    assert block(torch.rand(2, 16, 9, 12)).shape == (2, 32, 5, 6)


def test_reu_values_and_gradient():
    x = torch.tensor([-2.0, -1.0, 0.0, 0.5, 3.0, 100.0], requires_grad=True)
    y = REU()(x)
    expected = [-2 * math.exp(-2), -math.exp(-1), 0.0, 0.5, 3.0, 100.0]
    assert torch.allclose(y, torch.tensor(expected), atol=1e-6)
    assert y[0].item() == pytest.approx(-0.2706706, abs=1e-6)
    y.sum().backward()
    # d/dx = exp(x) * (x + 1) for x < 0, 1 for x > 0.
    grad = [-math.exp(-2), 0.0, 1.0, 1.0, 1.0, 1.0]
    assert torch.allclose(x.grad, torch.tensor(grad), atol=1e-6)


def test_tanhexp_values_and_gradient():
    x = torch.tensor([-3.0, -1.0, 0.0, 1.0, 200.0], requires_grad=True)
    y = TanhExp()(x)
    expected = [-3 * math.tanh(math.exp(-3)), -math.tanh(math.exp(-1)), 0.0,
                math.tanh(math.e), 200.0]
    assert torch.allclose(y, torch.tensor(expected), atol=1e-6)
    assert y[3].item() == pytest.approx(0.9913289, abs=1e-6)  # tanh(e)
    assert y[1].item() == pytest.approx(-0.3521355, abs=1e-6)  # -tanh(1/e)
    y.sum().backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad[2].item() == pytest.approx(math.tanh(1.0), abs=1e-6)  # tanh(e^0) + 0
    assert x.grad[4].item() == pytest.approx(1.0)


def test_cbam_and_sam_shapes_and_gating():
    x = torch.rand(2, 16, 9, 11)
    cbam = CBAM(16)
    assert cbam.channel.mlp[0].out_channels == 2  # reduction 8
    out = cbam(x)
    assert out.shape == x.shape
    # Sigmoid gates on a positive input: 0 < out < x.
    assert (out > 0).all() and (out < x).all()
    sam = SpatialAttention(7)
    nn.init.zeros_(sam.conv.weight)
    assert torch.allclose(sam(x), 0.5 * x)  # zero conv -> sigmoid(0) everywhere


@pytest.mark.parametrize(('channels', 'kernel'), [(16, 3), (48, 3), (64, 3), (128, 5),
                                                  (512, 5), (2048, 7)])
def test_eca_adaptive_kernel(channels, kernel):
    assert eca_kernel_size(channels) == kernel
    eca = ECA(channels)
    assert eca.conv.kernel_size == (kernel,)
    assert eca(torch.rand(2, channels, 5, 7)).shape == (2, channels, 5, 7)


def test_eca_convolves_across_channels():
    eca = ECA(8)
    with torch.no_grad():
        eca.conv.weight.copy_(torch.tensor([[[1.0, 0.0, 0.0]]]))  # gate_c = sigmoid(mean_{c-1})
    means = torch.arange(8, dtype=torch.float32) / 4
    x = means.view(1, 8, 1, 1).expand(1, 8, 3, 4).clone()
    gate = torch.sigmoid(torch.cat([torch.zeros(1), means[:-1]]))  # zero padding at c = 0
    assert torch.allclose(eca(x), x * gate.view(1, 8, 1, 1), atol=1e-6)


@pytest.mark.parametrize('size', [(360, 480), (512, 1024)])
@pytest.mark.parametrize('num_classes', [11, 19])
def test_eval_output_shape(size, num_classes):
    torch.manual_seed(0)
    model = build_model('jetseg', num_classes=num_classes)
    _randomize_bn(model)
    model.eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, num_classes, *size)
    assert torch.isfinite(out).all()
    assert out.std() > 0


def test_backward_fills_every_grad():
    torch.manual_seed(0)
    model = build_model('jetseg', num_classes=11).train()
    x = torch.randn(2, 3, 64, 96)
    target = torch.randint(0, 11, (2, 64, 96))
    loss = nn.functional.cross_entropy(model(x), target)
    loss.backward()
    assert torch.isfinite(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_onnx_matches_torch(tmp_path):
    ort = pytest.importorskip('onnxruntime')
    torch.manual_seed(0)
    model = build_model('jetseg', num_classes=19)
    _randomize_bn(model)
    model.eval()
    size = (360, 480)
    artifact = export_onnx(model, tmp_path / 'jetseg.onnx', model_name='jetseg',
                           class_set='cityscapes19', num_classes=19, input_size=size)
    image = np.random.default_rng(0).uniform(0, 255, (1, 3, *size)).astype(np.float32)
    session = ort.InferenceSession(str(artifact.path), providers=['CPUExecutionProvider'])
    (onnx_out,) = session.run(None, {'image': image})
    norm = Normalization()
    with torch.no_grad():
        torch_out = Normalized(model, norm.mean, norm.std).eval()(torch.from_numpy(image))
    torch_out = torch_out.numpy()
    assert onnx_out.shape == (1, 19, *size)
    rel = np.abs(onnx_out - torch_out).max() / np.abs(torch_out).max()
    assert rel < 1e-4
