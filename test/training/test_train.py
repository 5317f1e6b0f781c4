"""The training loop for real on CamVid: overfitting, exact resume after SIGKILL, DDP parity,
divergence handling, configuration errors."""

from __future__ import annotations

import csv
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch

from test.conftest import CAMVID
from training.checkpoint import load
from training.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not (CAMVID / 'train').is_dir(),
                                reason=f'CamVid not found at {CAMVID} (set CAMVID_ROOT)')

# Small, fast, deterministic: 180x240 frames, no random scaling, one thread per process.
SMALL = ['--data.root', str(CAMVID), '--data.base_size', '[180, 240]',
         '--data.crop', '[180, 240]', '--data.scale', '[1.0, 1.0]', '--data.workers', '0',
         '--export.size', '[180, 240]', '--train.threads', '1', '--train.deterministic', 'true']


def run_train(out: Path, *args: str, torchrun: int = 0, timeout: float = 300,
              check: bool = True) -> subprocess.CompletedProcess:
    if torchrun:
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', str(torchrun),
               '--master_port', str(29500 + os.getpid() % 1000), '-m', 'training.train']
    else:
        cmd = [sys.executable, '-m', 'training.train']
    proc = subprocess.run([*cmd, '--out', str(out), *SMALL, *args], cwd=REPO, text=True,
                          capture_output=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def metrics_rows(out: Path) -> list[dict]:
    with (out / 'metrics.csv').open() as f:
        return list(csv.DictReader(f))


def test_overfits_eight_frames_in_forty_epochs(tmp_path):
    # About 50 s on 2 quiet cores. No wall-time assertion (a loaded machine is not a failure);
    # the timeout only stops a hung run.
    run_train(tmp_path, '--epochs', '40', '--model.name', 'bisenet_lite', '--data.limit', '8',
              '--data.flip', 'false', '--data.batch_size', '8', '--data.val_split', 'train',
              '--data.eval_size', '[180, 240]', '--eval.limit', '8', '--eval.every_epochs', '40',
              '--optimizer.name', 'adam', '--optimizer.lr', '0.003',
              '--optimizer.weight_decay', '0', '--schedule.name', 'constant',
              '--loss.aux_weights', '[1.0, 1.0]', '--train.deterministic', 'false',
              '--train.threads', '0', timeout=900)
    final = metrics_rows(tmp_path)[-1]
    assert float(final['val_pixel_accuracy']) >= 0.7, final
    # The run folder's promised contents, and a checkpoint the runtime loads as is.
    for name in ('config.yaml', 'checkpoints/last.pt', 'checkpoints/best.pt',
                 'checkpoints/best.yaml', 'metrics.csv'):
        assert (tmp_path / name).is_file(), name
    assert any((tmp_path / 'tb').iterdir())
    from seg_perception.core.segmenter import Segmenter

    seg = Segmenter.from_path(tmp_path / 'checkpoints' / 'best.pt')
    assert seg.backend.name == 'torch' and seg.artifact.model == 'bisenet_lite'


FAST = ['--model.name', 'fcn_tiny', '--data.limit', '24', '--data.batch_size', '4',
        '--eval.limit', '2', '--optimizer.lr', '0.01']


def final_weights(out: Path) -> dict:
    return load(out / 'checkpoints' / 'last.pt')['model']


@pytest.mark.parametrize('extra', [[], ['--train.ema', '0.9', '--train.ema_from_epoch', '1',
                                      '--train.channels_last', 'true']],
                         ids=['plain', 'ema_channels_last'])
def test_resume_after_sigkill_ends_with_the_same_weights(tmp_path, extra):
    args = [*FAST, '--epochs', '3', '--checkpoint.every_steps', '2', *extra]
    straight = tmp_path / 'straight'
    run_train(straight, *args)
    killed = tmp_path / 'killed'
    proc = subprocess.Popen([sys.executable, '-m', 'training.train', '--out', str(killed),
                             *SMALL, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    last = killed / 'checkpoints' / 'last.pt'
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if last.exists() and load(last)['step'] >= 4:
                break
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    state = load(last)
    assert 4 <= state['step'] < 18, 'the kill should land mid-run'
    run_train(killed, *args, '--resume')
    a, b = final_weights(straight), final_weights(killed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), 'resumed run diverged from the straight one'
    final = load(killed / 'checkpoints' / 'last.pt')
    assert final['step'] == 18
    if extra:  # the EMA (epochs 1-2: 12 of 18 steps, however the kill fell against its start) is
        # what is saved as 'model'; the raw weights differ from it
        raw = final['train_model']
        assert all(torch.equal(raw[k], load(straight / 'checkpoints' / 'last.pt')
                               ['train_model'][k]) for k in raw)
        assert any(not torch.equal(raw[k], b[k]) for k in raw if raw[k].is_floating_point())
        assert int(final['ema_n_averaged']) == 12


def test_ema_average_is_evaluated_and_deployed(tmp_path):
    """With train.ema, best.pt's 'model' (what the runtime loads) is the average, and the
    logged val score is the average's; the raw weights (train_model) give other labels.
    Resuming with EMA switched off is refused."""
    import shutil

    from seg_perception.core.segmenter import Segmenter
    from training.checkpoint import save_atomic

    run_train(tmp_path, *FAST, '--epochs', '2', '--train.ema', '0.5')
    best = tmp_path / 'checkpoints' / 'best.pt'
    state = load(best)
    raw = tmp_path / 'raw' / 'raw.pt'
    raw.parent.mkdir()
    save_atomic({'model': state['train_model']}, raw)
    shutil.copy(best.with_suffix('.yaml'), raw.with_suffix('.yaml'))
    frames = [cv2.imread(str(p))[:, :, ::-1] for p in sorted((CAMVID / 'val').glob('*.png'))[:2]]
    ema_labels = [Segmenter.from_path(best, backend='torch')(f).labels for f in frames]
    raw_labels = [Segmenter.from_path(raw, backend='torch')(f).labels for f in frames]
    assert any(not np.array_equal(a, b) for a, b in zip(ema_labels, raw_labels, strict=True))
    # The logged score is the average's: a trainer loading last.pt scores its EMA network
    # (the 'model' weights) to the logged figure, and its raw network to another.
    import yaml

    from training.train import Trainer

    cfg = yaml.safe_load((tmp_path / 'config.yaml').read_text())
    trainer = Trainer(cfg, tmp_path / 'again', rank=0, world=1, device=torch.device('cpu'))
    trainer.load_state(load(tmp_path / 'checkpoints' / 'last.pt'))
    logged = float(metrics_rows(tmp_path)[-1]['val_miou'])
    assert f'{trainer._evaluate()["miou"]:.6f}' == f'{logged:.6f}'
    trainer.ema = None
    assert f'{trainer._evaluate()["miou"]:.6f}' != f'{logged:.6f}'
    refused = run_train(tmp_path, *FAST, '--epochs', '3', '--resume', check=False)
    assert refused.returncode != 0 and 'train.ema' in refused.stderr


def test_ddp_two_processes_match_one_process(tmp_path):
    """gloo on CPU, same global batch (4 = 2 x 2).

    Tolerance: BN statistics are per process under DDP (SyncBatchNorm needs a GPU), so BN is
    frozen here (train.freeze_bn). What remains is that each process averages the loss over
    its own valid (non-void) pixels and DDP averages those means, while one process averages
    over all valid pixels: CamVid's void share differs between frames, so per-step gradients
    differ by a few percent of their size. After 12 SGD steps that stays below 1e-3 of the
    weights' norm; a wrong data split, a missing all-reduce or an unsynchronised model give
    differences of the order of the updates themselves (>= 1e-2 here)."""
    args = [*FAST, '--epochs', '2', '--train.freeze_bn', 'true']
    single, double = tmp_path / 'single', tmp_path / 'double'
    run_train(single, *args)
    run_train(double, *args, torchrun=2)
    a, b = final_weights(single), final_weights(double)
    keys = [k for k in a if a[k].is_floating_point() and 'running' not in k]
    diff = torch.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in keys))
    norm = torch.sqrt(sum((a[k] ** 2).sum() for k in keys))
    assert diff / norm < 1e-3, float(diff / norm)
    rows_a, rows_b = metrics_rows(single), metrics_rows(double)
    # Only rank 0 writes: one row per epoch, not two; the logged (all-reduced) loss is the
    # global-batch mean, the same as the single process's.
    assert len(rows_b) == len(rows_a) == 2
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert float(ra['train_loss']) == pytest.approx(float(rb['train_loss']), rel=1e-4)
    assert sorted(p.name for p in (double / 'checkpoints').iterdir()) == [
        'best.pt', 'best.yaml', 'last.pt', 'last.yaml']


def test_divergence_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    run_train(tmp_path, *FAST, '--epochs', '1', '--checkpoint.every_steps', '1')
    last = tmp_path / 'checkpoints' / 'last.pt'
    good = last.read_bytes()
    # A fresh run into the same folder with an infinite learning rate: weights go NaN after
    # its first step, the loss after its second.
    proc = run_train(tmp_path, *FAST, '--epochs', '3', '--checkpoint.every_steps', '1',
                     '--optimizer.lr', 'inf', check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert 'training stopped:' in proc.stderr and 'non-finite' in proc.stderr
    assert last.read_bytes() == good
    assert all(torch.isfinite(v).all() for v in load(last)['model'].values()
               if v.is_floating_point())


def test_init_from_a_checkpoint_starts_from_its_weights(tmp_path):
    # Fine-tuning (model.init). At lr 1e-9 with frozen BN statistics an epoch moves no weight
    # by more than about 1e-8 (the optimiser refuses lr 0), so the run must end with the
    # weights it was started from: those of the first run's last.pt, or of the same weights
    # saved as a bare state_dict.
    first = tmp_path / 'first'
    run_train(first, *FAST, '--epochs', '1')
    start = final_weights(first)
    bare = tmp_path / 'bare.pt'
    torch.save(start, bare)
    still = ['--optimizer.lr', '1e-9', '--schedule.name', 'constant', '--train.freeze_bn', 'true']
    for name, init in (('from_checkpoint', first / 'checkpoints' / 'last.pt'),
                       ('from_state_dict', bare)):
        proc = run_train(tmp_path / name, *FAST, '--epochs', '1', '--model.init', str(init),
                         *still)
        assert f'model.init: started from the weights of {init}' in proc.stdout
        got = final_weights(tmp_path / name)
        assert got.keys() == start.keys()
        worst = max((got[k].float() - start[k].float()).abs().max().item() for k in start)
        assert worst < 1e-6, (name, worst)
    # Without model.init the same run starts elsewhere: the check above is not vacuous.
    run_train(tmp_path / 'fresh', *FAST, '--epochs', '1', '--train.seed', '1', *still)
    fresh = final_weights(tmp_path / 'fresh')
    assert max((fresh[k].float() - start[k].float()).abs().max().item() for k in start) > 1e-2
    # Another architecture, or no file: exit 2 with the file named and why.
    proc = run_train(tmp_path / 'other', *FAST, '--model.name', 'bisenet_lite',
                     '--model.init', str(bare), '--epochs', '1', check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f'model.init: {bare} does not fit model' in proc.stderr and 'missing' in proc.stderr
    proc = run_train(tmp_path / 'none', *FAST, '--model.init', str(tmp_path / 'no.pt'),
                     '--epochs', '1', check=False)
    assert proc.returncode == 2 and f'no checkpoint at {tmp_path / "no.pt"}' in proc.stderr


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'data.bach_size'"):
        load_config(None, [('data.bach_size', '4')])
    cfg = load_config(REPO / 'training' / 'configs' / 'bisenet_lite_vehicle_hinge_cpu.yaml',
                      [('train.epochs', '3')])
    assert cfg['train']['epochs'] == 3 and cfg['loss']['name'] == 'hinge'
    proc = run_train(tmp_path, '--data.bach_size', '4', check=False)
    assert proc.returncode == 2 and 'data.bach_size' in proc.stderr


def _wait_then_kill(proc, checkpoints: Path, *, mid_write: bool, delay_s: float,
                    after_step: int) -> tuple[int, bool]:
    """Kills `proc` once last.pt holds a step > `after_step`: at once when a checkpoint write
    is under way (`mid_write`), else `delay_s` later. Returns (the last step seen complete
    before the kill, whether a write was under way at the kill). 0 steps: it finished first."""
    last = checkpoints / 'last.pt'
    seen, mtime = after_step, None
    deadline = time.monotonic() + 240
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            try:
                if last.stat().st_mtime_ns != mtime:  # a new checkpoint: read its step
                    mtime = last.stat().st_mtime_ns
                    seen = max(seen, load(last)['step'])
            except FileNotFoundError:  # none yet, or renamed over while we looked
                pass
            if seen > after_step:
                if not mid_write:
                    time.sleep(delay_s)
                    break
                if any(checkpoints.glob('.last.pt.*.tmp')):
                    break
            time.sleep(0.001)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    return seen, any(checkpoints.glob('.last.pt.*.tmp'))


def test_sigkill_anywhere_keeps_the_last_checkpoint_loadable_and_loses_one_interval_at_most(
        tmp_path):
    """Kills at random points and during checkpoint writes, resuming after each: last.pt and
    its sidecar always load (for --resume and for the runtime), no completed checkpoint is
    lost, and the chain of resumed runs ends with the weights of an uninterrupted run."""
    import random

    from seg_perception.core.segmenter import Segmenter

    every = 2
    args = [*FAST, '--epochs', '2', '--checkpoint.every_steps', str(every)]
    total = 2 * 24 // 4  # 2 epochs of 6 steps
    straight = tmp_path / 'straight'
    run_train(straight, *args)
    out = tmp_path / 'killed'
    checkpoints = out / 'checkpoints'
    rng = random.Random(8)
    step, mid_writes, history = 0, 0, []
    for attempt in range(6):
        resume = ['--resume'] if (checkpoints / 'last.pt').exists() else []
        proc = subprocess.Popen([sys.executable, '-m', 'training.train', '--out', str(out),
                                 *SMALL, *args, *resume], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if resume:
            # A resumed run starts by clearing what a killed write left behind.
            deadline = time.monotonic() + 60
            while any(checkpoints.glob('.*.tmp')) and time.monotonic() < deadline:
                time.sleep(0.01)
        seen, torn = _wait_then_kill(proc, checkpoints, mid_write=attempt % 2 == 0,
                                     delay_s=rng.uniform(0.0, 1.0), after_step=step)
        state = load(checkpoints / 'last.pt')  # always loadable ...
        Segmenter.from_path(checkpoints / 'last.pt')  # ... by the runtime too (sidecar)
        # No completed checkpoint is lost; checkpoints come every `every` steps (or at the
        # end of an epoch), so the killed run was at most one interval past this one.
        assert state['step'] >= seen >= step
        assert state['step'] % every == 0 or state['step_in_epoch'] == 0
        history.append((seen, state['step'], torn))
        step = state['step']
        mid_writes += torn
        if step == total:
            break
    print(f'\nkills (last step seen, last.pt step after the kill, mid-write): {history}')
    assert len(history) >= 3 and mid_writes >= 1, history
    if step < total:
        run_train(out, *args, '--resume')
        assert not any(checkpoints.glob('.*.tmp')), 'a resumed run clears partial writes'
    a, b = final_weights(straight), final_weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a), 'the resumed chain diverged'
