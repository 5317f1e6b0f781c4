"""Complexity counts against hand-computed values, and the `complexity` command."""

import json

import pytest
from torch import nn

from seg_perception.models.complexity import count
from seg_perception.models.layers.binary import BinaryConv2d
from seg_perception.tools.complexity import main


class Tiny(nn.Module):
    def __init__(self, binary: bool):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)                      # float
        self.body = BinaryConv2d(8, 8, 3, 2, 1, binary=binary)          # binary when asked
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = self.grouped(self.body(self.stem(x)))
        return self.fc(x.mean((2, 3)))


def test_hand_computed_macs_params_and_bnn_cost():
    c = count(Tiny(binary=True), (10, 12), name='tiny', num_classes=5)
    stem = 10 * 12 * 8 * 3 * 9          # out pixels x cout x cin x k^2
    body = 5 * 6 * 8 * 8 * 9            # stride 2
    grouped = 5 * 6 * 8 * 2 * 9         # cin per group = 2
    fc = 8 * 5
    assert c.macs == stem + body + grouped + fc
    assert c.binary_macs == body
    assert c.flops == 2 * c.macs
    assert c.ops == pytest.approx(stem + grouped + fc + body / 64)
    params = (8 * 3 * 9 + 8) + 8 * 8 * 9 + 8 * 2 * 9 + (8 * 5 + 5)
    assert c.params == params and c.binary_params == 8 * 8 * 9
    assert c.bnn_params == pytest.approx(params - 576 + 576 / 32)
    assert c.size == '10x12' and c.num_classes == 5


def test_a_binary_layer_in_float_mode_counts_as_float():
    c = count(Tiny(binary=False), (10, 12))
    assert c.binary_macs == 0 and c.binary_params == 0 and c.ops == c.macs


def test_complexity_json_interface(capsys):
    assert main(['--model', 'fcn_tiny', 'bisegunet', '--size', '96x128', '--num-classes', '11',
                 '--json']) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r['name'] for r in rows] == ['fcn_tiny', 'bisegunet']
    for row in rows:
        assert {'name', 'params', 'macs', 'binary_macs', 'ops', 'size', 'num_classes'} <= set(row)
        assert row['size'] == '96x128' and row['num_classes'] == 11
    assert rows[0]['binary_macs'] == 0 < rows[1]['binary_macs']


def test_complexity_table_and_unknown_model(capsys):
    assert main(['--model', 'fcn_tiny', '--size', '64x64']) == 0
    out = capsys.readouterr().out
    assert 'fcn_tiny' in out and 'FLOPs = 2 x MACs' in out
    with pytest.raises(SystemExit):
        main(['--model', 'nope'])
