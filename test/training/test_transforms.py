"""Joint image + label transforms: padding, nearest labels, flips, normalisation, seeding."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.transforms import (
    ColorJitter,
    Compose,
    Normalize,
    RandomCrop,
    RandomHorizontalFlip,
    RandomScale,
    Resize,
    eval_transform,
    train_transform,
)


def sample(height: int = 20, width: int = 30, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A random RGB image and a blocky label using only the values {0, 3, 7, 11}."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    blocks = rng.choice(np.array([0, 3, 7, 11], np.uint8), (height // 5 + 1, width // 5 + 1))
    label = np.kron(blocks, np.ones((5, 5), np.uint8))[:height, :width]
    return image, np.ascontiguousarray(label)


def test_crop_pads_label_with_ignore_and_image_with_zero():
    image = np.full((4, 5, 3), 200, np.uint8)
    label = np.full((4, 5), 3, np.uint8)
    out_image, out_label = RandomCrop(6, 7, ignore_index=11, seed=0)(image, label)
    assert out_image.shape == (6, 7, 3) and out_label.shape == (6, 7)
    # Padding goes bottom / right, so the input sits at the top-left corner.
    assert (out_image[:4, :5] == 200).all() and (out_label[:4, :5] == 3).all()
    assert (out_image[4:] == 0).all() and (out_image[:, 5:] == 0).all()
    assert (out_label[4:] == 11).all() and (out_label[:, 5:] == 11).all()


def test_crop_takes_the_same_window_of_image_and_label():
    height, width = 12, 16
    grid = np.arange(height * width, dtype=np.int64).reshape(height, width)
    image = np.stack([grid % 256, grid // 256, np.zeros_like(grid)], -1).astype(np.uint8)
    label = (grid % 251).astype(np.uint8)  # distinct per pixel: locates the window
    windows = set()
    for seed in range(8):
        out_image, out_label = RandomCrop(5, 7, seed=seed)(image, label)
        flat = int(out_image[0, 0, 0]) + 256 * int(out_image[0, 0, 1])
        top, left = divmod(flat, width)
        windows.add((top, left))
        np.testing.assert_array_equal(out_image, image[top:top + 5, left:left + 7])
        np.testing.assert_array_equal(out_label, label[top:top + 5, left:left + 7])
    assert len(windows) > 1  # the offset is random


@pytest.mark.parametrize('seed', range(6))
def test_scale_keeps_only_original_label_values(seed):
    image, label = sample(seed=seed)
    out_image, out_label = RandomScale(0.5, 2.0, seed=seed)(image, label)
    scale = out_label.shape[0] / label.shape[0]
    assert 0.5 - 0.05 <= scale <= 2.0 + 0.05
    assert out_image.shape[:2] == out_label.shape and out_image.dtype == np.uint8
    assert abs(out_label.shape[1] / label.shape[1] - scale) < 0.05  # aspect ratio kept
    assert set(np.unique(out_label).tolist()) <= {0, 3, 7, 11}


def test_image_is_bilinear_label_is_nearest():
    image = np.zeros((2, 2, 3), np.uint8)
    image[:, 1] = 200
    label = np.array([[0, 7], [0, 7]], np.uint8)
    out_image, out_label = Resize(2, 8)(image, label)
    assert len(np.unique(out_image)) > 2  # interpolated intermediate values
    assert set(np.unique(out_label).tolist()) == {0, 7}


def test_flip_flips_both():
    image, label = sample()
    flipped = RandomHorizontalFlip(p=1.0)(image, label)
    np.testing.assert_array_equal(flipped[0], image[:, ::-1])
    np.testing.assert_array_equal(flipped[1], label[:, ::-1])
    kept = RandomHorizontalFlip(p=0.0)(image, label)
    np.testing.assert_array_equal(kept[0], image)
    np.testing.assert_array_equal(kept[1], label)


def test_color_jitter_changes_image_only():
    image, label = sample()
    out_image, out_label = ColorJitter(0.4, 0.4, 0.4, seed=1)(image, label)
    assert out_image.dtype == np.uint8 and out_image.shape == image.shape
    assert not np.array_equal(out_image, image)
    assert out_label is label
    same, _ = ColorJitter(0.0, 0.0, 0.0)(image, label)
    assert same is image


def test_color_jitter_brightness_factor():
    image = np.full((2, 2, 3), 100, np.uint8)
    rng_seed = 3
    factor = np.random.default_rng(rng_seed).uniform(0.5, 1.5)
    out, _ = ColorJitter(brightness=0.5)(image, np.zeros((2, 2), np.uint8),
                                         rng=np.random.default_rng(rng_seed))
    assert (out == round(100 * factor)).all()


def test_normalize_to_tensors():
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 255, 0, 128
    label = np.array([[0, 1, 255], [11, 3, 2]], np.uint8)
    out_image, out_label = Normalize()(image, label)
    assert out_image.dtype == torch.float32 and out_image.shape == (3, 2, 3)
    assert out_label.dtype == torch.int64 and out_label.shape == (2, 3)
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    for channel, value in enumerate(expected):
        assert torch.allclose(out_image[channel], torch.tensor(value), atol=1e-5)
    assert out_label.tolist() == [[0, 1, 255], [11, 3, 2]]
    custom, _ = Normalize(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))(image, label)
    assert custom[0, 0, 0].item() == pytest.approx(1.0)


def test_train_transform_same_seed_same_output():
    image, label = sample(40, 60)
    outs = [train_transform((16, 16), jitter=0.2, ignore_index=11, seed=s)(image, label)
            for s in (5, 5, 6)]
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])
    assert not torch.equal(outs[0][0], outs[2][0])
    assert outs[0][0].shape == (3, 16, 16) and outs[0][1].shape == (16, 16)
    assert set(outs[0][1].unique().tolist()) <= {0, 3, 7, 11}
    # An explicit rng overrides the Compose's own generator.
    a = train_transform((16, 16), seed=1)(image, label, rng=np.random.default_rng(9))
    b = train_transform((16, 16), seed=2)(image, label, rng=np.random.default_rng(9))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_train_transform_pads_small_inputs_with_ignore():
    image, label = sample(10, 10)
    _, out_label = train_transform((24, 24), scale=None, flip=False, ignore_index=11,
                                   seed=0)(image, label)
    assert out_label.shape == (24, 24)
    assert (out_label[10:] == 11).all() and (out_label[:, 10:] == 11).all()


def test_train_transform_base_size():
    image, label = sample(20, 30)
    steps = train_transform((8, 8), base_size=(36, 48)).transforms
    assert isinstance(steps[0], Resize) and (steps[0].height, steps[0].width) == (36, 48)
    assert isinstance(steps[-1], Normalize)


def test_eval_transform_resizes_label_nearest():
    image, label = sample(20, 30)
    out_image, out_label = eval_transform((13, 17))(image, label)
    assert out_image.shape == (3, 13, 17) and out_label.shape == (13, 17)
    assert set(out_label.unique().tolist()) <= {0, 3, 7, 11}
    native_image, native_label = eval_transform()(image, label)
    assert native_image.shape == (3, 20, 30)
    assert native_label.tolist() == label.tolist()


def test_compose_rejects_normalize_before_the_end():
    with pytest.raises(ValueError, match='last'):
        Compose([Normalize(), Resize(4, 4)])
