"""Test and benchmark harness, not for robots: the segmenter node with a slowed-down and
faulty backend.

The node loads its model exactly as `segmenter_node` does (same parameters, same backend
choice, real ONNX Runtime / torch inference); after configure, its backend is wrapped so that

- every inference takes at least `fault_backend_ms` (the real inference runs first, then the
  remainder is slept: a stand-in for a big model on a small device, without the CPU load), and
- a fraction `fault_error_fraction` of the inferences raise RuntimeError (seeded by
  `fault_seed`, so runs repeat), as a flaky GPU driver or a broken plugin would.

    python -m seg_perception.tools.fault_node --ros-args -p model:=... \\
        -p fault_backend_ms:=100.0 -p fault_error_fraction:=0.05

Used by `seg_perception.tools.overload` and by the fault tests (NodeProcess(module=...)).
"""

from __future__ import annotations

import sys
import threading
import time

import numpy as np
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn

from seg_perception.ros.segmenter_node import SegmenterNode
from seg_perception.ros.segmenter_node import main as node_main

_PARAMETERS = {'fault_backend_ms': 0.0, 'fault_error_fraction': 0.0, 'fault_seed': 0}


class InjectedFault(RuntimeError):
    """Raised by SlowFaultyBackend on the frames it was told to fail."""


class SlowFaultyBackend:
    """Wraps a backend: at least `min_ms` per inference, raises on `error_fraction` of them."""

    def __init__(self, backend, *, min_ms: float, error_fraction: float, seed: int):
        self.inner = backend
        self.name = backend.name
        self.skipped = getattr(backend, 'skipped', ())
        self._min_s = min_ms / 1e3
        self._error_fraction = error_fraction
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self.calls = 0

    def infer(self, batch: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        with self._lock:
            self.calls += 1
            call, fail = self.calls, self._rng.random() < self._error_fraction
        out = self.inner.infer(batch)
        remaining = self._min_s - (time.perf_counter() - start)
        if remaining > 0:
            time.sleep(remaining)
        if fail:
            raise InjectedFault(f'injected backend fault on inference {call}')
        return out

    def describe(self) -> dict[str, str]:
        return {**self.inner.describe(), 'harness': f'fault_node (>= {self._min_s * 1e3:g} ms, '
                                                    f'{self._error_fraction:g} failing)'}


class FaultNode(SegmenterNode):
    """SegmenterNode whose backend is wrapped in SlowFaultyBackend after every configure."""

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        for name, default in _PARAMETERS.items():
            if not self.has_parameter(name):
                self.declare_parameter(name, default)
        result = super().on_configure(state)
        if result == TransitionCallbackReturn.SUCCESS and self._segmenter is not None:
            get = self.get_parameter
            self._segmenter.backend = SlowFaultyBackend(
                self._segmenter.backend, min_ms=float(get('fault_backend_ms').value),
                error_fraction=float(get('fault_error_fraction').value),
                seed=int(get('fault_seed').value))
            self.get_logger().warning(
                f'test harness: {self._segmenter.backend.describe()["harness"]}')
        return result


def main(args: list[str] | None = None) -> int:
    return node_main(args, node_class=FaultNode)


if __name__ == '__main__':
    sys.exit(main(sys.argv))
