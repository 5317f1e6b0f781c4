"""The transport floor for the node benchmark: a node that does nothing but answer each
`image` with a same-size mono8 `~/labels` (the input header, preallocated zero pixels).

Whatever latency this shows is DDS plus rclpy message conversion, which any Python node
pays; the segmenter's overhead beyond it is what the node itself adds.
"""

from __future__ import annotations

import sys

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from seg_perception.ros.conversions import array_to_image_msg


class EchoNode(Node):
    def __init__(self):
        super().__init__('segmenter')
        self._zeros: dict[tuple[int, int], np.ndarray] = {}
        self._pub = self.create_publisher(Image, '~/labels', 5)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.create_subscription(Image, 'image', self._on_image, qos)

    def _on_image(self, msg: Image) -> None:
        size = (msg.height, msg.width)
        if size not in self._zeros:
            self._zeros[size] = np.zeros(size, np.uint8)
        self._pub.publish(array_to_image_msg(self._zeros[size], msg.header))


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = EchoNode()
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
