"""Data loaders of a training run: augmented training batches with a replayable order, and
the validation split at full size."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from training.config import ConfigError
from training.datasets import build_dataset
from training.transforms import eval_transform, seed_worker, train_transform

REPO = Path(__file__).resolve().parents[1]


def resolve_root(root: str) -> Path:
    """A dataset root as given, else relative to the repository (configs say ../shared/...)."""
    path = Path(root).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return (REPO / path).resolve()


@dataclass
class Loaders:
    train_set: object
    sampler: DistributedSampler
    batch_size: int               # per process
    workers: int
    val: DataLoader | None
    num_classes: int
    ignore_index: int
    class_set: str | None
    class_names: tuple[str, ...]

    @property
    def train(self) -> range:
        """Batches per epoch of this process (a range: only its length is used)."""
        return range(len(self.sampler) // self.batch_size)

    def train_epoch(self, epoch: int, *, skip_batches: int = 0) -> DataLoader:
        """This epoch's batches, from batch `skip_batches` on (resume mid-epoch).

        The order comes from (seed, epoch) through the sampler, and each sample's augmentation
        from (seed, epoch, index) in the dataset, so a resumed epoch sees exactly the batches
        the interrupted one would have.
        """
        self.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        indices = list(self.sampler)[skip_batches * self.batch_size:]
        return DataLoader(self.train_set, batch_size=self.batch_size, sampler=indices,
                          num_workers=self.workers, drop_last=True,
                          worker_init_fn=seed_worker, persistent_workers=False)


def build_loaders(cfg: dict, *, rank: int = 0, world: int = 1) -> Loaders:
    dcfg, seed = cfg['data'], cfg['train']['seed']
    if dcfg['batch_size'] % world:
        raise ConfigError(f'data.batch_size {dcfg["batch_size"]} is not divisible by the '
                          f'{world} processes')
    root = resolve_root(dcfg['root'])
    probe = build_dataset(dcfg['dataset'], root, dcfg['train_split'], task=dcfg['task'])
    train_set = build_dataset(
        dcfg['dataset'], root, dcfg['train_split'], task=dcfg['task'], seed=seed,
        transform=train_transform(
            tuple(dcfg['crop']), scale=tuple(dcfg['scale']) if dcfg['scale'] else None,
            flip=dcfg['flip'], jitter=dcfg['jitter'], ignore_index=probe.ignore_index,
            base_size=tuple(dcfg['base_size']) if dcfg['base_size'] else None))
    if dcfg['limit']:
        train_set = _Limited(train_set, dcfg['limit'])
    # DistributedSampler also for one process: the same (seed, epoch) order either way, so a
    # 1-process run and an N-process run see the same global batches.
    sampler = DistributedSampler(train_set, num_replicas=world, rank=rank, shuffle=True,
                                 seed=seed, drop_last=True)
    val = None
    if rank == 0:
        val_set = build_dataset(
            dcfg['dataset'], root, dcfg['val_split'], task=dcfg['task'],
            transform=eval_transform(tuple(dcfg['eval_size']) if dcfg['eval_size'] else None))
        if cfg['eval']['limit']:
            val_set = Subset(val_set, range(min(cfg['eval']['limit'], len(val_set))))
        val = DataLoader(val_set, batch_size=1, num_workers=dcfg['workers'])
    return Loaders(train_set, sampler, dcfg['batch_size'] // world, dcfg['workers'], val,
                   probe.num_classes, probe.ignore_index, probe.class_set,
                   tuple(probe.class_names))


class _Limited(torch.utils.data.Dataset):
    """The first `limit` samples of a dataset, keeping set_epoch."""

    def __init__(self, dataset, limit: int):
        self.dataset, self.limit = dataset, min(limit, len(dataset))

    def __len__(self) -> int:
        return self.limit

    def __getitem__(self, index: int):
        return self.dataset[index]

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)
