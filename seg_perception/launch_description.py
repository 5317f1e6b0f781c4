"""launch_ros glue behind launch/*.launch.py.

Imports launch / launch_ros, so it only loads on a ROS install; the decisions (which nodes,
which parameters) live in seg_perception.launch_config, which is tested without them.
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from seg_perception.launch_config import (
    NodeSpec,
    perception_nodes,
    replay_nodes,
    rviz_config,
    segmenter_nodes,
)

ARGUMENTS = {
    'camera_topic': ('/camera/image_raw', 'Input image topic'),
    'namespace': ('', 'Namespace of the nodes'),
    'params_file': ('', 'Parameter YAML (default: the launch file\'s config/*.yaml)'),
    'model': ('', 'Model artefact (overrides the YAML)'),
    'input_transport': ('', 'raw | compressed (overrides the YAML)'),
    'backend': ('', 'auto | onnxruntime | torch | tensorrt (overrides the YAML)'),
    'precision': ('', 'fp32 | fp16 | int8 TensorRT engines (overrides the YAML)'),
    'masks': ('true', 'Also start human_mask and vehicle_mask'),
    'rviz': ('false', 'Open rviz2 with config/seg_perception.rviz'),
    'use_sim_time': ('false', 'Use /clock'),
    'log_level': ('info', 'debug | info | warn | error | fatal'),
    'bag': ('', 'rosbag2 folder to replay (make_bag --out ...)'),
    'report': ('replay_report', 'Report folder written by bag_eval'),
    'profile': ('desktop', 'desktop (ONNX Runtime) | jetson (TensorRT): config/<profile>.yaml'),
    'deterministic': ('false', 'Wait for every frame\'s outputs instead of the recorded rate'),
    'rate_scale': ('1.0', 'Realtime playback speed factor'),
}


def _is_true(text: str) -> bool:
    return text.strip().lower() in ('true', '1', 'yes')


def _to_nodes(specs: list[NodeSpec]) -> list[Node]:
    return [Node(package=s.package, executable=s.executable, name=s.name,
                 namespace=s.namespace, parameters=s.parameters, remappings=s.remappings,
                 arguments=s.arguments, output='screen') for s in specs]


def _describe(names: tuple[str, ...], make_specs) -> list:
    """Declares the arguments `names`, then builds the nodes from their values."""

    def nodes(context):
        value = {name: LaunchConfiguration(name).perform(context) for name in names}
        return _to_nodes(make_specs(value))

    return ([DeclareLaunchArgument(name, default_value=ARGUMENTS[name][0],
                                   description=ARGUMENTS[name][1]) for name in names]
            + [OpaqueFunction(function=nodes)])


def generate_segmenter() -> LaunchDescription:
    """The `segmenter` node alone with config/segmenter.yaml (launch/segmenter.launch.py)."""
    names = ('camera_topic', 'namespace', 'params_file', 'model', 'backend',
             'input_transport', 'use_sim_time', 'log_level')
    return LaunchDescription(_describe(names, lambda v: segmenter_nodes(
        camera_topic=v['camera_topic'], namespace=v['namespace'],
        params_file=v['params_file'] or None, model=v['model'], backend=v['backend'],
        input_transport=v['input_transport'], use_sim_time=_is_true(v['use_sim_time']),
        log_level=v['log_level'])))


def generate_replay() -> LaunchDescription:
    """The perception nodes plus bag_eval replaying a bag into them (replay.launch.py)."""
    names = ('bag', 'report', 'profile', 'namespace', 'params_file', 'backend', 'masks',
             'deterministic', 'rate_scale', 'rviz', 'use_sim_time', 'log_level')
    rviz = Node(package='rviz2', executable='rviz2', arguments=['-d', str(rviz_config())],
                condition=IfCondition(LaunchConfiguration('rviz')), output='screen')
    return LaunchDescription(_describe(names, lambda v: replay_nodes(
        bag=v['bag'], report=v['report'], profile=v['profile'], namespace=v['namespace'],
        params_file=v['params_file'] or None, backend=v['backend'],
        masks=_is_true(v['masks']), deterministic=_is_true(v['deterministic']),
        rate_scale=float(v['rate_scale']), use_sim_time=_is_true(v['use_sim_time']),
        log_level=v['log_level'])) + [rviz])


def generate(profile: str) -> LaunchDescription:
    """The launch description of a deployment profile ('jetson' or 'desktop')."""
    names = ('camera_topic', 'namespace', 'params_file', 'backend', 'precision', 'masks',
             'rviz', 'use_sim_time', 'log_level')
    rviz = Node(package='rviz2', executable='rviz2', arguments=['-d', str(rviz_config())],
                condition=IfCondition(LaunchConfiguration('rviz')), output='screen')
    return LaunchDescription(_describe(names, lambda v: perception_nodes(
        profile=profile, camera_topic=v['camera_topic'], namespace=v['namespace'],
        params_file=v['params_file'] or None, backend=v['backend'],
        precision=v['precision'], masks=_is_true(v['masks']),
        use_sim_time=_is_true(v['use_sim_time']), log_level=v['log_level'])) + [rviz])
