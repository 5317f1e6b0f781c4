"""PyTorch training stack. Imports seg_perception; never rclpy."""
