"""Every registered model: shapes, gradients, eval output, deploy exactness, ONNX parity."""

import copy

import numpy as np
import pytest
import torch

from seg_perception.models import build_model, get_builder, list_models, register_model

PAPER_MODELS = {'bisenet_r18', 'bisenet_lite', 'fbsnet', 'jetseg', 'bisegunet'}
MODELS = list_models()
NUM_CLASSES = 11


def test_registry_lists_every_paper_model_and_rejects_duplicates_and_unknowns():
    assert PAPER_MODELS <= set(MODELS)
    with pytest.raises(ValueError, match='registered twice'):
        register_model(get_builder('fcn_tiny'))
    with pytest.raises(KeyError, match='unknown model'):
        build_model('segformer')


def test_builders_take_keyword_only_options():
    for name in MODELS:
        with pytest.raises(TypeError):
            get_builder(name)(NUM_CLASSES)


@pytest.fixture(scope='module', params=MODELS)
def model(request):
    torch.manual_seed(0)
    return request.param, build_model(request.param, num_classes=NUM_CLASSES)


@pytest.mark.parametrize('size', [(96, 128), (120, 176)])
def test_eval_forward_is_one_tensor_at_input_size(model, size):
    name, net = model
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(1, 3, *size))
    assert isinstance(out, torch.Tensor), name
    assert out.shape == (1, NUM_CLASSES, *size)
    assert torch.isfinite(out).all()


def test_backward_fills_every_parameter_grad(model):
    name, net = model
    net.train()
    outs = net(torch.randn(2, 3, 96, 128))
    outs = outs if isinstance(outs, tuple) else (outs,)
    assert all(o.shape == (2, NUM_CLASSES, 96, 128) for o in outs)
    sum(o.square().mean() for o in outs).backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, f'{name}: no grad for {missing[:5]}'
    assert all(torch.isfinite(p.grad).all() for p in net.parameters())
    net.zero_grad(set_to_none=True)


def test_deploy_mode_equals_binary_forward_exactly(model):
    from seg_perception.models.binarize import binary_layers, deploy_model

    name, net = model
    if not binary_layers(net):
        pytest.skip(f'{name} has no binary layers')
    net.eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected = net(x)
        deployed = deploy_model(copy.deepcopy(net))
        assert torch.equal(deployed(x), expected)


def test_onnx_runtime_matches_torch(model, tmp_path):
    import onnxruntime as ort

    from seg_perception.models.export import export_onnx

    name, net = model
    net.eval()
    size = (96, 128)
    artifact = export_onnx(net, tmp_path / f'{name}.onnx', model_name=name, class_set='camvid11',
                           num_classes=NUM_CLASSES, input_size=size)
    pixels = torch.rand(1, 3, *size) * 255
    with torch.no_grad():
        expected = artifact_forward(net, pixels)
    session = ort.InferenceSession(str(artifact.path), providers=['CPUExecutionProvider'])
    got = session.run(None, {'image': pixels.numpy()})[0]
    err = np.abs(got - expected).max() / np.abs(expected).max()
    assert err <= 1e-4, f'{name}: relative error {err:.2e}'


def artifact_forward(net, pixels):
    from seg_perception.core.artifact import Normalization
    from seg_perception.models.normalized import Normalized

    norm = Normalization()
    return Normalized(net, norm.mean, norm.std).eval()(pixels).numpy()
