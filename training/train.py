"""Trains a segmentation model: single process or DDP under torchrun.

    python -m training.train --config training/configs/NAME.yaml [--epochs N] [--max-steps N]
                             [--out DIR] [--resume] [--section.key VALUE ...]
    torchrun --nproc_per_node N -m training.train --config ...      (gloo on CPU, nccl on GPU)

The run folder holds config.yaml (resolved), checkpoints/last.pt and best.pt (each with a
.yaml sidecar, so the runtime and training.evaluate load them directly), metrics.csv and
TensorBoard logs under tb/. Only rank 0 writes. --resume continues from checkpoints/last.pt
exactly: model, optimiser, scheduler, AMP scaler, epoch, step and RNG states are restored and
the epoch's sample order is replayed from the same seed.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
from pathlib import Path
import sys
import time

import torch
from torch import nn
import torch.distributed as dist
from tqdm import tqdm

from seg_perception.core.artifact import ModelArtifact, Normalization, write_sidecar
from seg_perception.core.metrics import ConfusionMatrix
from seg_perception.models.artifact_model import build_network
from training import checkpoint as ckpt
from training.config import ConfigError, config_hash, load_config
from training.data import build_loaders

REPO = Path(__file__).resolve().parents[1]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog='Any config key can be overridden as '
                                            '--section.key VALUE (VALUE is read as YAML).')
    parser.add_argument('--config', type=Path, help='training/configs/NAME.yaml')
    parser.add_argument('--epochs', type=int)
    parser.add_argument('--max-steps', type=int)
    parser.add_argument('--out', type=Path, help='run folder (default runs/<config name>)')
    parser.add_argument('--resume', action='store_true', help='continue from last.pt')
    args, rest = parser.parse_known_args(argv)
    overrides = []
    while rest:
        flag = rest.pop(0)
        if not flag.startswith('--') or '.' not in flag or not rest:
            parser.error(f'unexpected argument {flag!r} (overrides are --section.key VALUE)')
        overrides.append((flag[2:], rest.pop(0)))
    if args.epochs is not None:
        overrides.append(('train.epochs', str(args.epochs)))
    if args.max_steps is not None:
        overrides.append(('train.max_steps', str(args.max_steps)))
    try:
        cfg = load_config(args.config, overrides)
    except (ConfigError, FileNotFoundError) as err:
        parser.error(str(err))
    if args.out is None:
        args.out = REPO / 'runs' / (args.config.stem if args.config else 'default')
    return args, cfg


def setup_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device) from torchrun's environment, or a single process."""
    world = int(os.environ.get('WORLD_SIZE', '1'))
    cuda = torch.cuda.is_available()
    if world > 1:
        dist.init_process_group('nccl' if cuda else 'gloo')
    rank = dist.get_rank() if world > 1 else 0
    if cuda:
        local = int(os.environ.get('LOCAL_RANK', '0'))
        torch.cuda.set_device(local)
        return rank, world, torch.device('cuda', local)
    return rank, world, torch.device('cpu')


def load_init_weights(model: nn.Module, path: Path) -> None:
    """model.init: copies the weights of a training checkpoint or a bare state_dict into
    `model`. Every key must match: a checkpoint of another architecture or class set is an
    error naming the file and the first differences, not a silently half-loaded network."""
    if not path.is_file():
        raise ConfigError(f'model.init: no checkpoint at {path}')
    state = ckpt.load(path)
    if 'model' in state and isinstance(state['model'], dict):
        state = state.get('train_model', state['model'])  # raw weights, as training left them
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or shapes:
        def first(keys):
            return ', '.join(keys[:3]) + (' ...' if len(keys) > 3 else '')
        raise ConfigError(
            f'model.init: {path} does not fit model {model.__class__.__name__}: '
            f'{len(missing)} missing ({first(missing)}), {len(unexpected)} unexpected '
            f'({first(unexpected)}), {len(shapes)} of another shape ({first(shapes)})')
    model.load_state_dict(state)


