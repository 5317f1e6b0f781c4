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


PROFILES = ('jetson', 'desktop')
# The three nodes of a deployment: name -> what it is for (its parameters come from the
# profile's YAML, keyed /**/<name>).
PERCEPTION_NODES = {
    'segmenter': 'multi-class labels and the drivable area',
    'human_mask': 'binary human mask',
    'vehicle_mask': 'binary vehicle mask',
}


def perception_nodes(*, profile: str, camera_topic: str = '/camera/image_raw',
                     namespace: str = '', params_file: str | Path | None = None,
                     backend: str = '', precision: str = '', masks: bool = True,
                     use_sim_time: bool = False,
                     log_level: str = 'info') -> list[NodeSpec]:
    """`segmenter` plus the `human_mask` and `vehicle_mask` binary nodes, all on one camera.

    Args:
        profile: 'jetson' (TensorRT) or 'desktop' (ONNX Runtime): config/<profile>.yaml.
        camera_topic, namespace, use_sim_time, log_level: As for segmenter_nodes.
        params_file: Parameter YAML with a section per node (default: the profile's).
        backend, precision: Override the YAML for every node when not empty.
        masks: Also start the two binary mask nodes.
    """
    if profile not in PROFILES:
        raise ValueError(f'profile must be one of {PROFILES}, got {profile!r}')
    if precision and precision not in ('fp32', 'fp16', 'int8'):
        raise ValueError(f'precision must be fp32, fp16 or int8, got {precision!r}')
    params = str(params_file or config_dir() / f'{profile}.yaml')
    names = list(PERCEPTION_NODES) if masks else ['segmenter']
    specs = []
    for name in names:
        (spec,) = segmenter_nodes(camera_topic=camera_topic, namespace=namespace,
                                  params_file=params, backend=backend,
                                  use_sim_time=use_sim_time, log_level=log_level)
        overrides = dict(spec.parameters[1])
        if precision:
            overrides['precision'] = precision
        specs.append(NodeSpec(executable=spec.executable, name=name, namespace=namespace,
                              parameters=[params, overrides], remappings=spec.remappings,
                              arguments=spec.arguments))
    return specs


def rviz_config() -> Path:
    return config_dir() / 'seg_perception.rviz'


# Which task each perception node is scored on by bag_eval.
NODE_TASKS = {'segmenter': 'multiclass', 'human_mask': 'human', 'vehicle_mask': 'vehicle'}


def profile_models(params_file: str | Path) -> dict[str, str]:
    """{node name: model} from a profile YAML's `/**/<node>` sections."""
    import yaml

    data = yaml.safe_load(Path(params_file).read_text()) or {}
    models = {}
    for key, section in data.items():
        name = str(key).rsplit('/', 1)[-1]
        model = (section or {}).get('ros__parameters', {}).get('model')
        if name in PERCEPTION_NODES and model:
            models[name] = model
    return models


def replay_nodes(*, bag: str, report: str = 'replay_report', profile: str = 'desktop',
                 namespace: str = '', params_file: str | Path | None = None,
                 backend: str = '', masks: bool = True, deterministic: bool = False,
                 rate_scale: float = 1.0, use_sim_time: bool = False,
                 log_level: str = 'info') -> list[NodeSpec]:
    """The perception nodes of `profile` on the bag's camera topic, plus `bag_eval` attached
    to them: it plays the bag into them and writes the report (launch/replay.launch.py).

    Args:
        bag: rosbag2 folder made by make_bag (camera on /camera/image_raw).
        report: Report folder.
        deterministic: Wait for every frame's outputs (else recorded rate; drops count).
        rate_scale: Realtime playback speed factor.
        Other arguments: as for perception_nodes.
    """
    if not str(bag).strip():
        raise ValueError('bag must name a rosbag2 folder (make_bag --out ...)')
    if rate_scale <= 0:
        raise ValueError(f'rate_scale must be > 0, got {rate_scale}')
    params = str(params_file or config_dir() / f'{profile}.yaml')
    specs = perception_nodes(profile=profile, namespace=namespace, params_file=params,
                             backend=backend, masks=masks, use_sim_time=use_sim_time,
                             log_level=log_level)
    models = profile_models(params)
    missing = [s.name for s in specs if s.name not in models]
    if missing:
        raise ValueError(f'{params} sets no model for {", ".join(missing)}')
    first, *others = specs
    arguments = ['--bag', str(bag), '--report', str(report), '--model', models[first.name],
                 '--task', NODE_TASKS[first.name], '--attach', '/' + namespace.strip('/'),
                 '--rate-scale', str(rate_scale)]
    for spec in others:
        arguments += ['--extra', f'{NODE_TASKS[spec.name]}={models[spec.name]}']
    if deterministic:
        arguments.append('--deterministic')
    if use_sim_time:
        arguments.append('--use-sim-time')
    return specs + [NodeSpec(executable='bag_eval', name='bag_eval', namespace=namespace,
                             arguments=arguments)]
