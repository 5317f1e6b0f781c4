"""training.ship on a copy of the shipped models: --latency-all re-measures every latency and
changes nothing else in the index; --checkpoint last-raw ships an EMA run's raw weights."""

import shutil

import pytest
import torch
import yaml

from seg_perception.core.model_index import load_index
from seg_perception.core.paths import models_dir
from test.conftest import CAMVID
from test.training.test_train import FAST, run_train
from training.checkpoint import load
from training.ship import main, retime_all


def test_latency_all_retimes_every_model_and_keeps_the_rest(tmp_path):
    copy = tmp_path / 'models'
    shutil.copytree(models_dir(), copy)
    index = copy / 'index.yaml'
    before = yaml.safe_load(index.read_text())
    for entry in before['models']:
        entry['latency_ms'] = -1.0
    index.write_text(index.read_text().split('\nmodels:')[0] + '\n'
                     + yaml.safe_dump({'models': before['models']}, sort_keys=False)
                     + yaml.safe_dump({'launch': before['launch']}, sort_keys=False))
    header = index.read_text().split('\nmodels:')[0]
    times = retime_all(index)
    after = yaml.safe_load(index.read_text())
    assert set(times) == {m['name'] for m in before['models']}
    assert all(m['latency_ms'] > 0 for m in after['models'])
    strip = [{k: v for k, v in m.items() if k != 'latency_ms'} for m in after['models']]
    assert strip == [{k: v for k, v in m.items() if k != 'latency_ms'}
                     for m in before['models']]
    assert after['launch'] == before['launch']
    assert index.read_text().startswith(header)  # the explanatory comment stays
    load_index(index)


@pytest.mark.skipif(not (CAMVID / 'train').is_dir(),
                    reason=f'CamVid not found at {CAMVID} (set CAMVID_ROOT)')
def test_last_raw_ships_the_raw_weights_of_an_ema_run(tmp_path, capsys):
    """--checkpoint last-raw exports last.pt's train_model (not the EMA in 'model'), scores it
    and enters it in the index; a run without EMA is refused with the reason."""
    run = tmp_path / 'run'
    run_train(run, *FAST, '--epochs', '2', '--train.ema', '0.5')
    copy = tmp_path / 'models'
    shutil.copytree(models_dir(), copy)
    assert main(['--run', str(run), '--name', 'raw_test', '--checkpoint', 'last-raw',
                 '--models-dir', str(copy), '--budget-min', '1']) == 0
    raw = load(run / 'checkpoints' / 'last.pt')['train_model']
    shipped = torch.load(copy / 'raw_test.pt', weights_only=True)['model']
    assert set(shipped) == set(raw)
    assert all(torch.equal(shipped[k], raw[k].half() if raw[k].is_floating_point() else raw[k])
               for k in raw)
    entry = [m for m in load_index(copy / 'index.yaml').models if m.name == 'raw_test']
    assert len(entry) == 1 and 0 < entry[0].val['miou'] <= 100
    assert (models_dir() / 'index.yaml').read_text() != (copy / 'index.yaml').read_text()

    plain = tmp_path / 'plain'
    run_train(plain, *FAST, '--epochs', '1')
    with pytest.raises(SystemExit) as refused:
        main(['--run', str(plain), '--name', 'x', '--checkpoint', 'last-raw',
              '--models-dir', str(copy)])
    assert refused.value.code == 2
    assert 'train_model' in capsys.readouterr().err
    with pytest.raises(SystemExit) as missing:
        main(['--run', str(tmp_path / 'nothing'), '--name', 'x', '--models-dir', str(copy)])
    assert missing.value.code == 2
    assert str(tmp_path / 'nothing' / 'config.yaml') in capsys.readouterr().err
