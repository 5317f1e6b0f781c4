"""The shipped models (models/index.yaml): files, sizes, launch configs, and their accuracy on
CamVid val through the runtime, held to the figures in the index (= README) minus one point."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from seg_perception.core.artifact import load_artifact
from seg_perception.core.model_index import load_index
from seg_perception.core.paths import config_dir, models_dir
from seg_perception.launch_config import NODE_TASKS

REPO = Path(__file__).resolve().parents[1]
INDEX = load_index()
MODELS = {m.name: m for m in INDEX.models}
# Launch file -> the parameter YAML it loads.
LAUNCH_CONFIGS = {'jetson.launch.py': 'jetson.yaml', 'desktop.launch.py': 'desktop.yaml',
                  'segmenter.launch.py': 'segmenter.yaml', 'replay.launch.py': 'desktop.yaml'}


def test_index_lists_every_shipped_model_and_its_files():
    assert INDEX.models, 'models/index.yaml lists no model'
    onnx = {p.name for p in models_dir().glob('*.onnx')}
    assert onnx == {m.file for m in INDEX.models}, 'every ONNX in models/ is in the index'
    for model in INDEX.models:
        artifact = load_artifact(model.path)
        assert artifact.model == model.architecture
        assert tuple(artifact.input_size) == model.input_size
        assert artifact.class_set == {'multiclass': 'camvid11', 'human': 'binary_human',
                                      'vehicle': 'binary_vehicle'}[model.task]
        assert model.path.with_suffix('.pt').is_file(), f'{model.name}: state_dict missing'
        assert (REPO / model.config).is_file(), f'{model.name}: {model.config} missing'
    total = sum(p.stat().st_size for p in models_dir().iterdir() if p.is_file())
    assert total <= 30 * 2**20, f'models/ holds {total / 2**20:.1f} MB (budget 30 MB)'


def test_launch_files_and_configs_use_the_indexed_models():
    assert set(INDEX.launch) == set(LAUNCH_CONFIGS)
    for launch, nodes in INDEX.launch.items():
        assert (REPO / 'launch' / launch).is_file()
        params = yaml.safe_load((config_dir() / LAUNCH_CONFIGS[launch]).read_text())
        for node, file in nodes.items():
            assert params[f'/**/{node}']['ros__parameters']['model'] == file, (launch, node)
            assert INDEX.by_file(file).task == NODE_TASKS[node], (launch, node)


@pytest.mark.parametrize('name', sorted(MODELS))
def test_shipped_model_keeps_its_val_figure(name, camvid_root):
    from training.evaluate import evaluate

    model = MODELS[name]
    result = evaluate(str(model.path), 'camvid', str(camvid_root), 'val', task=model.task,
                      backend='onnxruntime', progress=False)
    got = 100 * (result['miou'] if model.task == 'multiclass'
                 else result['per_class_iou'][model.task])
    assert got >= model.score - 1.0, f'{name}: {got:.1f} < index {model.score} - 1'
