"""ROS-free runtime: pre/post-processing, backends, drivable area, class sets.

Nothing under this package imports rclpy or any *_msgs package, so it is tested with plain
pytest and reused by training and offline evaluation.
"""
