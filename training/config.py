"""Training configuration: defaults, one YAML per experiment, command-line overrides.

Every key has a default here; an experiment YAML (training/configs/*.yaml) overrides some,
and `--section.key value` on the command line overrides those. An experiment YAML may start
from another: `base: OTHER.yaml` (relative to its own folder) applies OTHER first, so a config
that changes one thing from a recipe says only that one thing. Unknown keys are errors, so a
typo cannot silently train with a default. The resolved config is saved in the run folder.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import yaml

DEFAULTS: dict = {
    'model': {
        'name': 'bisenet_lite',
        'options': {},            # builder keyword options (width, binary, ...)
        'binarize': None,         # binarize_model options, e.g. {binarizer: dab, cfb: true}
        # A checkpoint whose weights start the run (fine-tuning): a training checkpoint
        # (checkpoints/best.pt or last.pt; its raw weights when it was written with EMA), a
        # shipped models/<name>.pt (float16 weights, cast on loading) or a bare state_dict.
        # Optimiser and schedule start fresh.
        # --resume takes precedence: a resumed run continues from its own last.pt and does
        # not read this file (it may have moved since the first start).
        'init': None,
    },
    'data': {
        'dataset': 'camvid',      # camvid | cityscapes | voc | ade20k
        'root': '../shared/datasets/camvid',
        'task': 'multiclass',     # multiclass | human | vehicle
        'train_split': 'train',
        'val_split': 'val',
        'base_size': None,        # [H, W]: resize inputs before augmentation
        'crop': [360, 480],       # [H, W] training crop
        'scale': [0.5, 2.0],      # random scale range
        'flip': True,
        'jitter': 0.0,            # colour jitter strength
        'eval_size': None,        # [H, W] evaluation input size (None: native)
        'batch_size': 8,          # global batch (split across DDP processes)
        'workers': 2,
        'limit': None,            # use only the first N training samples (tests, smoke runs)
    },
    'loss': {
        'name': 'ce',             # ce | ohem | hinge | dice | ce_dice | jetloss
        'aux_weights': [],        # weights of auxiliary outputs (BiSeNet: [1.0, 1.0])
        'options': {},
        'binary_l1': 0.0,         # BiSegUNet eq. 24 regulariser weight (binary layers only)
        # 'mean' divides eq. 24's sum by the number of binary weights: with 'sum', lambda_3 =
        # 1e-4 adds ~80 to a loss of ~3 for bisegunet (833 K binary weights).
        'binary_l1_reduction': 'mean',
    },
    'optimizer': {
        'name': 'sgd',            # sgd | adam | adamw
        'lr': 0.025,
        'weight_decay': 1.0e-4,
        'momentum': 0.9,          # SGD
        'betas': [0.9, 0.999],    # Adam / AdamW
    },
    'schedule': {
        'name': 'poly',           # poly | cosine_restarts | onecycle | constant
        'options': {},
    },
    'binarization': None,         # {float_until: E1, binary_from: E2} phased binarisation
    'train': {
        'epochs': 100,
        'max_steps': None,        # stop after this many optimiser steps
        'accumulate': 1,          # gradient accumulation (micro-batches per step)
        'amp': True,              # mixed precision on CUDA (ignored on CPU)
        'seed': 0,
        'sync_bn': False,         # SyncBatchNorm under DDP
        'threads': 0,             # torch CPU threads per process (0: torch default)
        'deterministic': False,   # torch.use_deterministic_algorithms
        'freeze_bn': False,       # BN layers keep their running statistics (tiny batches)
        # Exponential moving average of the weights (and BN statistics), decay per optimiser
        # step (0: off). When on, evaluation, best.pt and the exported model use the average.
        'ema': 0.0,
        # First epoch (0-based) whose steps update the average. Before it, the raw weights are
        # evaluated and saved; its first update copies them. Early in training from scratch
        # an average over far-apart weights is no model at all (an EMA from step 0 at decay
        # 0.998 scored 2.7 val mIoU at epoch 15, the raw weights 36.6).
        'ema_from_epoch': 0,
        'channels_last': False,   # NHWC tensors (faster convs with oneDNN on CPU)
    },
    'checkpoint': {
        'every_steps': 0,         # also checkpoint every N optimiser steps (0: off)
        'every_epochs': 1,
    },
    'eval': {
        'every_epochs': 1,
        'limit': None,            # evaluate on the first N validation samples only
    },
    'export': {
        'size': [360, 480],       # input size of the exported model (printed command)
    },
}


class ConfigError(ValueError):
    pass


def merge(base: dict, update: dict, path: str = '') -> dict:
    """`base` with `update` applied; keys not in `base` raise ConfigError."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        where = f'{path}{key}'
        if key not in out:
            raise ConfigError(f'unknown config key {where!r} (known here: '
                              f'{", ".join(sorted(out))})')
        if isinstance(out[key], dict) and isinstance(value, dict) and not key.endswith(
                ('options',)):
            out[key] = merge(out[key], value, f'{where}.')
        else:
            out[key] = _coerce(out[key], value, where)
    return out


def _coerce(default, value, where: str):
    """Numbers written as YAML 1.1 cannot always spell them (1e-4 reads as a string)."""
    if isinstance(default, float) and isinstance(value, str | int) and not isinstance(
            value, bool):
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f'{where} must be a number, got {value!r}') from None
    return value


def load_config(path: str | Path | None, overrides: list[tuple[str, str]] = ()) -> dict:
    """DEFAULTS <- base YAML files (outermost first) <- YAML file <- (dotted key, YAML value)
    overrides."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        for data in _file_chain(Path(path)):
            cfg = merge(cfg, data)
    for dotted, text in overrides:
        value = yaml.safe_load(text)
        node: dict = value
        for key in reversed(dotted.split('.')):
            node = {key: node}
        cfg = merge(cfg, node)
    return cfg


def _file_chain(path: Path) -> list[dict]:
    """The mappings of `path` and of the files its `base:` keys name, outermost base first."""
    chain: list[dict] = []
    seen: list[Path] = []
    while True:
        resolved = path.resolve()
        if resolved in seen:
            raise ConfigError('config bases form a cycle: ' + ' -> '.join(
                str(p) for p in [*seen, resolved]))
        seen.append(resolved)
        if not path.is_file():
            named = f' (the base of {seen[-2]})' if len(seen) > 1 else ''
            raise FileNotFoundError(f'config file {path}{named} does not exist')
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ConfigError(f'{path}: expected a mapping at the top level')
        base = data.pop('base', None)
        chain.append(data)
        if base is None:
            return chain[::-1]
        if not isinstance(base, str):
            raise ConfigError(f'{path}: base must be a file name, got {base!r}')
        path = path.parent / base


def config_hash(cfg: dict) -> str:
    """Short stable hash of the resolved config (sidecars record which run made a model)."""
    text = json.dumps(cfg, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
