"""ros2 launch seg_perception desktop.launch.py [camera_topic:=...] [rviz:=true]:
segmenter + human_mask + vehicle_mask on ONNX Runtime (config/desktop.yaml)."""

from seg_perception.launch_description import generate


def generate_launch_description():
    return generate('desktop')
