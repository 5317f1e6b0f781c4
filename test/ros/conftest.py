"""ROS 2 test harness: the node under test runs in its own process (real Fast DDS between
processes); a probe node in the test process publishes camera frames and records outputs."""

from __future__ import annotations

from pathlib import Path
import tempfile

import pytest

rclpy = pytest.importorskip('rclpy', reason='rclpy (ROS 2 wheels) not installed')

from seg_perception.ros.frame_client import OUTPUTS, FrameClient, spinning_node  # noqa: E402
from seg_perception.tools.node_process import NodeProcess  # noqa: E402

__all__ = ['OUTPUTS', 'NodeProcess', 'node_log']
LOG_DIR = Path(tempfile.gettempdir()) / 'seg_perception_test_nodes'


def node_log(namespace: str) -> Path:
    return LOG_DIR / f'{namespace.strip("/")}.log'


@pytest.fixture(scope='session')
def ros_node():
    """rclpy initialised once; one test node spun on a background thread."""
    with spinning_node('seg_perception_test_probe') as node:
        yield node


@pytest.fixture(scope='module')
def start_node(ros_node):
    """Factory: starts a node process in a fresh namespace and returns (process, probe)."""
    started = []

    def start(namespace: str, params: dict, outputs=('labels',), compressed=False,
              connect=True):
        proc = NodeProcess(namespace, params, node_log(namespace))
        probe = FrameClient(ros_node, namespace)
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
