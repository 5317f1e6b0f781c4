"""The node list the launch files start, as plain data (testable without launch_ros).

A launch file evaluates its arguments, calls a function here, and turns each NodeSpec into a
launch_ros Node: all the decisions live in this module, none in the launch files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from seg_perception.core.paths import config_dir

PACKAGE = 'seg_perception'
LOG_LEVELS = ('debug', 'info', 'warn', 'error', 'fatal')


@dataclass(frozen=True)
class NodeSpec:
    """What launch_ros.actions.Node needs for one node."""

    executable: str
    name: str
    namespace: str = ''
    parameters: list = field(default_factory=list)  # YAML paths and dicts, later ones win
    remappings: list[tuple[str, str]] = field(default_factory=list)
    arguments: list[str] = field(default_factory=list)
    package: str = PACKAGE


def segmenter_nodes(*, camera_topic: str = '/camera/image_raw', namespace: str = '',
                    params_file: str | Path | None = None, model: str = '',
                    backend: str = '', input_transport: str = '',
                    use_sim_time: bool = False, log_level: str = 'info') -> list[NodeSpec]:
    """The `segmenter` node reading `camera_topic`.

    Args:
        camera_topic: Image topic; `<camera_topic>/compressed` for compressed input.
        namespace: Namespace of the node (its outputs are `<namespace>/segmenter/...`).
        params_file: Parameter YAML (default: the installed config/segmenter.yaml).
        model, backend, input_transport: Override the YAML when not empty.
        use_sim_time: Take time from /clock (bag replay).
        log_level: One of LOG_LEVELS.
    """
    if log_level not in LOG_LEVELS:
        raise ValueError(f'log_level must be one of {LOG_LEVELS}, got {log_level!r}')
    if not camera_topic.strip():
        raise ValueError('camera_topic must not be empty')
    overrides: dict[str, object] = {'use_sim_time': bool(use_sim_time)}
    for key, value in (('model', model), ('backend', backend),
                       ('input_transport', input_transport)):
        if value:
            overrides[key] = value
    return [NodeSpec(
        executable='segmenter_node',
        name='segmenter',
        namespace=namespace,
        parameters=[str(params_file or config_dir() / 'segmenter.yaml'), overrides],
        remappings=[('image', camera_topic), ('image/compressed', f'{camera_topic}/compressed')],
        arguments=['--ros-args', '--log-level', log_level],
    )]
