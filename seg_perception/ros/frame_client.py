"""A client of a running segmenter: publishes camera frames into its namespace, records what
comes back by output name, and reads its /diagnostics. Used by the demo, the benchmarks and
the tests (bag replay builds on it too)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
import contextlib
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image

from seg_perception.core.outputs import OUTPUT_NAMES

OUTPUTS = OUTPUT_NAMES


@contextlib.contextmanager
def spinning_node(name: str) -> Iterator[Node]:
    """rclpy initialised, a node spun by a single-threaded executor on a background thread;
    on exit the executor stops and its thread is joined before the node and rclpy go away
    (a thread still inside spin at interpreter exit aborts the process)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    rclpy.init()
    node = rclpy.create_node(name)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, name=f'{name}-spin', daemon=True)
    thread.start()
    try:
        yield node
    finally:
        executor.shutdown()
        thread.join(timeout=5.0)
        node.destroy_node()
        rclpy.shutdown()


class FrameClient:
    """Publishes to `<namespace>/image` (and `/image/compressed`), listens to
    `<namespace>/<node_name>/<output>`. Callbacks run on whatever executor spins `node`."""

    def __init__(self, node: Node, namespace: str, node_name: str = 'segmenter',
                 depth: int = 50):
        self.node = node
        self.prefix = f'{namespace.rstrip("/")}/{node_name}'
        self.depth = depth
        reliable = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = node.create_publisher(Image, f'{namespace}/image', reliable)
        self.compressed_pub = node.create_publisher(
            CompressedImage, f'{namespace}/image/compressed', reliable)
        self.lock = threading.Lock()
        self.received: dict[str, list] = defaultdict(list)
        self.arrival: dict[tuple[str, int, int], float] = {}
        self.diagnostics: list[dict[str, str]] = []
        self.subs = []

    def subscribe(self, *outputs: str) -> None:
        for output in outputs:
            self.subs.append(self.node.create_subscription(
                Image, f'{self.prefix}/{output}',
                lambda msg, o=output: self._record(o, msg), self.depth))

    def subscribe_diagnostics(self) -> None:
        self.subs.append(self.node.create_subscription(
            DiagnosticArray, '/diagnostics', self._on_diagnostics, 10))

    def _record(self, output: str, msg: Image) -> None:
        now = time.time()
        with self.lock:
            self.received[output].append(msg)
            self.arrival[(output, msg.header.stamp.sec, msg.header.stamp.nanosec)] = now

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.hardware_id == self.prefix:
                with self.lock:
                    self.diagnostics.append({kv.key: kv.value for kv in status.values})

    def by_stamp(self, output: str, sec: int, nanosec: int | None = None) -> list[Image]:
        return [m for m in self.received[output] if m.header.stamp.sec == sec
                and (nanosec is None or m.header.stamp.nanosec == nanosec)]

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.arrival.clear()
            self.diagnostics.clear()

    def wait_for(self, predicate, timeout: float = 20.0, what: str = 'condition'):
        """Polls `predicate(self)` (under the lock) until truthy; raises AssertionError."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                result = predicate(self)
            if result:
                return result
            time.sleep(0.002)
        raise AssertionError(f'timed out after {timeout} s waiting for {what}')

    def wait_connected(self, compressed: bool = False, timeout: float = 30.0) -> None:
        """Waits until the node subscribes to our input and publishes every watched output."""
        pub = self.compressed_pub if compressed else self.image_pub
        topics = [s.topic_name for s in self.subs if s.msg_type is Image]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pub.get_subscription_count() > 0 and all(
                    self.node.count_publishers(t) > 0 for t in topics):
                time.sleep(0.3)  # let both sides finish matching the endpoints
                return
            time.sleep(0.05)
        raise AssertionError(f'node {self.prefix} did not connect within {timeout} s')

    def last_diagnostics(self, timeout: float = 5.0) -> dict[str, str]:
        """The next /diagnostics status of the node (waits for a fresh one)."""
        with self.lock:
            self.diagnostics.clear()
        return self.wait_for(lambda c: c.diagnostics and c.diagnostics[-1], timeout,
                             'diagnostics')

    def close(self) -> None:
        for sub in self.subs:
            self.node.destroy_subscription(sub)
        self.subs = []
        self.node.destroy_publisher(self.image_pub)
        self.node.destroy_publisher(self.compressed_pub)
