"""rclpy nodes: glue between messages and seg_perception.core."""
