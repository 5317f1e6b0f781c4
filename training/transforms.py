"""Joint image + label transforms on numpy uint8, ending in tensors.

Every transform is called as `t(image, label, rng=None)` with an RGB uint8 (H, W, 3) image
and a uint8 (H, W) label of training ids, and returns the pair. Labels are only ever resized
with nearest neighbour (no new label values), images bilinearly.

Randomness: random transforms draw from `rng` when given one, else from their own generator,
seeded in `__init__` (`seed=None`: fresh OS entropy). `Compose` passes one generator (the
call's `rng` or its own) to all its members. Two ways to seed in a DataLoader:

- Per sample (preferred; exact resume): give the dataset a `seed`; it calls
  `transform(image, label, rng=np.random.default_rng((seed, epoch, index)))`, so each sample's
  augmentation depends only on (seed, epoch, index), whatever the number of workers.
- Per worker: with the dataset's `seed=None` each worker process starts with a copy of the
  same generator and would repeat the other workers' augmentations. Pass
  `worker_init_fn=seed_worker`: it reseeds the dataset's transform (and numpy / random) from
  `torch.initial_seed()`, which the DataLoader sets to base_seed + worker_id with a fresh
  base_seed per epoch drawn from its `generator`, so seeding that generator makes it
  reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
import random

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601 luma, RGB order

Pair = tuple[np.ndarray, np.ndarray]


def resize_pair(image: np.ndarray, label: np.ndarray, height: int, width: int) -> Pair:
    """Image bilinear, label nearest, to (height, width)."""
    size = (int(width), int(height))  # cv2 takes (W, H)
    return (cv2.resize(image, size, interpolation=cv2.INTER_LINEAR),
            cv2.resize(label, size, interpolation=cv2.INTER_NEAREST))


class RandomTransform:
    """Base of the random transforms: owns a generator, uses the caller's when given."""

    def __init__(self, *, seed: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)

    def reseed(self, seed: int | None) -> None:
        """Restarts the own generator (used by `seed_worker`)."""
        self.rng = np.random.default_rng(seed)

    def generator(self, rng: np.random.Generator | None) -> np.random.Generator:
        return self.rng if rng is None else rng


class RandomScale(RandomTransform):
    """Rescales by a factor drawn uniformly from [min_scale, max_scale]."""

    def __init__(self, min_scale: float, max_scale: float, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        if not 0 < min_scale <= max_scale:
            raise ValueError(f'need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}')
        self.min_scale, self.max_scale = float(min_scale), float(max_scale)

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator | None = None) -> Pair:
        scale = self.generator(rng).uniform(self.min_scale, self.max_scale)
        height, width = label.shape
        return resize_pair(image, label, max(1, round(height * scale)),
                           max(1, round(width * scale)))


class RandomCrop(RandomTransform):
    """Crops (height, width) at a random place; pads bottom / right first when smaller.

    Padding: image 0, label `ignore_index`, which must be the dataset's ignore index (11 for
    CamVid multiclass) so padded pixels are ignored by the loss.
    """

    def __init__(self, height: int, width: int, *, ignore_index: int = 255,
                 seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.height, self.width, self.ignore_index = int(height), int(width), int(ignore_index)

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator | None = None) -> Pair:
        pad_h = max(0, self.height - label.shape[0])
        pad_w = max(0, self.width - label.shape[1])
        if pad_h or pad_w:
            image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=0)
            label = cv2.copyMakeBorder(label, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                       value=self.ignore_index)
        gen = self.generator(rng)
        top = int(gen.integers(0, label.shape[0] - self.height + 1))
        left = int(gen.integers(0, label.shape[1] - self.width + 1))
        rows, cols = slice(top, top + self.height), slice(left, left + self.width)
        return np.ascontiguousarray(image[rows, cols]), np.ascontiguousarray(label[rows, cols])


class RandomHorizontalFlip(RandomTransform):
    """Mirrors image and label left-right with probability p."""

    def __init__(self, p: float = 0.5, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.p = float(p)

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator | None = None) -> Pair:
        if self.generator(rng).random() < self.p:
            return np.ascontiguousarray(image[:, ::-1]), np.ascontiguousarray(label[:, ::-1])
        return image, label


class ColorJitter(RandomTransform):
    """Random brightness, contrast and saturation (image only), torchvision's definitions.

    Each factor is drawn from [max(0, 1 - v), 1 + v]; a value of 0 disables that part and
    draws nothing. Applied in that fixed order, clipped to 0..255 after each step.
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        if min(brightness, contrast, saturation) < 0:
            raise ValueError('jitter strengths must be >= 0')
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator | None = None) -> Pair:
        if not (self.brightness or self.contrast or self.saturation):
            return image, label
        gen = self.generator(rng)
        out = image.astype(np.float32)
        if self.brightness:
            out = np.clip(out * self._factor(gen, self.brightness), 0, 255)
        if self.contrast:
            mean = float((out @ _GREY_WEIGHTS).mean())
            out = np.clip((out - mean) * self._factor(gen, self.contrast) + mean, 0, 255)
        if self.saturation:
            grey = (out @ _GREY_WEIGHTS)[..., None]
            out = np.clip((out - grey) * self._factor(gen, self.saturation) + grey, 0, 255)
        return np.rint(out).astype(np.uint8), label

    @staticmethod
    def _factor(gen: np.random.Generator, strength: float) -> float:
        return float(gen.uniform(max(0.0, 1.0 - strength), 1.0 + strength))


class Resize:
    """Resizes to (height, width): image bilinear, label nearest. Deterministic."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width = int(height), int(width)

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator | None = None) -> Pair:
        del rng  # deterministic; accepted so Compose can pass it to everyone
        if label.shape == (self.height, self.width):
            return image, label
        return resize_pair(image, label, self.height, self.width)


