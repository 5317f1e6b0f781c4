"""Dataset layouts: real CamVid, and tiny trees in the official formats of the others."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image
import pytest
import torch
from torch.utils.data import DataLoader

from training.datasets import DATASETS, TASKS, SegmentationDataset, build_dataset
from training.datasets.voc import VOC_CLASSES
from training.transforms import eval_transform, seed_worker, train_transform

H, W = 8, 12


def write_rgb(path: Path, seed: int) -> np.ndarray:
    """A random RGB image written with cv2 (PNG or JPG by suffix); returns the RGB array."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    assert cv2.imwrite(str(path), rgb[:, :, ::-1])
    return rgb


def write_grey(path: Path, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), values.astype(np.uint8))


def label_grid(values: list[int]) -> np.ndarray:
    """An (H, W) label holding each value in its own column block, cycling over the width."""
    row = np.array([values[x % len(values)] for x in range(W)], np.uint8)
    return np.tile(row, (H, 1))


def check_mapping(ds: SegmentationDataset, index: int, raw: np.ndarray,
                  expected: dict[int, int]) -> None:
    """The label of item `index` is `expected[raw]` at every pixel."""
    _, label = ds[index]
    assert label.dtype == np.uint8 and label.shape == raw.shape
    for value, train_id in expected.items():
        assert (raw == value).any(), f'test label lacks raw value {value}'
        assert (label[raw == value] == train_id).all(), (value, np.unique(label[raw == value]))
    assert set(np.unique(raw).tolist()) <= set(expected)


# --- CamVid (real data) -----------------------------------------------------------------------


def test_camvid_split_sizes_and_item_format(camvid_root):
    train = build_dataset('camvid', camvid_root, 'train')
    val = build_dataset('camvid', camvid_root, 'val')
    assert len(train) == 367 and len(val) == 101
    assert train.num_classes == 11 and train.ignore_index == 11
    assert train.class_set == 'camvid11' and train.class_names[8] == 'Car'
    # Pairs follow train.txt and match image and label by file name.
    first = (camvid_root / 'train.txt').read_text().split()[0].rsplit('/', 1)[1]
    assert train.pairs[0][0].name == train.pairs[0][1].name == first
    image, label = val[0]
    assert image.shape == (360, 480, 3) and image.dtype == np.uint8
    assert label.shape == (360, 480) and label.dtype == np.uint8
    assert label.max() <= 11


@pytest.fixture(scope='module')
def camvid_rich_frame(camvid_root) -> int:
    """Index of a val frame holding Car, Pedestrian, Bicyclist and void pixels."""
    ds = build_dataset('camvid', camvid_root, 'val')
    for i, (_, label_path) in enumerate(ds.pairs):
        raw = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
        if {8, 9, 10, 11} <= set(np.unique(raw).tolist()):
            return i
    pytest.fail('no CamVid val frame with cars, pedestrians, bicyclists and void')


def test_camvid_multiclass_keeps_ids_and_void_11(camvid_root, camvid_rich_frame):
    ds = build_dataset('camvid', camvid_root, 'val')
    raw = cv2.imread(str(ds.pairs[camvid_rich_frame][1]), cv2.IMREAD_UNCHANGED)
    check_mapping(ds, camvid_rich_frame, raw, {i: i for i in range(12)})


@pytest.mark.parametrize('task, positives', [('human', (9, 10)), ('vehicle', (8,))])
def test_camvid_binary_views(camvid_root, camvid_rich_frame, task, positives):
    ds = build_dataset('camvid', camvid_root, 'val', task=task)
    assert ds.num_classes == 2 and ds.ignore_index == 255 and ds.class_set == f'binary_{task}'
    raw = cv2.imread(str(ds.pairs[camvid_rich_frame][1]), cv2.IMREAD_UNCHANGED)
    expected = {i: int(i in positives) for i in range(11)} | {11: 255}
    check_mapping(ds, camvid_rich_frame, raw, expected)


def test_camvid_with_transform_returns_tensors(camvid_root):
    ds = build_dataset('camvid', camvid_root, 'val', transform=eval_transform((180, 240)))
    image, label = ds[-1]
    assert image.dtype == torch.float32 and image.shape == (3, 180, 240)
    assert label.dtype == torch.int64 and label.shape == (180, 240)
    assert set(label.unique().tolist()) <= set(range(12))


