"""FBSNet: size against the paper, output shapes, gradients, ONNX Runtime parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seg_perception.models import build_model
from seg_perception.models.export import export_onnx

# Importing the module registers 'fbsnet' (it is not in the registry's own module list).
from seg_perception.models.fbsnet import fbsnet
from seg_perception.models.normalized import Normalized

PAPER_PARAMS = 620_000  # Table III, Cityscapes (19 classes)
# Exact counts of this implementation, pinned so an accidental change to the architecture
# shows up here and not only as a drift inside the 5 % band.
EXPECTED_PARAMS = {19: 600_471, 11: 599_951}


def _num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _randomise_bn(model: torch.nn.Module) -> None:
    """Random BN statistics, so eval outputs vary over the image (fresh BN is the identity)."""
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)


@pytest.fixture(scope='module')
def models() -> dict[int, torch.nn.Module]:
    torch.manual_seed(0)
    built = {n: build_model('fbsnet', num_classes=n) for n in (11, 19)}
    for model in built.values():
        _randomise_bn(model)
        model.eval()
    return built


@pytest.mark.parametrize('num_classes', [19, 11])
def test_parameter_count_matches_paper(models, num_classes):
    params = _num_params(models[num_classes])
    print(f'fbsnet params at {num_classes} classes: {params}')
    assert params == EXPECTED_PARAMS[num_classes]
    assert abs(params - PAPER_PARAMS) / PAPER_PARAMS < 0.05
    # 19 - 11 = 8 output channels of the 2x2 transposed-conv projection from 16 channels.
    assert EXPECTED_PARAMS[19] - EXPECTED_PARAMS[11] == 8 * (16 * 2 * 2 + 1)


@pytest.mark.parametrize('num_classes', [11, 19])
@pytest.mark.parametrize('size', [(360, 480), (512, 1024)])
def test_eval_output_shape_and_finite(models, num_classes, size):
    with torch.no_grad():
        out = models[num_classes](torch.randn(1, 3, *size))
    assert isinstance(out, torch.Tensor)
    assert out.shape == (1, num_classes, *size)
    assert torch.isfinite(out).all()
    assert out.std() > 0


def test_sizes_not_divisible_by_8():
    """Odd intermediate sizes: stride-2 stages round up; the output is cropped back."""
    model = fbsnet(num_classes=11).eval()
    with torch.no_grad():
        for size in [(100, 50), (61, 77)]:
            assert model(torch.zeros(2, 3, *size)).shape == (2, 11, *size)


def test_backward_fills_every_grad():
    torch.manual_seed(0)
    model = fbsnet(num_classes=19).train()
    out = model(torch.randn(2, 3, 64, 96))
    assert out.shape == (2, 19, 64, 96)
    target = torch.randint(0, 19, (2, 64, 96))
    torch.nn.functional.cross_entropy(out, target).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing
    for name, param in model.named_parameters():
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_onnx_export_matches_torch(models, tmp_path):
    ort = pytest.importorskip('onnxruntime')
    model = models[11]
    size = (360, 480)  # 45 x 60 at 1/8: exercises an odd size in the decoder
    artifact = export_onnx(model, tmp_path / 'fbsnet.onnx', model_name='fbsnet',
                           class_set='camvid11', num_classes=11, input_size=size)
    assert artifact.path.is_file()
    image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1)) * 255
    wrapped = Normalized(model, artifact.normalization.mean, artifact.normalization.std).eval()
    with torch.no_grad():
        expected = wrapped(image).numpy()
    session = ort.InferenceSession(str(artifact.path), providers=['CPUExecutionProvider'])
    (got,) = session.run(None, {'image': image.numpy()})
    assert got.shape == (1, 11, *size)
    rel_err = np.abs(got - expected).max() / np.abs(expected).max()
    assert rel_err < 1e-4
