"""launch_ros glue shared by launch/jetson.launch.py and launch/desktop.launch.py.

Imports launch / launch_ros, so it only loads on a ROS install; the decisions (which nodes,
which parameters) live in seg_perception.launch_config, which is tested without them.
"""

from __future__ import annotations

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from seg_perception.launch_config import perception_nodes, rviz_config

ARGUMENTS = {
    'camera_topic': ('/camera/image_raw', 'Input image topic'),
    'namespace': ('', 'Namespace of the nodes'),
    'params_file': ('', 'Parameter YAML (default: config/<profile>.yaml)'),
    'backend': ('', 'auto | onnxruntime | torch | tensorrt (overrides the YAML)'),
    'precision': ('', 'fp32 | fp16 | int8 TensorRT engines (overrides the YAML)'),
    'masks': ('true', 'Also start human_mask and vehicle_mask'),
    'rviz': ('false', 'Open rviz2 with config/seg_perception.rviz'),
    'use_sim_time': ('false', 'Use /clock'),
    'log_level': ('info', 'debug | info | warn | error | fatal'),
}


def _is_true(text: str) -> bool:
    return text.strip().lower() in ('true', '1', 'yes')


def generate(profile: str) -> LaunchDescription:
    """The launch description of a deployment profile ('jetson' or 'desktop')."""

    def nodes(context):
        value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
        specs = perception_nodes(
            profile=profile, camera_topic=value['camera_topic'],
            namespace=value['namespace'], params_file=value['params_file'] or None,
            backend=value['backend'], precision=value['precision'],
            masks=_is_true(value['masks']), use_sim_time=_is_true(value['use_sim_time']),
            log_level=value['log_level'])
        return [Node(package=s.package, executable=s.executable, name=s.name,
                     namespace=s.namespace, parameters=s.parameters, remappings=s.remappings,
                     arguments=s.arguments, output='screen') for s in specs]

    rviz = Node(package='rviz2', executable='rviz2', arguments=['-d', str(rviz_config())],
                condition=IfCondition(LaunchConfiguration('rviz')), output='screen')
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGUMENTS.items()]
        + [OpaqueFunction(function=nodes), rviz])
