"""training.ship --latency-all on a copy of the shipped models: every latency re-measured,
nothing else in the index changed."""

import shutil

import yaml

from seg_perception.core.model_index import load_index
from seg_perception.core.paths import models_dir
from training.ship import retime_all


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
