"""Plays a bag's camera frames into a running segmenter over DDS and collects its outputs.

The recorded messages are published as they are in the bag (serialised CDR bytes, so stamps,
encodings and pixels are exactly the recorded ones); outputs are matched to frames by header
stamp. Two pacings:

- realtime: frames leave at their recorded spacing (divided by `rate_scale`) whatever the node
  does, as a camera would send them; what the node drops is lost, as on the robot.
- deterministic: each frame waits for the node's outputs of the previous one, so every frame
  is processed. A frame still without every output after `resend_after` seconds is published
  again (reliable QoS cannot help a message sent while an endpoint was still matching; the
  node answering twice is harmless, as only the first output per stamp counts); one without
  them after `timeout` counts as dropped. Both are reported.

With `use_sim_time`, a rosgraph_msgs/Clock carrying the frame's stamp is published before
each frame (the node must run with use_sim_time:=true).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage, Image

from seg_perception.core.bagio import BagFrame

# Realtime pacing replays recorded gaps up to this long (a 1 s sequence break stays 1 s;
# an hour-long pause in a recording does not stall the evaluation).
MAX_GAP_S = 2.0


@dataclass
class Received:
    """Outputs of one frame: (node, output name) -> (message, wall-clock arrival)."""

    outputs: dict[tuple[str, str], tuple[Image, float]] = field(default_factory=dict)

    def get(self, node_fqn: str, output: str) -> tuple[Image, float] | None:
        return self.outputs.get((node_fqn, output))


class BagPlayer:
    """Publishes frames on `input_topic`, listens to `<node>/<output>` of every target node
    (several nodes on one camera are replayed together, as they run on the robot)."""

    def __init__(self, node: Node, input_topic: str, targets: dict[str, tuple[str, ...]],
                 compressed: bool, use_sim_time: bool = False, depth: int = 100):
        self.node = node
        self.targets = {fqn.rstrip('/'): outputs for fqn, outputs in targets.items()}
        self.expected = sum(len(o) for o in self.targets.values())
        reliable = QoSProfile(depth=depth, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = node.create_publisher(CompressedImage if compressed else Image, input_topic,
                                         reliable)
        self.clock_pub = node.create_publisher(Clock, '/clock', 10) if use_sim_time else None
        self.lock = threading.Lock()
        self.received: dict[int, Received] = {}
        self.sent_at: dict[int, float] = {}
        self.recorded: list[tuple[str, str, int, bytes]] = []
        self.record = False
        self.diagnostics: dict[str, dict[str, str]] = {}
        self.subs = [node.create_subscription(
            Image, f'{fqn}/{name}', lambda msg, f=fqn, n=name: self._on_output(f, n, msg),
            depth) for fqn, outputs in self.targets.items() for name in outputs]
        self.subs.append(node.create_subscription(DiagnosticArray, '/diagnostics',
                                                  self._on_diagnostics, 10))

    def _on_output(self, fqn: str, name: str, msg: Image) -> None:
        now = time.time()
        stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        with self.lock:
            self.received.setdefault(stamp, Received()).outputs.setdefault((fqn, name),
                                                                           (msg, now))
            if self.record:
                self.recorded.append((f'{fqn}/{name}', 'sensor_msgs/msg/Image', stamp,
                                      bytes(serialize_message(msg))))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.hardware_id in self.targets:
                with self.lock:
                    self.diagnostics[status.hardware_id] = {kv.key: kv.value
                                                            for kv in status.values}

    def wait_connected(self, timeout: float = 30.0) -> None:
        """Until every node subscribes to the input and publishes every watched output."""
        deadline = time.monotonic() + timeout
        topics = [f'{fqn}/{name}' for fqn, outputs in self.targets.items() for name in outputs]
        while time.monotonic() < deadline:
            if self.pub.get_subscription_count() >= len(self.targets) and all(
                    self.node.count_publishers(t) > 0 for t in topics):
                # Let both sides finish matching the endpoints. With 0.3 s a deterministic
                # 3-frame replay once lost one frame at one of three nodes in CI (which frame
                # is not known; a frame published before matching completes is one cause).
                # Deterministic replays also re-send a frame that gets no answer (play()).
                time.sleep(1.0)
                return
            time.sleep(0.05)
        raise TimeoutError(f'{", ".join(self.targets)} did not connect to '
                           f'{self.pub.topic_name} and {", ".join(topics)} within '
                           f'{timeout:.0f} s')

    def _publish(self, frame: BagFrame) -> None:
        if self.clock_pub is not None:
            clock = Clock()
            clock.clock.sec = frame.stamp_ns // 1_000_000_000
            clock.clock.nanosec = frame.stamp_ns % 1_000_000_000
            self.clock_pub.publish(clock)
        self.sent_at[frame.stamp_ns] = time.time()
        self.pub.publish(frame.raw)  # the recorded CDR bytes, unchanged

    def _complete(self, stamp: int) -> bool:
        with self.lock:
            got = self.received.get(stamp)
            return got is not None and len(got.outputs) == self.expected

    def _missing(self, stamp: int) -> str:
        with self.lock:
            got = self.received.get(stamp, Received()).outputs
        return 'no ' + ', '.join(f'{fqn}/{name}' for fqn, outputs in self.targets.items()
                                 for name in outputs if (fqn, name) not in got)

    def play(self, frames: list[BagFrame], *, deterministic: bool, rate_scale: float = 1.0,
             timeout: float = 10.0, settle: float = 2.0, resend_after: float = 3.0,
             progress: Callable[[int], None] | None = None) -> list[str]:
        """Plays `frames`; returns warnings (in deterministic mode: frames re-sent, and frames
        with outputs missing after `timeout`). A re-sent frame's latency counts from the
        last send."""
        if rate_scale <= 0:
            raise ValueError(f'rate_scale must be > 0, got {rate_scale}')
        if resend_after <= 0:
            raise ValueError(f'resend_after must be > 0, got {resend_after}')
        notes = []
        start_wall = time.monotonic()
        first = frames[0].stamp_ns if frames else 0
        offset = 0.0  # seconds of recorded gaps cut to MAX_GAP_S so far
        previous = first
        for i, frame in enumerate(frames):
            if deterministic:
                self._publish(frame)
                deadline = time.monotonic() + timeout
                resend_at = time.monotonic() + resend_after
                sends = 1
                while not self._complete(frame.stamp_ns) and time.monotonic() < deadline:
                    if time.monotonic() >= resend_at:
                        self._publish(frame)
                        sends += 1
                        resend_at = time.monotonic() + resend_after
                    time.sleep(0.001)
                where = f'frame {i} ({frame.stamp_ns / 1e9:.3f} s)'
                if not self._complete(frame.stamp_ns):
                    notes.append(f'{where}: outputs missing after {timeout:.0f} s '
                                 f'({self._missing(frame.stamp_ns)}; sent {sends}x)')
                elif sends > 1:
                    notes.append(f'{where}: sent {sends}x, no complete answer within '
                                 f'{resend_after:.0f} s of the earlier send')
            else:
                gap = (frame.stamp_ns - previous) / 1e9
                if gap > MAX_GAP_S:
                    offset += gap - MAX_GAP_S
                previous = frame.stamp_ns
                due = start_wall + ((frame.stamp_ns - first) / 1e9 - offset) / rate_scale
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                self._publish(frame)
            if progress:
                progress(i)
        if not deterministic:
            # Outputs still in flight: wait until none has arrived for `settle` seconds.
            last_count, quiet_since = -1, time.monotonic()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                with self.lock:
                    count = sum(len(r.outputs) for r in self.received.values())
                if count != last_count:
                    last_count, quiet_since = count, time.monotonic()
                elif time.monotonic() - quiet_since > settle or all(
                        self._complete(f.stamp_ns) for f in frames):
                    break
                time.sleep(0.02)
        return notes

    def results(self, frame: BagFrame) -> Received | None:
        with self.lock:
            return self.received.get(frame.stamp_ns)

    def close(self) -> None:
        for sub in self.subs:
            self.node.destroy_subscription(sub)
        self.node.destroy_publisher(self.pub)
        if self.clock_pub is not None:
            self.node.destroy_publisher(self.clock_pub)