class Normalize:
    """(image / 255 - mean) / std as a float32 (3, H, W) tensor; label as int64 (H, W)."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = np.asarray(mean, np.float32).reshape(3)
        self.std = np.asarray(std, np.float32).reshape(3)
        if (self.std <= 0).any():
            raise ValueError(f'std must be positive, got {std}')

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        del rng
        scaled = (image.astype(np.float32) / 255.0 - self.mean) / self.std
        chw = np.ascontiguousarray(scaled.transpose(2, 0, 1))
        return torch.from_numpy(chw), torch.from_numpy(label.astype(np.int64))


class Compose(RandomTransform):
    """Applies transforms in order, all drawing from one generator.

    The generator is the call's `rng` if given, else this Compose's own (seeded by `seed`).
    """

    def __init__(self, transforms: Sequence, *, seed: int | None = None) -> None:
        super().__init__(seed=seed)
        self.transforms = list(transforms)
        # Normalize returns tensors, which the numpy transforms cannot take.
        if any(isinstance(t, Normalize) for t in self.transforms[:-1]):
            raise ValueError('Normalize must be the last transform')

    def __call__(self, image: np.ndarray, label: np.ndarray,
                 rng: np.random.Generator | None = None) -> tuple:
        gen = self.generator(rng)
        for transform in self.transforms:
            image, label = transform(image, label, rng=gen)
        return image, label

    def reseed(self, seed: int | None) -> None:
        super().reseed(seed)
        for i, transform in enumerate(self.transforms):
            if isinstance(transform, RandomTransform):
                # Distinct streams for members called on their own; Compose uses its own.
                transform.reseed(None if seed is None else (seed, i))

    def __repr__(self) -> str:
        return f'Compose({[type(t).__name__ for t in self.transforms]})'


def train_transform(crop: tuple[int, int], *, scale: tuple[float, float] | None = (0.5, 2.0),
                    flip: bool = True, jitter: float = 0.0,
                    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                    ignore_index: int = 255, base_size: tuple[int, int] | None = None,
                    seed: int | None = None) -> Compose:
    """Resize to base_size (optional) -> random scale -> crop -> flip -> jitter -> normalize.

    Args:
        crop: (H, W) of the output; smaller inputs are padded (label with `ignore_index`).
        scale: (min, max) random scale factor, or None for none.
        flip: Random horizontal flips with p=0.5.
        jitter: Brightness, contrast and saturation strength (0 = off).
        mean: Per-channel RGB mean, 0..1 scale.
        std: Per-channel RGB std, 0..1 scale.
        ignore_index: The dataset's ignore index (`dataset.ignore_index`; 11 for CamVid
            multiclass) for padded label pixels.
        base_size: Optional (H, W) every input is resized to first, e.g. (360, 480) to put
            frames of mixed sizes on CamVid's scale.
        seed: Seed of the Compose's own generator (unused when the dataset passes `rng`).
    """
    steps: list = []
    if base_size is not None:
        steps.append(Resize(*base_size))
    if scale is not None and tuple(scale) != (1.0, 1.0):
        steps.append(RandomScale(*scale))
    steps.append(RandomCrop(*crop, ignore_index=ignore_index))
    if flip:
        steps.append(RandomHorizontalFlip(0.5))
    if jitter:
        steps.append(ColorJitter(jitter, jitter, jitter))
    steps.append(Normalize(mean, std))
    return Compose(steps, seed=seed)


def eval_transform(size: tuple[int, int] | None = None, *,
                   mean: Sequence[float] = IMAGENET_MEAN,
                   std: Sequence[float] = IMAGENET_STD) -> Compose:
    """Optional resize to size (H, W) (label nearest), then normalize; no randomness.

    size None keeps the native resolution, the usual way to score a model.
    """
    steps: list = [] if size is None else [Resize(*size)]
    return Compose([*steps, Normalize(mean, std)], seed=0)


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: distinct, reproducible random streams per worker.

    `torch.initial_seed()` in a worker is the loader's base_seed + worker_id. Reseeds numpy's
    and Python's global generators and, if the dataset has a `transform` with `reseed`, the
    transform's own generator (which every worker otherwise inherits in the same state).
    """
    del worker_id  # already folded into torch.initial_seed()
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, 'transform', None) if info is not None else None
    if hasattr(transform, 'reseed'):
        transform.reseed(seed)
