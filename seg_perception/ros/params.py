"""The segmenter node's parameters: declarations with descriptors, validation, and the
frozen config the node is built from."""

from __future__ import annotations

import array
from dataclasses import dataclass, fields
import math

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)
from rclpy.node import Node

from seg_perception.core.backends import BACKEND_NAMES
from seg_perception.core.backends.base import PRECISIONS
from seg_perception.core.ground_grid import GroundGridConfig, camera_homography

TRANSPORTS = ('raw', 'compressed')
RELIABILITIES = ('best_effort', 'reliable')


@dataclass(frozen=True)
class SegmenterNodeConfig:
    """Everything the node reads from its parameters (see config/segmenter.yaml)."""

    model: str = 'fcn_tiny_camvid.onnx'
    backend: str = 'auto'
    precision: str = 'fp16'
    threads: int = 0
    intra_op_spinning: bool = False
    input_transport: str = 'raw'
    qos_reliability: str = 'best_effort'
    qos_depth: int = 10
    overlay_alpha: float = 0.5
    binary_threshold: float = 0.0
    drivable_classes: tuple[str, ...] = ('road',)
    drivable_close_kernel: int = 5
    drivable_open_kernel: int = 5
    drivable_bottom_band: float = 0.1
    drivable_smoothing_frames: int = 1
    # Bird's-eye ~/drivable_grid (seg_perception/core/ground_grid.py has the conventions).
    grid_enabled: bool = False
    grid_frame: str = 'base_footprint'
    grid_resolution: float = 0.1
    grid_x_min: float = 0.0
    grid_x_max: float = 20.0
    grid_y_half_width: float = 10.0
    grid_homography: tuple[float, ...] = (0.0,) * 9  # all zeros: use the camera_* values
    camera_image_width: int = 0
    camera_image_height: int = 0
    camera_fx: float = 0.0
    camera_fy: float = 0.0
    camera_cx: float = 0.0
    camera_cy: float = 0.0
    camera_height: float = 0.0
    camera_pitch: float = 0.0
    camera_x: float = 0.0
    camera_y: float = 0.0
    diagnostics_period: float = 1.0
    autostart: bool = True


# Parameters read only on configure: changing them while configured would not take effect.
LOAD_TIME = frozenset({'model', 'backend', 'precision', 'threads', 'intra_op_spinning',
                       'input_transport',
                       'qos_reliability', 'qos_depth', 'grid_enabled'})
# Parameters that make up the ground grid (runtime-tunable: the grid is rebuilt).
GRID_PARAMETERS = frozenset(f.name for f in fields(SegmenterNodeConfig)
                            if f.name.startswith(('grid_', 'camera_'))) - {'grid_enabled'}
_CHOICES = {'backend': BACKEND_NAMES, 'precision': PRECISIONS, 'input_transport': TRANSPORTS,
            'qos_reliability': RELIABILITIES}
_INT_RANGES = {'threads': (0, 256), 'qos_depth': (1, 100), 'drivable_close_kernel': (0, 101),
               'drivable_open_kernel': (0, 101), 'drivable_smoothing_frames': (1, 60),
               'camera_image_width': (0, 100_000), 'camera_image_height': (0, 100_000)}
_FLOAT_RANGES = {'overlay_alpha': (0.0, 1.0), 'binary_threshold': (-100.0, 100.0),
                 'drivable_bottom_band': (0.01, 1.0), 'diagnostics_period': (0.1, 60.0),
                 'grid_resolution': (0.005, 10.0), 'grid_x_min': (-500.0, 500.0),
                 'grid_x_max': (-500.0, 500.0), 'grid_y_half_width': (0.01, 500.0),
                 'camera_fx': (0.0, 100_000.0), 'camera_fy': (0.0, 100_000.0),
                 'camera_cx': (-100_000.0, 100_000.0), 'camera_cy': (-100_000.0, 100_000.0),
                 'camera_height': (0.0, 100.0), 'camera_pitch': (-1.57, 1.57),
                 'camera_x': (-100.0, 100.0), 'camera_y': (-100.0, 100.0)}
