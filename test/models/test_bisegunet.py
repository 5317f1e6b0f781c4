"""BiSegUNet structure, its float twin, and binarising bisenet_lite."""

import copy

import pytest
import torch

from seg_perception.models import build_model
from seg_perception.models.binarize import binarize_model, binary_layers, deploy_model
from seg_perception.models.bisegunet import STAGES, _ch
from seg_perception.models.layers.binary import BinaryConv2d


def test_table1_widths_scale_with_width():
    assert [_ch(c, 1.0) for c in STAGES] == [256, 512, 1024, 2048]
    assert [_ch(c, 0.125) for c in STAGES] == [32, 64, 128, 256]
    net = build_model('bisegunet', num_classes=19)
    assert [stage[0].out_channels for stage in net.encoder] == [32, 64, 128, 256]
    with pytest.raises(ValueError, match='width'):
        build_model('bisegunet', num_classes=19, width=0)


def test_binary_layers_are_the_encoder_and_capacity_binary_branches():
    net = build_model('bisegunet', num_classes=11)
    names = [n for n, _ in binary_layers(net)]
    # 4 encoder stages + 5 Capacity Blocks x 3 binary convs (B1 twice, B2 once).
    assert len(names) == 4 + 5 * 3
    assert all(n.startswith(('encoder.', 'capacity.', 'out_capacity.')) for n in names)
    assert all(m.binary for _, m in binary_layers(net))
    # The float twin: same layers, all in float mode, same parameter count.
    twin = build_model('bisegunet', num_classes=11, binary=False)
    assert not any(m.binary for _, m in binary_layers(twin))
    assert sum(p.numel() for p in twin.parameters()) == sum(p.numel() for p in net.parameters())


def test_bidense_options_reach_every_binary_conv():
    net = build_model('bisegunet', num_classes=2, width=0.0625, binarizer='dab', cfb=True,
                      estimator='approx_sign')
    layers = [m for _, m in binary_layers(net)]
    assert all(m.binarizer == 'dab' and m.estimator == 'approx_sign' for m in layers)
    net.eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert torch.equal(deploy_model(copy.deepcopy(net))(x), net(x))


def test_binarize_bisenet_lite_keeps_first_and_last_float_and_deploys_exactly():
    torch.manual_seed(0)
    net = build_model('bisenet_lite', num_classes=2)
    example = torch.randn(1, 3, 96, 128)
    names = binarize_model(net, example_input=example)
    assert names and 'spatial_path.layers.0.0' not in names and 'head.2' not in names
    assert isinstance(net.get_submodule(names[0]), BinaryConv2d)
    assert not isinstance(net.spatial_path.layers[0][0], BinaryConv2d)
    assert not isinstance(net.head[2], BinaryConv2d)
    net.eval()
    with torch.no_grad():
        assert torch.equal(deploy_model(copy.deepcopy(net))(example), net(example))


def test_binary_networks_see_their_input():
    """Binary layers that read ReLU outputs would binarise them to a constant +1 and make the
    network's output independent of the image; the input BN before the sign prevents it."""
    torch.manual_seed(0)
    lite = build_model('bisenet_lite', num_classes=2)
    binarize_model(lite, example_input=torch.randn(1, 3, 96, 128))
    for net in (build_model('bisegunet', num_classes=11, width=0.0625), lite):
        net.train()
        with torch.no_grad():
            for _ in range(3):  # running statistics for eval mode
                net(torch.randn(2, 3, 64, 96))
            net.eval()
            a, b = net(torch.randn(1, 3, 64, 96)), net(torch.randn(1, 3, 64, 96))
        assert not torch.equal(a, b)
        assert (a.argmax(1) != b.argmax(1)).any()