class Trainer:
    def __init__(self, cfg: dict, out: Path, *, rank: int, world: int, device: torch.device,
                 resuming: bool = False):
        from training.losses import build_loss
        from training.schedules import build_optimizer, build_scheduler

        self.cfg, self.out, self.rank, self.world, self.device = cfg, out, rank, world, device
        self.main = rank == 0
        tcfg = cfg['train']
        if tcfg['threads']:
            torch.set_num_threads(tcfg['threads'])
        if tcfg['deterministic']:
            torch.use_deterministic_algorithms(True)
        torch.manual_seed(tcfg['seed'])
        self.data = build_loaders(cfg, rank=rank, world=world)
        mcfg = cfg['model']
        self.model = build_network(mcfg['name'], self.data.num_classes, mcfg['options'],
                                   mcfg['binarize'], tuple(cfg['export']['size'])).to(device)
        if mcfg['init'] and not resuming:  # a resume loads its own last.pt over them anyway
            load_init_weights(self.model, Path(mcfg['init']))
            if self.main:
                print(f"model.init: started from the weights of {mcfg['init']}", flush=True)
        if world > 1 and tcfg['sync_bn'] and device.type == 'cuda':
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.memory_format = (torch.channels_last if tcfg['channels_last']
                              else torch.contiguous_format)
        self.model = self.model.to(memory_format=self.memory_format)
        self.ema = None
        if tcfg['ema']:
            if not 0.0 < tcfg['ema'] < 1.0:
                raise ConfigError(f'train.ema must be in (0, 1) (0: off), got {tcfg["ema"]}')
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(tcfg['ema']),
                                     use_buffers=True)
        self.net = self.model
        if world > 1:
            self.net = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[device.index] if device.type == 'cuda' else None)
        lcfg = cfg['loss']
        self.loss = build_loss(lcfg['name'], num_classes=self.data.num_classes,
                               ignore_index=self.data.ignore_index,
                               aux_weights=tuple(lcfg['aux_weights']), **lcfg['options'])
        ocfg = cfg['optimizer']
        self.optimizer = build_optimizer(self.model.parameters(), name=ocfg['name'],
                                         lr=ocfg['lr'], weight_decay=ocfg['weight_decay'],
                                         momentum=ocfg['momentum'], betas=tuple(ocfg['betas']))
        self.steps_per_epoch = len(self.data.train) // tcfg['accumulate']
        if self.steps_per_epoch == 0:
            raise ConfigError('fewer training batches than train.accumulate: nothing to step')
        # The schedule spans the configured epochs; max_steps only stops the run early.
        total = self.steps_per_epoch * tcfg['epochs']
        self.scheduler = build_scheduler(self.optimizer, name=cfg['schedule']['name'],
                                         total_steps=total, steps_per_epoch=self.steps_per_epoch,
                                         **cfg['schedule']['options'])
        self.amp = bool(tcfg['amp']) and device.type == 'cuda'
        self.scaler = torch.amp.GradScaler('cuda', enabled=self.amp)
        self.epoch = self.step = self.step_in_epoch = 0
        self.best_miou = -1.0
        self.hash = config_hash(cfg)

    # ------------------------------------------------------------------ state
    @property
    def deployed(self) -> nn.Module:
        """The network evaluated, saved as 'model' and exported: the EMA when train.ema is on
        and averaging has started (train.ema_from_epoch), the raw weights otherwise."""
        if self.ema is not None and int(self.ema.n_averaged) > 0:
            return self.ema.module
        return self.model

    def state(self) -> dict:
        extra = {} if self.ema is None else {'train_model': self.model.state_dict(),
                                             'ema_n_averaged': self.ema.n_averaged}
        return {
            # 'model' is what the runtime loads; with EMA the raw weights are in train_model.
            'model': self.deployed.state_dict(), **extra,
            'optimizer': self.optimizer.state_dict(),
            'scheduler': self.scheduler.state_dict(),
            'scaler': self.scaler.state_dict(),
            'epoch': self.epoch, 'step': self.step, 'step_in_epoch': self.step_in_epoch,
            'best_miou': self.best_miou, 'rng': ckpt.rng_state(), 'config_hash': self.hash,
        }

    def load_state(self, state: dict) -> None:
        if (self.ema is None) != ('train_model' not in state):
            raise ConfigError('the checkpoint was written with train.ema '
                              f'{"on" if "train_model" in state else "off"}; the config has it '
                              f'{"off" if self.ema is None else "on"}')
        if self.ema is None:
            self.model.load_state_dict(state['model'])
        else:
            self.model.load_state_dict(state['train_model'])
            self.ema.n_averaged.copy_(state['ema_n_averaged'])
            self.deployed.load_state_dict(state['model'])  # the raw weights until it starts
        self.optimizer.load_state_dict(state['optimizer'])
        self.scheduler.load_state_dict(state['scheduler'])
        self.scaler.load_state_dict(state['scaler'])
        self.epoch, self.step = state['epoch'], state['step']
        self.step_in_epoch, self.best_miou = state['step_in_epoch'], state['best_miou']
        ckpt.set_rng_state(state['rng'])

    def save(self, name: str) -> None:
        """Writes checkpoints/<name>.pt and its sidecar (rank 0). Refuses non-finite weights:
        a step can turn them NaN with a finite loss, and the last good checkpoint must stay."""
        if not self.main:
            return
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise TrainingDiverged(
                f'parameters became non-finite at epoch {self.epoch + 1}, step {self.step} '
                f'({bad[0]}{" and others" if len(bad) > 1 else ""}); not overwriting '
                f'{self.out / "checkpoints"}. Lower optimizer.lr or check the data.')
        path = self.out / 'checkpoints' / f'{name}.pt'
        mcfg = self.cfg['model']
        # Sidecar first (its content is the same for every save of a run): a checkpoint file
        # never exists without one, whenever the process is killed.
        write_sidecar(ModelArtifact(
            path=path, format='torch', model=mcfg['name'], class_set=self.data.class_set,
            num_classes=self.data.num_classes, input_size=tuple(self.cfg['export']['size']),
            normalization=Normalization(in_graph=True), config_hash=self.hash,
            model_options=dict(mcfg['options']), binarize=mcfg['binarize']))
        ckpt.save_atomic(self.state(), path)

    # ------------------------------------------------------------------- loop
    def run(self) -> dict:
        tcfg, ccfg = self.cfg['train'], self.cfg['checkpoint']
        last_metrics: dict = {}
        while self.epoch < tcfg['epochs'] and not self._done():
            self._set_binarization()
            train_loss = self._train_epoch()
            if self.step_in_epoch < self.steps_per_epoch:  # stopped by max_steps mid-epoch
                self.save('last')
                break
            self.epoch += 1
            self.step_in_epoch = 0
            if self.epoch % self.cfg['eval']['every_epochs'] == 0 or self.epoch == tcfg['epochs']:
                last_metrics = self._evaluate()
                if self.main and last_metrics['miou'] > self.best_miou:
                    self.best_miou = last_metrics['miou']
                    self.save('best')
            self._log(train_loss, last_metrics)
            if self.epoch % ccfg['every_epochs'] == 0 or self.epoch == tcfg['epochs']:
                self.save('last')
        return last_metrics

    def _done(self) -> bool:
        return bool(self.cfg['train']['max_steps']) and self.step >= self.cfg['train']['max_steps']

    def _set_binarization(self) -> None:
        bcfg = self.cfg['binarization']
        if not bcfg:
            return
        from seg_perception.models.binarize import set_binary_fraction
        from training.schedules import binary_fraction

        fraction = binary_fraction(self.epoch, bcfg['float_until'], bcfg['binary_from'])
        count = set_binary_fraction(self.model, fraction)
        if self.ema is not None:
            set_binary_fraction(self.ema.module, fraction)
        if self.main:
            tqdm.write(f'epoch {self.epoch}: {count} binary layers ({fraction:.0%})')

    def _train_epoch(self) -> float:
        tcfg = self.cfg['train']
        accumulate = tcfg['accumulate']
        self.net.train()
        if tcfg['freeze_bn']:
            for m in self.net.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        loader = self.data.train_epoch(self.epoch, skip_batches=self.step_in_epoch * accumulate)
        bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch, disable=not self.main,
                   desc=f'epoch {self.epoch + 1}/{tcfg["epochs"]}', unit='step', leave=False)
        running, count = 0.0, 0
        batches = iter(loader)
        while self.step_in_epoch < self.steps_per_epoch and not self._done():
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for _ in range(accumulate):
                images, labels = next(batches)
                loss = self._loss(images.to(self.device, memory_format=self.memory_format),
                                  labels.to(self.device))
                self.scaler.scale(loss / accumulate).backward()
                step_loss += loss.detach() / accumulate
            step_loss = self._all_mean(step_loss)
            if not math.isfinite(step_loss):
                raise TrainingDiverged(
                    f'loss is {step_loss} at epoch {self.epoch + 1}, step {self.step + 1}; '
                    f'the last good checkpoint ({self.out / "checkpoints" / "last.pt"}) is '
                    'intact. Lower optimizer.lr or check the data.')
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None and self.epoch >= self.cfg['train']['ema_from_epoch']:
                self.ema.update_parameters(self.model)
            self.step += 1
            self.step_in_epoch += 1
            running += step_loss
            count += 1
            bar.update()
            bar.set_postfix(loss=f'{step_loss:.4f}', lr=f'{self.scheduler.get_last_lr()[0]:.2e}')
            every = self.cfg['checkpoint']['every_steps']
            if every and self.step % every == 0 and self.step_in_epoch < self.steps_per_epoch:
                self.save('last')
        bar.close()
        return running / max(count, 1)

    def _loss(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, enabled=self.amp):
            outputs = self.net(images)
            loss = self.loss(outputs, labels)
        weight = self.cfg['loss']['binary_l1']
        if weight:
            from seg_perception.models.binarize import binary_weight_l1

            loss = loss + weight * binary_weight_l1(
                self.model, reduction=self.cfg['loss']['binary_l1_reduction'])
        return loss

    def _all_mean(self, value: torch.Tensor) -> float:
        if self.world > 1:
            value = value.clone()
            dist.all_reduce(value)
            value /= self.world
        return float(value)

    @torch.no_grad()
    def _evaluate(self) -> dict:
        """Confusion-matrix metrics on the validation split (rank 0; others wait)."""
        metrics: dict = {}
        if self.main:
            model = self.deployed
            model.eval()
            cm = ConfusionMatrix(self.data.num_classes, self.data.ignore_index)
            for images, labels in tqdm(self.data.val, desc='val', unit='img', leave=False):
                with torch.autocast(self.device.type, enabled=self.amp):
                    logits = model(images.to(self.device, memory_format=self.memory_format))
                cm.update(logits.argmax(1).cpu().numpy(), labels.numpy())
            iou = cm.per_class_iou()
            metrics = {'miou': cm.miou(), 'pixel_accuracy': cm.pixel_accuracy(),
                       'dice': cm.dice(),
                       'per_class_iou': {n: float(v) for n, v in zip(
                           self.data.class_names, iou, strict=True)}}
        if self.world > 1:
            dist.barrier()
        return metrics

    def _log(self, train_loss: float, metrics: dict) -> None:
        if not self.main:
            return
        row = {'epoch': self.epoch, 'step': self.step, 'train_loss': f'{train_loss:.6f}',
               'lr': f'{self.scheduler.get_last_lr()[0]:.6g}',
               'val_miou': f'{metrics["miou"]:.6f}' if metrics else '',
               'val_pixel_accuracy': f'{metrics["pixel_accuracy"]:.6f}' if metrics else '',
               'val_dice': f'{metrics["dice"]:.6f}' if metrics else '',
               'time': f'{time.time():.0f}'}
        path = self.out / 'metrics.csv'
        new = not path.exists()
        with path.open('a', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(self.out / 'tb'))
        self._writer.add_scalar('train/loss', train_loss, self.step)
        self._writer.add_scalar('train/lr', self.scheduler.get_last_lr()[0], self.step)
        if metrics:
            for key in ('miou', 'pixel_accuracy', 'dice'):
                self._writer.add_scalar(f'val/{key}', metrics[key], self.step)
            for name, iou in metrics['per_class_iou'].items():
                self._writer.add_scalar(f'val_iou/{name}', iou, self.step)
        self._writer.flush()
        summary = f' val mIoU {100 * metrics["miou"]:.2f}' if metrics else ''
        tqdm.write(f'epoch {self.epoch}: loss {train_loss:.4f}{summary}')

    _writer = None