_DESCRIPTIONS = {
    'model': 'Model artefact: ONNX or torch checkpoint with a .yaml sidecar beside it; '
             'a path, or a file name under the package models/ folder.',
    'backend': 'Inference backend: ' + ', '.join(BACKEND_NAMES),
    'precision': 'TensorRT engine precision (fp32, fp16, int8 for Q/DQ graphs); the prebuilt '
                 'engine of that precision is used.',
    'threads': 'CPU threads for inference (0 = library default).',
    'intra_op_spinning': 'ONNX Runtime: idle inference threads spin for the next op instead '
                         'of sleeping. Faster inference with 2+ threads, but the spinning '
                         'takes the cores the node\'s post-processing needs right after.',
    'input_transport': 'raw: subscribe to `image` (Image); compressed: `image/compressed`.',
    'qos_reliability': 'Input QoS reliability (best_effort matches camera drivers).',
    'qos_depth': 'Input QoS history depth. Frames that overflow it are lost unseen; the '
                 'node itself keeps only the newest and counts the rest as dropped.',
    'overlay_alpha': 'Weight of the colour mask in ~/overlay.',
    'binary_threshold': '2-class models: positive where score[1] - score[0] > threshold.',
    'drivable_classes': 'Class names that make up ~/drivable (case-insensitive).',
    'drivable_close_kernel': 'Drivable mask closing kernel, pixels (0/1 = off).',
    'drivable_open_kernel': 'Drivable mask opening kernel, pixels (0/1 = off).',
    'drivable_bottom_band': 'Keep drivable regions touching this bottom fraction of the image.',
    'drivable_smoothing_frames': 'Temporal majority vote over this many frames (1 = off).',
    'grid_enabled': 'Multi-class models: also publish ~/drivable_grid (nav_msgs/OccupancyGrid, '
                    '0 free, 100 not drivable, -1 unseen), the drivable mask projected onto '
                    'the ground plane.',
    'grid_frame': 'Frame of ~/drivable_grid (x forward, y left, on the ground).',
    'grid_resolution': 'Grid cell side, m.',
    'grid_x_min': 'Grid forward extent: from this x in grid_frame, m.',
    'grid_x_max': 'Grid forward extent: up to this x in grid_frame, m.',
    'grid_y_half_width': 'Grid lateral extent: y in [-this, this] in grid_frame, m.',
    'grid_homography': 'Ground -> image homography, 9 values row-major: [u w, v w, w] = '
                       'H [x, y, 1] with (x, y) on the ground in grid_frame (m) and (u, v) '
                       'pixels of a camera_image_width x camera_image_height image. All zeros '
                       '(or empty) = computed from the camera_* intrinsics, height and pitch.',
    'camera_image_width': 'Image width the intrinsics / homography are for, pixels; other '
                          'sizes are scaled (0 = the received images).',
    'camera_image_height': 'Image height the intrinsics / homography are for, pixels '
                           '(0 = the received images).',
    'camera_fx': 'Focal length along x, pixels (grid without grid_homography).',
    'camera_fy': 'Focal length along y, pixels.',
    'camera_cx': 'Principal point x (column), pixels.',
    'camera_cy': 'Principal point y (row), pixels.',
    'camera_height': 'Height of the camera optical centre above the ground, m.',
    'camera_pitch': 'Downward tilt of the optical axis, rad (positive = looking down; no '
                    'roll or yaw: the camera faces +x of grid_frame).',
    'camera_x': 'Camera position over the ground along x of grid_frame, m.',
    'camera_y': 'Camera position over the ground along y of grid_frame, m.',
    'diagnostics_period': 'Seconds between /diagnostics messages.',
    'autostart': 'Configure and activate on start (false: wait for a lifecycle manager).',
}


def declare_parameters(node: Node, defaults: SegmenterNodeConfig | None = None) -> None:
    """Declares every field of SegmenterNodeConfig with a descriptor (and range)."""
    defaults = defaults or SegmenterNodeConfig()
    for field in fields(SegmenterNodeConfig):
        name = field.name
        value = getattr(defaults, name)
        if isinstance(value, tuple):
            value = list(value)
        descriptor = ParameterDescriptor(description=_DESCRIPTIONS[name])
        if name in _CHOICES:
            descriptor.additional_constraints = 'one of: ' + ', '.join(_CHOICES[name])
        if name in _INT_RANGES:
            low, high = _INT_RANGES[name]
            descriptor.integer_range = [IntegerRange(from_value=low, to_value=high, step=1)]
        if name in _FLOAT_RANGES:
            low, high = _FLOAT_RANGES[name]
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=low, to_value=high, step=0.0)]
        if name == 'drivable_classes':
            descriptor.type = ParameterType.PARAMETER_STRING_ARRAY
        if name == 'grid_homography':
            descriptor.type = ParameterType.PARAMETER_DOUBLE_ARRAY
        node.declare_parameter(name, value, descriptor)


def read_config(node: Node) -> SegmenterNodeConfig:
    return SegmenterNodeConfig(**{field.name: config_value(node.get_parameter(field.name).value)
                                  for field in fields(SegmenterNodeConfig)})


def config_value(value):
    """A parameter value as SegmenterNodeConfig holds it: arrays (lists, or array.array from
    the parameter services) as tuples."""
    return tuple(value) if isinstance(value, list | array.array) else value


def ground_grid_config(config: SegmenterNodeConfig) -> GroundGridConfig:
    """The ground grid of `config`: grid_homography, or else one built from the camera_*
    values. Raises ValueError saying which parameters are wrong."""
    try:
        if any(config.grid_homography):
            homography = config.grid_homography
        else:
            homography = tuple(camera_homography(
                fx=config.camera_fx, fy=config.camera_fy, cx=config.camera_cx,
                cy=config.camera_cy, height=config.camera_height, pitch=config.camera_pitch,
                x=config.camera_x, y=config.camera_y).ravel())
        return GroundGridConfig(
            homography, resolution=config.grid_resolution, x_min=config.grid_x_min,
            x_max=config.grid_x_max, y_half_width=config.grid_y_half_width,
            image_width=config.camera_image_width, image_height=config.camera_image_height)
    except ValueError as err:
        raise ValueError(f'drivable grid: {err} (see the grid_* and camera_* '
                         'parameters)') from err


def validate(name: str, value) -> str | None:
    """Returns why `value` is not acceptable for parameter `name`, or None.

    Ranges are enforced by rclpy through the descriptors; this covers what they cannot say.
    """
    if name in _CHOICES and value not in _CHOICES[name]:
        return f'{name} must be one of {", ".join(_CHOICES[name])}, got {value!r}'
    if name == 'model' and not str(value).strip():
        return 'model must name a model file'
    if name == 'drivable_classes' and (not value or any(not str(v).strip() for v in value)):
        return 'drivable_classes must list at least one class name'
    if name == 'grid_frame' and (not str(value).strip() or str(value).startswith('/')):
        return f'grid_frame must name a TF frame (not empty, no leading /), got {value!r}'
    if name == 'grid_homography':
        if len(value) not in (0, 9):
            return ('grid_homography must have 9 values (3x3 row-major, ground -> image) or '
                    f'none, got {len(value)}')
        if not all(math.isfinite(v) for v in value):
            return 'grid_homography values must be finite'
    return None
