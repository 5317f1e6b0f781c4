"""Training checkpoints: written atomically, loaded without running pickled code."""

from __future__ import annotations

from pathlib import Path
import random

import numpy as np
import torch

from seg_perception.core.atomic import atomic_write


def rng_state() -> dict:
    """Python, numpy and torch RNG states as tensors / ints (loadable with weights_only)."""
    py_version, py_state, py_gauss = random.getstate()
    np_name, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state = {
        'python': {'version': py_version, 'state': torch.tensor(py_state, dtype=torch.int64),
                   'gauss': py_gauss},
        'numpy': {'name': np_name, 'keys': torch.from_numpy(np_keys.astype(np.int64)),
                  'pos': int(np_pos), 'has_gauss': int(np_has_gauss),
                  'gauss': float(np_gauss)},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state['python']
    random.setstate((py['version'], tuple(int(v) for v in py['state'].tolist()), py['gauss']))
    np_state = state['numpy']
    np.random.set_state((np_state['name'], np_state['keys'].numpy().astype(np.uint32),
                         np_state['pos'], np_state['has_gauss'], np_state['gauss']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state['cuda'])


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save through atomic_write: a crash at any point (SIGKILL included) leaves either
    the old or the new checkpoint under `path`, never a torn one."""
    atomic_write(path, lambda f: torch.save(obj, f))


def remove_partial_writes(folder: Path) -> list[Path]:
    """Deletes the temp files a killed save left in `folder` (never read; only disk space)."""
    stale = sorted(Path(folder).glob('.*.tmp'))
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def load(path: Path) -> dict:
    """Loads a checkpoint with weights_only=True: tensors and plain data only, no code."""
    return torch.load(path, map_location='cpu', weights_only=True)