def main(argv: list[str] | None = None) -> int:
    args, cfg = parse_args(argv)
    rank, world, device = setup_distributed()
    out = args.out
    try:
        if rank == 0:
            out.mkdir(parents=True, exist_ok=True)
            ckpt.remove_partial_writes(out / 'checkpoints')
            import yaml

            (out / 'config.yaml').write_text(yaml.safe_dump(cfg, sort_keys=False))
        trainer = Trainer(cfg, out, rank=rank, world=world, device=device,
                          resuming=args.resume)
        last = out / 'checkpoints' / 'last.pt'
        if args.resume:
            if not last.is_file():
                raise FileNotFoundError(f'--resume: no checkpoint at {last}')
            trainer.load_state(ckpt.load(last))
            if rank == 0:
                print(f'resumed from {last}: epoch {trainer.epoch}, step {trainer.step}')
        metrics = trainer.run()
    except TrainingDiverged as err:
        print(f'training stopped: {err}', file=sys.stderr)
        return 2
    except ConfigError as err:
        print(f'config error: {err}', file=sys.stderr)
        return 2
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        best = out / 'checkpoints' / ('best.pt' if (out / 'checkpoints' / 'best.pt').exists()
                                      else 'last.pt')
        if metrics:
            print(f'final val mIoU {100 * metrics["miou"]:.2f}, pixel accuracy '
                  f'{100 * metrics["pixel_accuracy"]:.2f}')
        size = 'x'.join(str(v) for v in cfg['export']['size'])
        print('export with:\n  export_model --model {} --num-classes {} --size {} '
              '--checkpoint {} --out {}'.format(cfg['model']['name'], trainer.data.num_classes,
                                                size, best, out / 'model.onnx'))
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
