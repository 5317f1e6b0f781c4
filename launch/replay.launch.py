"""ros2 launch seg_perception replay.launch.py bag:=BAG [report:=DIR] [profile:=desktop|jetson]
[deterministic:=true] [masks:=false] [rviz:=true]: the perception nodes on the bag's camera,
bag_eval playing the bag into them and writing the report (see README, bag evaluation)."""

from seg_perception.launch_description import generate_replay


def generate_launch_description():
    return generate_replay()
