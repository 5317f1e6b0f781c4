"""BinaryConv2d, the BiDense DAB / CFB blocks and the model-level binarisation helpers."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from seg_perception.models import build_model
from seg_perception.models.binarize import (
    binarize_model,
    binary_layers,
    binary_weight_l1,
    deploy_model,
    set_binary_fraction,
    trained_like_statistics,
)
from seg_perception.models.layers.bidense import (
    ChannelAdaptiveBypass,
    DistributionAdaptiveBinarizer,
    bypass_plan,
)
from seg_perception.models.layers.binary import BinaryConv2d, approx_sign, sign, sign_ste


def test_sign_of_zero_is_plus_one():
    x = torch.tensor([-2.0, -0.0, 0.0, 1e-30, 3.0])
    assert torch.equal(sign(x), torch.tensor([-1.0, 1.0, 1.0, 1.0, 1.0]))
    assert torch.equal(sign_ste(x), sign(x)) and torch.equal(approx_sign(x), sign(x))
    assert sign(x.half()).dtype == torch.float16


def test_forward_hand_computed():
    layer = BinaryConv2d(1, 2, 2)
    with torch.no_grad():
        # sign [[1, -1], [1, -1]], alpha = (0.5 + 0.25 + 0 + 1) / 4 = 0.4375;
        # sign [[-1, 1], [1, 1]], alpha = (0.2 + 0.6 + 0.4 + 0.2) / 4 = 0.35.
        layer.weight.copy_(torch.tensor([[[[0.5, -0.25], [0.0, -1.0]]],
                                         [[[-0.2, 0.6], [0.4, 0.2]]]]))
    # sign(x) = [[1, -1, 1], [1, 1, -1]] (the 0.0 binarises to +1).
    x = torch.tensor([[[[0.3, -0.7, 0.0], [1.2, 2.0, -0.1]]]])
    # Window (0, 0) = [[1, -1], [1, 1]]: ch0 1 + 1 + 1 - 1 = 2, ch1 -1 - 1 + 1 + 1 = 0.
    # Window (0, 1) = [[-1, 1], [1, -1]]: ch0 -1 - 1 + 1 + 1 = 0, ch1 1 + 1 + 1 - 1 = 2.
    expected = torch.tensor([[[[2 * 0.4375, 0.0]], [[0.0, 2 * 0.35]]]])
    torch.testing.assert_close(layer(x), expected, rtol=0, atol=1e-7)
    torch.testing.assert_close(
        layer.binarized_weight()[:, 0],
        torch.tensor([[[0.4375, -0.4375], [0.4375, -0.4375]], [[-0.35, 0.35], [0.35, 0.35]]]))


def test_activation_gradients_match_the_formulas():
    points = [-1.5, -1.0, -0.75, -0.25, 0.0, 0.25, 0.75, 1.0, 1.5]
    x = torch.tensor(points, requires_grad=True)
    sign_ste(x).backward(torch.ones_like(x))
    assert x.grad.tolist() == [float(abs(p) <= 1) for p in points]

    def approx(p: float) -> float:  # ReActNet ApproxSign derivative
        return 2 + 2 * p if -1 <= p < 0 else 2 - 2 * p if 0 <= p < 1 else 0.0

    x.grad = None
    approx_sign(x).backward(torch.ones_like(x))
    assert x.grad.tolist() == [approx(p) for p in points]  # 0, 0, .5, 1.5, 2, 1.5, .5, 0, 0


@pytest.mark.parametrize('weight_scale', ['mean', 'learnable'])
def test_backward_reaches_latent_weights_and_alpha(weight_scale):
    torch.manual_seed(0)
    layer = BinaryConv2d(3, 4, 3, padding=1, weight_scale=weight_scale)
    with torch.no_grad():
        layer.weight[0, 0, 0, 0] = 1.5  # outside the clip: no gradient
    layer.reset_alpha()
    x = torch.randn(2, 3, 5, 5, requires_grad=True)
    upstream = torch.randn(2, 4, 5, 5)
    (layer(x) * upstream).sum().backward()
    # Reference: the same conv on sign(x) with sign(W) * alpha as a leaf.
    wb = layer.binarized_weight().requires_grad_()
    xb = sign(x.detach()).requires_grad_()
    (F.conv2d(xb, wb, padding=1) * upstream).sum().backward()
    torch.testing.assert_close(layer.weight.grad, wb.grad * (layer.weight.abs() <= 1))
    assert layer.weight.grad[0, 0, 0, 0] == 0 and layer.weight.grad.abs().sum() > 0
    torch.testing.assert_close(x.grad, xb.grad * (x.abs() <= 1))
    if weight_scale == 'learnable':
        torch.testing.assert_close(layer.alpha.grad,
                                   (wb.grad * sign(layer.weight)).sum((1, 2, 3), keepdim=True))
        torch.testing.assert_close(layer.alpha.detach(),
                                   layer.weight.detach().abs().mean((1, 2, 3), keepdim=True))


@pytest.mark.parametrize('options', [{}, {'binarizer': 'dab', 'cfb': True}])
def test_float_mode_is_exactly_conv2d(options):
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 6, 3, padding=1, bias=True)
    layer = BinaryConv2d.from_conv(conv, binary=False, **options)
    x = torch.randn(2, 4, 7, 9)
    assert torch.equal(layer(x), conv(x))
    layer.binary = True
    assert not torch.allclose(layer(x), conv(x))


@pytest.mark.parametrize('cin, cout, stride, options', [
    (6, 6, 1, {}),
    (6, 6, 1, {'estimator': 'approx_sign', 'weight_scale': 'learnable'}),
    (6, 6, 1, {'binarizer': 'dab'}),
    (6, 6, 1, {'binarizer': 'dab', 'cfb': True}),
    (6, 10, 2, {'cfb': True}),
    (10, 4, 2, {'binarizer': 'dab', 'cfb': True, 'estimator': 'approx_sign'}),
])
def test_deploy_equals_binary_eval_exactly(cin, cout, stride, options):
    torch.manual_seed(1)
    layer = BinaryConv2d(cin, cout, 3, stride, 1, **options)
    trained_like_statistics(layer)  # DAB thresholds, CFB norm statistics
    layer.eval()
    x = torch.randn(2, cin, 9, 11)  # odd sizes: the stride-2 bypass pools in ceil mode
    expected = layer(x)
    layer.deploy()
    assert layer.deployed and not layer.training
    assert torch.equal(layer.weight_bin, layer.binarized_weight())
    out = layer(x)
    assert out.shape == (2, cout, 5 if stride == 2 else 9, 6 if stride == 2 else 11)
    assert torch.equal(out, expected)
    with torch.no_grad():  # the deploy forward reads the precomputed buffer
        layer.weight.neg_()
    assert torch.equal(layer(x), expected)


def test_dab_threshold_and_scale_hand_values():
    dab = DistributionAdaptiveBinarizer(2)
    with torch.no_grad():
        dab.k.copy_(torch.tensor([0.5, -1.0]).view(1, 2, 1, 1))
        dab.b.copy_(torch.tensor([0.1, 0.2]).view(1, 2, 1, 1))
        dab.a.fill_(0.5)
    x = torch.tensor([[[[1.0, 3.0]], [[-1.0, 2.0]]]])
    # ch0: mean 2, beta = 0.5 * 2 + 0.1 = 1.1, x_s = [-0.1, 1.9], MAD 1.0, alpha = e^0 = 1.
    # ch1: mean 0.5, beta = -0.5 + 0.2 = -0.3, x_s = [-0.7, 2.3], MAD 1.5, alpha = e^0.25.
    torch.testing.assert_close(dab.threshold(x).flatten(), torch.tensor([1.1, -0.3]))
    shifted = x - dab.threshold(x)
    torch.testing.assert_close(dab.scale(shifted).flatten(), torch.tensor([1.0, math.exp(0.25)]))
    torch.testing.assert_close(
        dab(x, sign), torch.tensor([[[[-1.0, 1.0]], [[-math.exp(0.25), math.exp(0.25)]]]]))
    fresh = DistributionAdaptiveBinarizer(2)  # k = b = a = 0: a plain sign at start
    assert torch.equal(fresh(x, sign), sign(x))


def test_cfb_channel_plan_and_values():
    assert bypass_plan(8, 8) == (1, [])
    assert bypass_plan(10, 4) == (0, [(0, 2), (2, 4), (4, 6), (6, 10)])  # K = 10 // 4 = 2
    assert bypass_plan(4, 10) == (2, [(0, 2), (2, 4)])  # N_r = 2, M = 2, K = 2
    assert bypass_plan(16, 6) == (0, [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 16)])
    channels = torch.arange(10.0).view(1, 10, 1, 1).expand(1, 10, 2, 2)
    down = ChannelAdaptiveBypass(10, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1),
                                 dilation=(1, 1))
    assert down.resize(channels)[0, :, 0, 0].tolist() == [0.5, 2.5, 4.5, 7.5]
    up = ChannelAdaptiveBypass(4, 10, kernel_size=(1, 1), stride=(1, 1), padding=(0, 0),
                               dilation=(1, 1))
    assert up.resize(channels[:, :4])[0, :, 0, 0].tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0.5, 2.5]
    # kernel 2 / stride 2 / padding 0 halves with floor: a plain 2x2 average pool.
    pooled = BinaryConv2d(1, 1, 2, 2, cfb=True).cfb.resize(torch.arange(9.0).view(1, 1, 3, 3))
    assert pooled.flatten().tolist() == [2.0]


@pytest.mark.parametrize('kernel, stride, padding', [(3, 1, 0), (3, 2, 0), (5, 2, 1)])
def test_cfb_unbridgeable_geometry_raises(kernel, stride, padding):
    with pytest.raises(ValueError, match='cfb'):
        BinaryConv2d(4, 4, kernel, stride, padding, cfb=True)


def test_unknown_options_raise_naming_the_allowed_ones():
    with pytest.raises(ValueError, match="'ste', 'approx_sign'"):
        BinaryConv2d(2, 2, 3, estimator='tanh')
    with pytest.raises(ValueError, match="'mean', 'learnable'"):
        BinaryConv2d(2, 2, 3, weight_scale='max')
    with pytest.raises(ValueError, match="'sign', 'dab'"):
        BinaryConv2d(2, 2, 3, binarizer='rsign')


class _Net(nn.Module):
    """Registers the head before the stem but runs the stem first."""

    def __init__(self):
        super().__init__()
        self.head = nn.Conv2d(16, 2, 1)
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 16, 1),
                                  nn.Conv2d(16, 16, 3, 2, 1), nn.Conv2d(16, 16, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x)))


def test_binarize_model_keeps_first_and_last_float():
    torch.manual_seed(0)
    net = _Net()
    reference = copy.deepcopy(net).eval()
    x = torch.randn(1, 3, 8, 8)
    names = binarize_model(net, example_input=x)
    assert names == ['body.0', 'body.3', 'body.4', 'body.5', 'body.6']
    assert type(net.stem) is nn.Conv2d and type(net.head) is nn.Conv2d
    assert all(isinstance(net.get_submodule(n), BinaryConv2d) for n in names)
    assert torch.equal(net.body[5].weight, reference.body[5].weight)
    assert net.body[5].stride == (2, 2) and net.body[5].bias is not None
    assert [n for n, _ in binary_layers(net)] == names
    assert set_binary_fraction(net, 0.0) == 0  # all float: the original network exactly
    assert torch.equal(net.eval()(x), reference(x))
    # Registration order (no example input) takes `head` as the first conv instead.
    other = _Net()
    assert binarize_model(other, keep_float=('body.4',)) == [
        'stem', 'body.0', 'body.3', 'body.5']
    with pytest.raises(ValueError, match='not found'):
        binarize_model(_Net(), keep_float=('nope',))
    untouched = _Net()
    untouched.body[0] = nn.Conv2d(8, 8, 3)  # 'valid' 3x3: no pool matches its output size
    with pytest.raises(ValueError, match='body.0'):
        binarize_model(untouched, cfb=True)
    assert not any(isinstance(m, BinaryConv2d) for m in untouched.modules())


class _TwoStemNet(nn.Module):
    """Two parallel stems on the image, a squeeze-excite MLP, a body and a head."""

    def __init__(self):
        super().__init__()
        self.stems = nn.ModuleList([nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(3, 4, 5, padding=2)])
        self.body = nn.Conv2d(8, 8, 3, padding=1)
        self.excite = nn.Sequential(nn.Conv2d(8, 4, 1), nn.ReLU(), nn.Conv2d(4, 8, 1))
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.body(torch.cat([stem(x) for stem in self.stems], 1))
        return self.head(x * torch.sigmoid(self.excite(x.mean((2, 3), keepdim=True))))


def test_binarize_model_trace_keeps_parallel_stems_and_pooled_mlps_float():
    x = torch.randn(1, 3, 8, 8)
    assert binarize_model(_TwoStemNet(), example_input=x) == ['body']
    assert binarize_model(_TwoStemNet()) == ['stems.1', 'body', 'excite.0', 'excite.2']


def test_fcn_tiny_binarize_train_step_and_deploy():
    torch.manual_seed(0)
    model = build_model('fcn_tiny', num_classes=11)
    names = binarize_model(model, estimator='approx_sign', binarizer='dab', cfb=True)
    assert names == ['stage2.0.0', 'stage2.1.0', 'stage3.0.0', 'stage3.1.0', 'stage3.2.0',
                     'skip', 'head.0.0']
    x = torch.randn(2, 3, 24, 32)
    model(x).square().mean().backward()
    for _, layer in binary_layers(model):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
        assert layer.dab.k.grad is not None
    model.eval()
    expected = model(x)
    deploy_model(model)
    assert torch.equal(model(x), expected)


def test_set_binary_fraction_counts():
    net = nn.Sequential(*[nn.Conv2d(4, 4, 3, padding=1) for _ in range(7)])
    assert len(binarize_model(net)) == 5
    layers = [layer for _, layer in binary_layers(net)]
    for fraction, count in [(0.0, 0), (0.5, 3), (0.6, 3), (1.0, 5), (0.1, 1)]:
        assert set_binary_fraction(net, fraction) == count
        assert [layer.binary for layer in layers] == [i < count for i in range(5)]
    with pytest.raises(ValueError):
        set_binary_fraction(net, 1.5)


def test_binary_weight_l1_hand_value():
    first = BinaryConv2d(1, 1, 2)
    second = BinaryConv2d(1, 2, 1)
    idle = BinaryConv2d(1, 1, 1, binary=False)  # float phase: not regularised
    with torch.no_grad():
        first.weight.copy_(torch.tensor([0.5, -0.25, 0.0, -1.5]).view(1, 1, 2, 2))
        second.weight.copy_(torch.tensor([2.0, -0.1]).view(2, 1, 1, 1))
        idle.weight.fill_(5.0)
    model = nn.Sequential(first, nn.Conv2d(2, 2, 1), second, idle)
    # |0.5 - 1| + |-0.25 + 1| + |0 - 1| + |-1.5 + 1| = 2.75;  |2 - 1| + |-0.1 + 1| = 1.9.
    loss = binary_weight_l1(model)
    torch.testing.assert_close(loss, torch.tensor(4.65))
    torch.testing.assert_close(binary_weight_l1(model, reduction='mean'), torch.tensor(4.65 / 6))
    loss.backward()  # d|W - sign W| / dW = sign(W - sign W)
    assert first.weight.grad.flatten().tolist() == [-1.0, 1.0, -1.0, -1.0]
    assert binary_weight_l1(nn.Sequential(nn.Conv2d(1, 1, 1))).item() == 0.0
    with pytest.raises(ValueError, match='sum'):
        binary_weight_l1(model, reduction='max')


def test_onnx_export_of_deployed_net_matches_torch(tmp_path):
    ort = pytest.importorskip('onnxruntime')
    from seg_perception.models.export import export_onnx
    from seg_perception.models.normalized import Normalized

    torch.manual_seed(0)
    middle = BinaryConv2d(8, 12, 3, 2, 1, binarizer='dab', cfb=True, estimator='approx_sign',
                          weight_scale='learnable')
    trained_like_statistics(middle)
    net = deploy_model(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), middle,
                                     nn.Conv2d(12, 2, 1)))
    artifact = export_onnx(net, tmp_path / 'x.onnx', model_name='x', class_set='binary_vehicle',
                           num_classes=2, input_size=(15, 21))
    session = ort.InferenceSession(str(artifact.path), providers=['CPUExecutionProvider'])
    image = torch.rand(1, 3, 15, 21) * 255
    with torch.no_grad():
        expected = Normalized(net, artifact.normalization.mean,
                              artifact.normalization.std).eval()(image).numpy()
    got = session.run(None, {'image': image.numpy()})[0]
    assert got.shape == expected.shape == (1, 2, 8, 11)
    assert np.array_equal(got.argmax(1), expected.argmax(1))
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
