"""bisenet_lite's width multiplier: the paper network at 1.0, a quarter of it at 0.5."""

import pytest
import torch

from seg_perception.models import build_model


def _params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_width_scales_every_layer_and_keeps_the_layout():
    full = build_model('bisenet_lite', num_classes=2)
    half = build_model('bisenet_lite', num_classes=2, width=0.5)
    assert _params(full) == 2_905_966  # the paper's network, unchanged by the option
    assert _params(half) == 730_990
    assert list(full.state_dict()) == list(half.state_dict())  # same modules, fewer channels
    half.eval()
    with torch.no_grad():
        assert half(torch.rand(1, 3, 64, 96)).shape == (1, 2, 64, 96)


def test_bad_width_is_refused():
    with pytest.raises(ValueError, match='width'):
        build_model('bisenet_lite', num_classes=2, width=0)
