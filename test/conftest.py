"""Shared fixtures: ROS isolation, CamVid frames, small exported models."""

from __future__ import annotations

import os
from pathlib import Path
import tempfile

import cv2
import numpy as np
import pytest

from seg_perception.tools.ros_env import apply_ros_environment

REPO = Path(__file__).resolve().parents[1]
CAMVID = Path(os.environ.get('CAMVID_ROOT', REPO.parent / 'shared' / 'datasets' / 'camvid'))

# Isolation before anything initialises rclpy: the shipped Fast DDS profile, localhost
# discovery, a ROS domain per xdist worker and a private log folder.
_WORKER = os.environ.get('PYTEST_XDIST_WORKER', 'gw0')
DOMAIN_ID = 60 + int(_WORKER.removeprefix('gw') or 0)
apply_ros_environment(DOMAIN_ID, Path(tempfile.gettempdir()) / f'seg_perception_test_{_WORKER}'
                      / 'ros_log')


@pytest.fixture(scope='session')
def camvid_root() -> Path:
    if not (CAMVID / 'val').is_dir():
        pytest.skip(f'CamVid not found at {CAMVID} (set CAMVID_ROOT)')
    return CAMVID


def read_rgb(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert image is not None, path
    return np.ascontiguousarray(image[:, :, ::-1])


@pytest.fixture(scope='session')
def val_frames(camvid_root) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Five CamVid val frames from different sequences: (name, RGB image, label)."""
    names = sorted(p.name for p in (camvid_root / 'val').glob('*.png'))
    picked = names[:: max(1, len(names) // 5)][:5]
    return [(n, read_rgb(camvid_root / 'val' / n),
             cv2.imread(str(camvid_root / 'valannot' / n), cv2.IMREAD_GRAYSCALE))
            for n in picked]


def export_tiny(out: Path, num_classes: int, class_set: str, input_size=(180, 240), seed=0):
    import torch

    from seg_perception.models import build_model
    from seg_perception.models.export import export_onnx

    torch.manual_seed(seed)
    model = build_model('fcn_tiny', num_classes=num_classes)
    # Random BN statistics so outputs vary over the image (fresh BN is the identity).
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    model.eval()
    torch.save({'model': model.state_dict()}, out.with_suffix('.pt'))
    return export_onnx(model, out, model_name='fcn_tiny', class_set=class_set,
                       num_classes=num_classes, input_size=input_size)


@pytest.fixture(scope='session')
def model_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp('models')


@pytest.fixture(scope='session')
def camvid_model(model_dir) -> Path:
    """An 11-class fcn_tiny with fixed random weights, ONNX + .pt + sidecar, 180x240 input."""
    return export_tiny(model_dir / 'tiny_camvid.onnx', 11, 'camvid11').path


@pytest.fixture(scope='session')
def binary_model(model_dir) -> Path:
    return export_tiny(model_dir / 'tiny_vehicle.onnx', 2, 'binary_vehicle', seed=1).path