def test_camvid_errors(camvid_root, tmp_path):
    with pytest.raises(FileNotFoundError, match='test'):  # the split is not shipped
        build_dataset('camvid', camvid_root, 'test')
    with pytest.raises(ValueError, match='train, val, test'):
        build_dataset('camvid', camvid_root, 'training')
    with pytest.raises(FileNotFoundError, match=str(tmp_path / 'train')):
        build_dataset('camvid', tmp_path, 'train')


# --- Cityscapes ---------------------------------------------------------------------------------

# Raw labelIds: road 7, sidewalk 8, building 11, person 24, rider 25, car 26, caravan 29,
# trailer 30, bicycle 33, unlabeled 0, 34 (no such id: license plate is -1, never drawn).
CS_RAW = [7, 8, 11, 24, 25, 26, 29, 30, 33, 0, 34]
CS_EXPECTED = {
    'multiclass': {7: 0, 8: 1, 11: 2, 24: 11, 25: 12, 26: 13, 29: 255, 30: 255, 33: 18, 0: 255,
                   34: 255},
    'human': {7: 0, 8: 0, 11: 0, 24: 1, 25: 1, 26: 0, 29: 255, 30: 255, 33: 0, 0: 255, 34: 255},
    'vehicle': {7: 0, 8: 0, 11: 0, 24: 0, 25: 0, 26: 1, 29: 1, 30: 1, 33: 1, 0: 255, 34: 255},
}


@pytest.fixture
def cityscapes_root(tmp_path) -> tuple[Path, np.ndarray]:
    raw = label_grid(CS_RAW)
    for i, (city, frame) in enumerate([('aachen', '000000_000019'), ('bremen', '000001_000019'),
                                       ('aachen', '000002_000019')]):
        write_rgb(tmp_path / 'leftImg8bit' / 'train' / city / f'{city}_{frame}_leftImg8bit.png', i)
        labels = tmp_path / 'gtFine' / 'train' / city
        write_grey(labels / f'{city}_{frame}_gtFine_labelIds.png', np.roll(raw, i, axis=1))
        # The other gtFine files of the official layout must not be picked up.
        write_grey(labels / f'{city}_{frame}_gtFine_instanceIds.png', np.full((H, W), 26))
    return tmp_path, raw


@pytest.mark.parametrize('task', TASKS)
def test_cityscapes_label_mapping(cityscapes_root, task):
    root, raw = cityscapes_root
    ds = build_dataset('cityscapes', root, 'train', task=task)
    assert len(ds) == 3
    assert [p[0].name for p in ds.pairs] == ['aachen_000000_000019_leftImg8bit.png',
                                             'aachen_000002_000019_leftImg8bit.png',
                                             'bremen_000001_000019_leftImg8bit.png']
    check_mapping(ds, 0, raw, CS_EXPECTED[task])
    assert ds.class_set == {'multiclass': 'cityscapes19', 'human': 'binary_human',
                            'vehicle': 'binary_vehicle'}[task]
    assert ds.num_classes == (19 if task == 'multiclass' else 2) and ds.ignore_index == 255


def test_cityscapes_image_is_rgb_and_errors(cityscapes_root, tmp_path):
    root, _ = cityscapes_root
    ds = build_dataset('cityscapes', root, 'train')
    image, _ = ds[0]
    np.testing.assert_array_equal(image, np.random.default_rng(0).integers(
        0, 256, (H, W, 3), dtype=np.uint8))
    assert ds.class_names[11] == 'person'
    with pytest.raises(FileNotFoundError, match='leftImg8bit/val'):
        build_dataset('cityscapes', root, 'val')
    (root / 'gtFine' / 'train' / 'bremen' / 'bremen_000001_000019_gtFine_labelIds.png').unlink()
    with pytest.raises(FileNotFoundError, match='bremen_000001_000019_gtFine_labelIds'):
        build_dataset('cityscapes', root, 'train')


# --- PASCAL VOC 2012 + SBD ----------------------------------------------------------------------

VOC_RAW = [0, 15, 7, 6, 14, 2, 19, 1, 4, 255, 20]
VOC_VEHICLES = (2, 6, 7, 14, 19)


