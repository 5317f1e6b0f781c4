"""ros2 launch seg_perception segmenter.launch.py camera_topic:=/camera/image_raw

Starts the `segmenter` node; the node list comes from seg_perception.launch_config.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from seg_perception.launch_config import segmenter_nodes

ARGUMENTS = {
    'camera_topic': ('/camera/image_raw', 'Input image topic'),
    'namespace': ('', 'Namespace of the node'),
    'params_file': ('', 'Parameter YAML (default: config/segmenter.yaml)'),
    'model': ('', 'Model artefact (overrides the YAML)'),
    'backend': ('', 'auto | onnxruntime | torch | tensorrt (overrides the YAML)'),
    'input_transport': ('', 'raw | compressed (overrides the YAML)'),
    'use_sim_time': ('false', 'Use /clock'),
    'log_level': ('info', 'debug | info | warn | error | fatal'),
}


def _nodes(context):
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    specs = segmenter_nodes(
        camera_topic=value['camera_topic'], namespace=value['namespace'],
        params_file=value['params_file'] or None, model=value['model'],
        backend=value['backend'], input_transport=value['input_transport'],
        use_sim_time=value['use_sim_time'].lower() == 'true', log_level=value['log_level'])
    return [Node(package=s.package, executable=s.executable, name=s.name,
                 namespace=s.namespace, parameters=s.parameters, remappings=s.remappings,
                 arguments=s.arguments, output='screen') for s in specs]


def generate_launch_description():
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=text)
         for name, (default, text) in ARGUMENTS.items()]
        + [OpaqueFunction(function=_nodes)])
