"""training.evaluate: the runtime Segmenter scored with the shared metric code."""

import json
from pathlib import Path

import pytest

from test.conftest import CAMVID
from training.evaluate import evaluate, main

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / 'models' / 'fcn_tiny_camvid.onnx'
pytestmark = pytest.mark.skipif(not (CAMVID / 'val').is_dir(), reason=f'no CamVid at {CAMVID}')


def test_json_interface_on_camvid_val(capsys):
    assert main(['--model', str(SHIPPED), '--dataset', 'camvid', '--root', str(CAMVID),
                 '--split', 'val', '--limit', '5', '--json']) == 0
    result = json.loads(capsys.readouterr().out)
    assert {'miou', 'per_class_iou', 'pixel_accuracy', 'dice', 'frames'} <= set(result)
    assert result['frames'] == 5
    assert list(result['per_class_iou'])[:4] == ['Sky', 'Building', 'Pole', 'Road']
    # The shipped model segments street scenes: road and sky are easy.
    assert result['per_class_iou']['Road'] > 0.7 and result['pixel_accuracy'] > 0.7
    assert 0 < result['miou'] < 1


def test_torch_checkpoint_and_onnx_give_the_same_scores(tmp_path):
    pt = SHIPPED.with_suffix('.pt')
    a = evaluate(str(SHIPPED), 'camvid', str(CAMVID), 'val', limit=3, progress=False)
    b = evaluate(str(pt), 'camvid', str(CAMVID), 'val', limit=3, progress=False)
    assert abs(a['miou'] - b['miou']) < 1e-3


def test_a_model_for_other_classes_is_refused():
    with pytest.raises(ValueError, match="predicts 'camvid11'"):
        evaluate(str(SHIPPED), 'camvid', str(CAMVID), 'val', task='human', limit=1,
                 progress=False)
