"""The segmenter node's parameters: declarations with descriptors, validation, and the
frozen config the node is built from."""

from __future__ import annotations

from dataclasses import dataclass, fields

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    ParameterType,
)
from rclpy.node import Node

from seg_perception.core.backends import BACKEND_NAMES
from seg_perception.core.backends.base import PRECISIONS

TRANSPORTS = ('raw', 'compressed')
RELIABILITIES = ('best_effort', 'reliable')


@dataclass(frozen=True)
class SegmenterNodeConfig:
    """Everything the node reads from its parameters (see config/segmenter.yaml)."""

    model: str = 'fcn_tiny_camvid.onnx'
    backend: str = 'auto'
    precision: str = 'fp16'
    threads: int = 0
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
    diagnostics_period: float = 1.0
    autostart: bool = True


# Parameters read only on configure: changing them while configured would not take effect.
LOAD_TIME = frozenset({'model', 'backend', 'precision', 'threads', 'input_transport',
                       'qos_reliability', 'qos_depth'})
_CHOICES = {'backend': BACKEND_NAMES, 'precision': PRECISIONS, 'input_transport': TRANSPORTS,
            'qos_reliability': RELIABILITIES}
_INT_RANGES = {'threads': (0, 256), 'qos_depth': (1, 100), 'drivable_close_kernel': (0, 101),
               'drivable_open_kernel': (0, 101), 'drivable_smoothing_frames': (1, 60)}
_FLOAT_RANGES = {'overlay_alpha': (0.0, 1.0), 'binary_threshold': (-100.0, 100.0),
                 'drivable_bottom_band': (0.01, 1.0), 'diagnostics_period': (0.1, 60.0)}
_DESCRIPTIONS = {
    'model': 'Model artefact: ONNX or torch checkpoint with a .yaml sidecar beside it; '
             'a path, or a file name under the package models/ folder.',
    'backend': 'Inference backend: ' + ', '.join(BACKEND_NAMES),
    'precision': 'TensorRT engine precision (fp32, fp16, int8 for Q/DQ graphs); the prebuilt '
                 'engine of that precision is used.',
    'threads': 'CPU threads for inference (0 = library default).',
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
        node.declare_parameter(name, value, descriptor)


def read_config(node: Node) -> SegmenterNodeConfig:
    values = {}
    for field in fields(SegmenterNodeConfig):
        value = node.get_parameter(field.name).value
        values[field.name] = tuple(value) if isinstance(value, list) else value
    return SegmenterNodeConfig(**values)


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
    return None
