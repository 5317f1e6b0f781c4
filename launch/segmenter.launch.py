"""ros2 launch seg_perception segmenter.launch.py camera_topic:=/camera/image_raw

Starts the `segmenter` node alone (config/segmenter.yaml); arguments: camera_topic,
namespace, params_file, model, backend, input_transport, use_sim_time, log_level.
"""

from seg_perception.launch_description import generate_segmenter


def generate_launch_description():
    return generate_segmenter()
