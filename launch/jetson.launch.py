"""ros2 launch seg_perception jetson.launch.py [camera_topic:=...] [precision:=fp16|int8]
[rviz:=true]: segmenter + human_mask + vehicle_mask on TensorRT (config/jetson.yaml)."""

from seg_perception.launch_description import generate


def generate_launch_description():
    return generate('jetson')
