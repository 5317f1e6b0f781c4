"""Every experiment config: valid keys, buildable parts, and the CPU variants train."""

from pathlib import Path

import pytest
import torch

from test.conftest import CAMVID
from training.config import load_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / 'training' / 'configs').glob('*.yaml'))
CPU = [p for p in CONFIGS if p.stem.endswith('_cpu')]


def test_one_config_per_paper_recipe_and_cpu_variants():
    names = {p.stem for p in CONFIGS}
    for loss in ('hinge', 'ce'):
        for task in ('human', 'vehicle'):
            assert f'bisenet_lite_{task}_{loss}' in names
            assert f'bisenet_lite_{task}_{loss}_cpu' in names
    assert {'fbsnet_cityscapes', 'fbsnet_camvid', 'bisegunet_cityscapes', 'jetseg_camvid',
            'bidense_bisenet_lite_voc'} <= names
    assert all(load_config(p)['data']['dataset'] == 'camvid' for p in CPU)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_parts_build(path):
    from training.losses import build_loss
    from training.schedules import build_optimizer, build_scheduler

    cfg = load_config(path)
    # Binary tasks have 2 classes (per-class loss weights are checked against that).
    num_classes = 2 if cfg['data'].get('task') in ('human', 'vehicle') else 11
    loss = build_loss(cfg['loss']['name'], num_classes=num_classes, ignore_index=255,
                      aux_weights=tuple(cfg['loss']['aux_weights']), **cfg['loss']['options'])
    assert isinstance(loss, torch.nn.Module)
    ocfg = cfg['optimizer']
    optimizer = build_optimizer([torch.nn.Parameter(torch.zeros(1))], name=ocfg['name'],
                                lr=ocfg['lr'], weight_decay=ocfg['weight_decay'],
                                momentum=ocfg['momentum'], betas=tuple(ocfg['betas']))
    epochs = cfg['train']['epochs']
    build_scheduler(optimizer, name=cfg['schedule']['name'], total_steps=epochs * 10,
                    steps_per_epoch=10, **cfg['schedule']['options'])


@pytest.mark.skipif(not (CAMVID / 'train').is_dir(), reason=f'CamVid not found at {CAMVID}')
@pytest.mark.parametrize('path', CPU, ids=lambda p: p.stem)
def test_cpu_config_trains_two_steps(path, tmp_path):
    from training.train import Trainer

    cfg = load_config(path, [('data.root', str(CAMVID)), ('data.limit', '64'),
                             ('data.workers', '0'), ('train.max_steps', '2'),
                             ('eval.limit', '1')])
    init = cfg['model']['init']
    if init:
        # A fine-tuning config starts from another config's run (runs/<config>/...), which a
        # clean clone has not trained: that config must exist, and the weights come from a
        # fresh net of the same architecture, saved as that run's checkpoint would be.
        parts = Path(init).parts
        assert parts[0] == 'runs' and (path.parent / f'{parts[1]}.yaml').is_file(), init
        if not (REPO / init).is_file():
            from seg_perception.models.artifact_model import build_network

            m = cfg['model']
            num_classes = 2 if cfg['data']['task'] in ('human', 'vehicle') else 11
            fresh = build_network(m['name'], num_classes, m['options'], m['binarize'],
                                  tuple(cfg['export']['size']))
            torch.save(fresh.state_dict(), tmp_path / 'init.pt')
            cfg['model']['init'] = str(tmp_path / 'init.pt')
        else:
            cfg['model']['init'] = str(REPO / init)
    trainer = Trainer(cfg, tmp_path, rank=0, world=1, device=torch.device('cpu'))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.run()
    assert trainer.step == 2
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert (tmp_path / 'checkpoints' / 'last.pt').is_file()


def test_base_key_applies_the_named_config_first(tmp_path):
    from training.config import ConfigError

    (tmp_path / 'a.yaml').write_text('train: {epochs: 7, seed: 3}\nloss: {name: hinge}\n')
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'sub' / 'b.yaml').write_text('base: ../a.yaml\ntrain: {epochs: 9}\n')
    (tmp_path / 'c.yaml').write_text('base: sub/b.yaml\nloss: {name: ce}\n')
    cfg = load_config(tmp_path / 'c.yaml', [('train.seed', '5')])
    assert (cfg['train']['epochs'], cfg['train']['seed'], cfg['loss']['name']) == (9, 5, 'ce')
    assert 'base' not in cfg

    (tmp_path / 'a.yaml').write_text('base: c.yaml\n')
    with pytest.raises(ConfigError, match='cycle'):
        load_config(tmp_path / 'c.yaml')
    (tmp_path / 'd.yaml').write_text('base: missing.yaml\n')
    with pytest.raises(FileNotFoundError, match=r'missing\.yaml \(the base of .*d\.yaml\)'):
        load_config(tmp_path / 'd.yaml')
    (tmp_path / 'e.yaml').write_text('base: [a.yaml]\n')
    with pytest.raises(ConfigError, match='base must be a file name'):
        load_config(tmp_path / 'e.yaml')


def _leaves(cfg: dict, prefix: str = '') -> dict:
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict) and value and not key.endswith('options'):
            out.update(_leaves(value, f'{prefix}{key}.'))
        else:
            out[f'{prefix}{key}'] = value
    return out


TWINS = [f'bisenet_lite_{task}_ce{suffix}' for task in ('human', 'vehicle')
         for suffix in ('', '_cpu')] + ['bisenet_lite_vehicle_ce_long_cpu',
                                        'bisenet_lite_vehicle_ce_full_cpu']


@pytest.mark.parametrize('stem', TWINS)
def test_hinge_and_ce_twins_differ_only_in_the_loss(stem):
    ce = REPO / 'training' / 'configs' / f'{stem}.yaml'
    hinge = ce.with_name(ce.name.replace('_ce', '_hinge'))
    a, b = _leaves(load_config(ce)), _leaves(load_config(hinge))
    assert {k for k in a if a[k] != b[k]} == {'loss.name'}


ARCHITECTURE_PILOTS = ['jetseg_camvid_cpu', 'jetseg_camvid_full_cpu', 'fbsnet_camvid_cpu',
                       'fbsnet_camvid_full_cpu']


@pytest.mark.parametrize('stem', ARCHITECTURE_PILOTS)
def test_architecture_comparisons_share_the_11_class_recipe(stem):
    # The 11-class model is "the best of fbsnet, bisenet_lite, jetseg within the budget": each
    # contender runs the shipped recipe; only the network, its heads and the time spent differ.
    configs = REPO / 'training' / 'configs'
    recipe = _leaves(load_config(configs / 'bisenet_lite_camvid_long_cpu.yaml'))
    other = _leaves(load_config(configs / f'{stem}.yaml'))
    differ = {k for k in recipe if recipe[k] != other[k]}
    assert 'model.name' in differ
    assert differ <= {'model.name', 'loss.aux_weights', 'train.epochs', 'train.channels_last',
                      'eval.every_epochs'}
