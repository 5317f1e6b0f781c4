"""ROS 2 test harness: the node under test runs in its own process (real Fast DDS between
processes); a probe node in the test process publishes camera frames and records outputs."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
import subprocess
import sys
import threading
import time

import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy (ROS 2 wheels) not installed')

from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

OUTPUTS = ('labels', 'color', 'overlay', 'confidence', 'drivable', 'mask')


class NodeProcess:
    """`segmenter_node` in a subprocess, with the test's ROS environment."""

    def __init__(self, namespace: str, params: dict[str, object], name: str = 'segmenter'):
        self.namespace = namespace
        self.name = name
        self.fqn = f'{namespace}/{name}'
        args = [sys.executable, '-m', 'seg_perception.ros.segmenter_node', '--ros-args',
                '-r', f'__ns:={namespace}', '-r', f'__node:={name}']
        for key, value in params.items():
            if isinstance(value, list | tuple):
                value = '[' + ','.join(str(v) for v in value) + ']'
            args += ['-p', f'{key}:={value}']
        self.log = Path(f'/tmp/{namespace.strip("/")}_{name}.log')
        self._log_file = self.log.open('w')
        self.proc = subprocess.Popen(args, stdout=self._log_file, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text()

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode


class Probe:
    """A test node: publishes images into a namespace and records every output message."""

    def __init__(self, node, namespace: str, name: str = 'segmenter'):
        self.node = node
        self.prefix = f'{namespace}/{name}'
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = node.create_publisher(Image, f'{namespace}/image', reliable)
        self.compressed_pub = node.create_publisher(
            CompressedImage, f'{namespace}/image/compressed', reliable)
        self.lock = threading.Lock()
        self.received: dict[str, list] = defaultdict(list)
        self.diagnostics: list = []
        self.subs = []

    def subscribe(self, *outputs: str) -> None:
        for output in outputs:
            self.subs.append(self.node.create_subscription(
                Image, f'{self.prefix}/{output}',
                lambda msg, o=output: self._record(o, msg), 50))

    def subscribe_diagnostics(self) -> None:
        self.subs.append(self.node.create_subscription(
            DiagnosticArray, '/diagnostics', self._on_diag, 10))

    def _record(self, output: str, msg) -> None:
        with self.lock:
            self.received[output].append(msg)

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.hardware_id == self.prefix:
                with self.lock:
                    self.diagnostics.append({kv.key: kv.value for kv in status.values})

    def clear(self) -> None:
        with self.lock:
            self.received.clear()
            self.diagnostics.clear()

    def wait_for(self, predicate, timeout: float = 20.0, what: str = 'condition'):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                result = predicate(self)
            if result:
                return result
            time.sleep(0.01)
        raise AssertionError(f'timed out after {timeout} s waiting for {what}')

    def wait_connected(self, compressed: bool = False, timeout: float = 30.0) -> None:
        pub = self.compressed_pub if compressed else self.image_pub
        topics = [f'{self.prefix}/{s.topic_name.rsplit("/", 1)[-1]}' for s in self.subs
                  if s.msg_type is Image]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pub.get_subscription_count() > 0 and all(
                    self.node.count_publishers(t) > 0 for t in topics):
                time.sleep(0.3)  # let both sides finish matching the endpoints
                return
            time.sleep(0.05)
        raise AssertionError(f'node {self.prefix} did not connect within {timeout} s')

    def last_diagnostics(self, timeout: float = 5.0) -> dict:
        self.clear_diagnostics()
        return self.wait_for(lambda p: p.diagnostics and p.diagnostics[-1], timeout,
                             'diagnostics')

    def clear_diagnostics(self) -> None:
        with self.lock:
            self.diagnostics.clear()

    def close(self) -> None:
        for sub in self.subs:
            self.node.destroy_subscription(sub)
        self.node.destroy_publisher(self.image_pub)
        self.node.destroy_publisher(self.compressed_pub)


@pytest.fixture(scope='session')
def ros_node():
    """rclpy initialised once; one test node spun on a background thread."""
    rclpy.init()
    node = rclpy.create_node('seg_perception_test_probe')
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown()
    node.destroy_node()
    rclpy.shutdown()


@pytest.fixture(scope='module')
def start_node(ros_node):
    """Factory: starts a node process in a fresh namespace and returns (process, probe)."""
    started = []

    def start(namespace: str, params: dict, outputs=('labels',), compressed=False,
              connect=True):
        proc = NodeProcess(namespace, params)
        probe = Probe(ros_node, namespace)
        probe.subscribe(*outputs)
        probe.subscribe_diagnostics()
        started.append((proc, probe))
        try:
            if connect:
                probe.wait_connected(compressed=compressed)
        except AssertionError as err:
            raise AssertionError(f'{err}\nnode output:\n{proc.output()}') from err
        return proc, probe

    yield start
    for proc, probe in started:
        probe.close()
        proc.stop()