def voc_palette() -> list[int]:
    """The VOC colour map (bit-interleaved), as in the devkit's VOClabelcolormap."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


@pytest.fixture
def voc_root(tmp_path) -> tuple[Path, np.ndarray]:
    voc = tmp_path / 'VOCdevkit' / 'VOC2012'
    raw = label_grid(VOC_RAW)
    ids = ['2007_000032', '2007_000039', '2011_003276']
    for i, image_id in enumerate(ids):
        write_rgb(voc / 'JPEGImages' / f'{image_id}.jpg', i)
        seg = Image.fromarray(np.roll(raw, i, axis=1), mode='P')
        seg.putpalette(voc_palette())
        (voc / 'SegmentationClass').mkdir(parents=True, exist_ok=True)
        seg.save(voc / 'SegmentationClass' / f'{image_id}.png')
        write_grey(voc / 'SegmentationClassAug' / f'{image_id}.png', np.roll(raw, i, axis=1))
    lists = voc / 'ImageSets' / 'Segmentation'
    lists.mkdir(parents=True)
    (lists / 'train.txt').write_text('2007_000032\n2007_000039\n')
    (lists / 'val.txt').write_text('2011_003276\n')
    # DeepLab's list format; DeepLabV3Plus-Pytorch's bare ids are tested below.
    (lists / 'train_aug.txt').write_text(''.join(
        f'/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n' for i in reversed(ids)))
    return tmp_path, raw


def voc_expected(task: str) -> dict[int, int]:
    if task == 'multiclass':
        return {v: v for v in VOC_RAW}
    positives = (15,) if task == 'human' else VOC_VEHICLES
    return {v: 255 if v == 255 else int(v in positives) for v in VOC_RAW}


@pytest.mark.parametrize('task', TASKS)
def test_voc_palette_labels_are_indices(voc_root, task):
    root, raw = voc_root
    ds = build_dataset('voc', root, 'train', task=task)
    assert [p[0].name for p in ds.pairs] == ['2007_000032.jpg', '2007_000039.jpg']
    assert ds.pairs[0][1].parent.name == 'SegmentationClass'
    check_mapping(ds, 0, raw, voc_expected(task))
    # cv2 would have read the palette colours, not the indices: make sure it matters here.
    grey = cv2.imread(str(ds.pairs[0][1]), cv2.IMREAD_GRAYSCALE)
    assert not np.array_equal(grey, raw)
    image, _ = ds[0]
    assert image.shape == (H, W, 3) and image.dtype == np.uint8


@pytest.mark.parametrize('task', TASKS)
def test_voc_sbd_train_aug(voc_root, task):
    root, raw = voc_root
    ds = build_dataset('voc', root / 'VOCdevkit', 'train_aug', task=task)  # root one level in
    assert [p[0].stem for p in ds.pairs] == ['2011_003276', '2007_000039', '2007_000032']
    assert all(p[1].parent.name == 'SegmentationClassAug' for p in ds.pairs)
    check_mapping(ds, 2, raw, voc_expected(task))
    assert ds.num_classes == (21 if task == 'multiclass' else 2) and ds.ignore_index == 255
    assert ds.class_set == (None if task == 'multiclass' else f'binary_{task}')


def test_voc_train_aug_bare_ids_and_missing_list(voc_root):
    root, _ = voc_root
    voc = root / 'VOCdevkit' / 'VOC2012'
    (voc / 'ImageSets' / 'Segmentation' / 'train_aug.txt').write_text('2007_000039\n')
    assert [p[0].stem for p in build_dataset('voc', voc, 'train_aug').pairs] == ['2007_000039']
    (voc / 'ImageSets' / 'Segmentation' / 'train_aug.txt').unlink()
    with pytest.raises(FileNotFoundError, match='train_aug.txt'):
        build_dataset('voc', root, 'train_aug')
    with pytest.raises(FileNotFoundError, match='VOCdevkit/VOC2012/JPEGImages'):
        build_dataset('voc', root / 'elsewhere', 'train')
    assert VOC_CLASSES[15] == 'person' and len(VOC_CLASSES) == 21


# --- ADE20K -------------------------------------------------------------------------------------

# person 13; car 21, bus 81, truck 84, van 103, minibike 117, bicycle 128 (1-based ADE150);
# 0 = other; 3 sky, 77 boat, 150 flag.
ADE_RAW = [0, 13, 21, 81, 84, 103, 117, 128, 3, 77, 150]
ADE_VEHICLES = (21, 81, 84, 103, 117, 128)


@pytest.fixture
def ade_root(tmp_path) -> tuple[Path, np.ndarray]:
    base = tmp_path / 'ADEChallengeData2016'
    raw = label_grid(ADE_RAW)
    for folder, names in (('training', ['ADE_train_00000001', 'ADE_train_00000002']),
                          ('validation', ['ADE_val_00000001'])):
        for i, name in enumerate(names):
            write_rgb(base / 'images' / folder / f'{name}.jpg', i)
            write_grey(base / 'annotations' / folder / f'{name}.png', np.roll(raw, i, axis=1))
    return tmp_path, raw


@pytest.mark.parametrize('task', TASKS)
def test_ade20k_label_mapping(ade_root, task):
    root, raw = ade_root
    ds = build_dataset('ade20k', root, 'train', task=task)
    assert [p[0].name for p in ds.pairs] == ['ADE_train_00000001.jpg', 'ADE_train_00000002.jpg']
    if task == 'multiclass':
        expected = {v: 255 if v == 0 else v - 1 for v in ADE_RAW}
        assert ds.class_set is None and ds.num_classes == 150
        assert ds.class_names[12] == 'person' and ds.class_names[20] == 'car'
    else:
        positives = (13,) if task == 'human' else ADE_VEHICLES
        expected = {v: 255 if v == 0 else int(v in positives) for v in ADE_RAW}
        assert ds.class_set == f'binary_{task}' and ds.num_classes == 2
    check_mapping(ds, 0, raw, expected)


def test_ade20k_split_names(ade_root):
    root, _ = ade_root
    assert len(build_dataset('ade20k', root, 'validation')) == 1
    assert len(build_dataset('ade20k', root / 'ADEChallengeData2016', 'val')) == 1
    with pytest.raises(ValueError, match='training, validation'):
        build_dataset('ade20k', root, 'test')


# --- build_dataset, seeding, DataLoader ---------------------------------------------------------


def test_build_dataset_rejects_unknown_names(tmp_path):
    assert set(DATASETS) == {'camvid', 'cityscapes', 'voc', 'ade20k'}
    with pytest.raises(ValueError, match='camvid, cityscapes, voc, ade20k'):
        build_dataset('kitti', tmp_path, 'train')
    with pytest.raises(ValueError, match='multiclass, human, vehicle'):
        build_dataset('voc', tmp_path, 'train', task='road')
    with pytest.raises(ValueError, match='train, val, trainval, train_aug'):
        build_dataset('voc', tmp_path, 'test')


def test_per_sample_seed_is_reproducible_and_epoch_dependent(cityscapes_root):
    root, _ = cityscapes_root
    transform = train_transform((6, 6), scale=(0.5, 2.0), jitter=0.3)

    def item(seed, epoch, index):
        ds = build_dataset('cityscapes', root, 'train', transform=transform, seed=seed)
        ds.set_epoch(epoch)
        return ds[index]

    a, b = item(7, 0, 1), item(7, 0, 1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    others = [item(7, 1, 1), item(8, 0, 1), item(7, 0, 2)]
    assert all(not torch.equal(a[0], o[0]) for o in others)


def test_dataloader_workers_get_distinct_streams(cityscapes_root):
    """Without a dataset seed, seed_worker keeps the workers from repeating each other."""
    root, _ = cityscapes_root
    ds = build_dataset('cityscapes', root, 'train', transform=train_transform((4, 4), seed=0))
    ds.pairs = [ds.pairs[0]] * 4  # the same sample: only the augmentation differs
    loader = DataLoader(ds, batch_size=1, num_workers=2, worker_init_fn=seed_worker,
                        generator=torch.Generator().manual_seed(0))
    images = [image for image, _ in loader]
    assert not torch.equal(images[0], images[1])  # items 0 and 1 come from different workers
    loader_again = DataLoader(ds, batch_size=1, num_workers=2, worker_init_fn=seed_worker,
                              generator=torch.Generator().manual_seed(0))
    assert all(torch.equal(a, b) for a, (b, _) in zip(images, loader_again, strict=True))


def test_wrong_label_format_is_reported(cityscapes_root):
    root, _ = cityscapes_root
    ds = build_dataset('cityscapes', root, 'train')
    rgb_label = np.zeros((H, W, 3), np.uint8)
    assert cv2.imwrite(str(ds.pairs[0][1]), rgb_label)
    with pytest.raises(ValueError, match='single-channel'):
        ds[0]
