"""Torch checkpoints that must not load: torn, not torch at all, pickled code, wrong shapes.
Each fails with ModelLoadError naming the file and the cause; none runs code."""

from __future__ import annotations

import os
from pathlib import Path
import shutil

import pytest
import torch
import yaml

from seg_perception.core.artifact import ModelLoadError
from seg_perception.core.segmenter import Segmenter


def checkpoint_copy(camvid_model: Path, tmp_path: Path) -> Path:
    """The test model's .pt and sidecar under tmp_path (same stem)."""
    dst = tmp_path / 'm.pt'
    shutil.copy(camvid_model.with_suffix('.pt'), dst)
    shutil.copy(camvid_model.with_suffix('.yaml'), dst.with_suffix('.yaml'))
    return dst


class RunsCode:
    """Pickles as a call of os.system: what a malicious checkpoint carries."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def test_a_checkpoint_that_pickles_code_is_refused_and_the_code_never_runs(camvid_model,
                                                                          tmp_path):
    path = checkpoint_copy(camvid_model, tmp_path)
    marker = tmp_path / 'code_ran'
    state = torch.load(path, weights_only=True)
    state['extra'] = RunsCode(marker)
    torch.save(state, path)
    with pytest.raises(ModelLoadError) as err:
        Segmenter.from_path(path, backend='torch')
    assert str(err.value).startswith(f'cannot load model {path}: refused: the checkpoint '
                                     'pickles Python objects besides weights')
    assert 'system' in str(err.value) and 'could run code' in str(err.value)
    assert 'weights_only` set to `False`' not in str(err.value)  # torch's advice is dropped
    assert not marker.exists()


@pytest.mark.parametrize('damage,cause', [
    (lambda p: p.write_bytes(p.read_bytes()[:2000]), 'not a loadable torch checkpoint'),
    (lambda p: p.write_bytes(b''), 'not a loadable torch checkpoint'),
    (lambda p: p.write_bytes(os.urandom(4096)), 'not a loadable torch checkpoint'),
    (lambda p: torch.save([1, 2, 3], p), 'checkpoint holds no state_dict'),
])
def test_torn_or_foreign_checkpoints_fail_naming_the_file(camvid_model, tmp_path, damage,
                                                          cause):
    path = checkpoint_copy(camvid_model, tmp_path)
    damage(path)
    with pytest.raises(ModelLoadError) as err:
        Segmenter.from_path(path, backend='torch')
    assert str(err.value).startswith(f'cannot load model {path}: {cause}')


def test_weights_for_another_class_count_name_the_tensor(camvid_model, tmp_path):
    path = checkpoint_copy(camvid_model, tmp_path)
    side = path.with_suffix('.yaml')
    side.write_text(yaml.safe_dump({**yaml.safe_load(side.read_text()),
                                    'num_classes': 2, 'class_set': 'binary_vehicle'}))
    with pytest.raises(ModelLoadError, match=r"weights do not fit 'fcn_tiny' with 2 classes "
                                             r'\(sidecar\): size mismatch for head'):
        Segmenter.from_path(path, backend='torch')
