"""Newest-frame hand-over, frame counters, rates and latency percentiles (thread-safe,
ROS-free)."""

from __future__ import annotations

from collections import deque
import threading
import time

import numpy as np


class LatestSlot:
    """Holds at most one pending message; a newer one replaces it (and says so)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None

    def put(self, item) -> bool:
        """Stores `item`; returns True if it replaced one that was never taken."""
        with self._cond:
            replaced = self._item is not None
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float):
        with self._cond:
            if self._item is None:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        with self._cond:
            self._item = None


class RateMeter:
    """Events per second over a sliding window of `window_s` seconds."""

    def __init__(self, window_s: float = 5.0):
        self._window = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)

    def rate(self, now: float) -> float:
        while self._times and self._times[0] < now - self._window:
            self._times.popleft()
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], 1e-9)
        return (len(self._times) - 1) / span


class FrameStats:
    """What happened to each input frame, for `/diagnostics`.

    Counters never reset while the node lives; rates and latencies cover recent frames
    (a sliding window of seconds, the last `latency_window` frames). Rejections are also
    counted per kind (`rejected_<kind>`): every kind in `rejection_kinds` is reported, zero
    or not, so a monitor sees a stable set of keys.
    """

    def __init__(self, latency_window: int = 300, clock=time.monotonic,
                 rejection_kinds: tuple[str, ...] = ()):
        self._lock = threading.Lock()
        self._clock = clock
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.rejected = 0
        self.rejected_by_kind: dict[str, int] = dict.fromkeys(rejection_kinds, 0)
        self.errors = 0
        self.last_rejection = ''
        self.last_error = ''
        self._in = RateMeter()
        self._out = RateMeter()
        self._latency: deque[float] = deque(maxlen=latency_window)
        self._processing: deque[float] = deque(maxlen=latency_window)
        self._inference: deque[float] = deque(maxlen=latency_window)
        self._wait: deque[float] = deque(maxlen=latency_window)

    def on_received(self, dropped_previous: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(dropped_previous)
            self._in.tick(self._clock())

    def on_rejected(self, kind: str, reason: str) -> None:
        with self._lock:
            self.rejected += 1
            self.rejected_by_kind[kind] = self.rejected_by_kind.get(kind, 0) + 1
            self.last_rejection = reason

    def on_error(self, error: str) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = error

    def on_processed(self, latency_ms: float, processing_ms: float, inference_ms: float,
                     wait_ms: float) -> None:
        """Args, in ms: header stamp -> last publish, callback -> last publish, backend time,
        and callback -> picked up by the worker."""
        with self._lock:
            self.processed += 1
            self._out.tick(self._clock())
            self._latency.append(latency_ms)
            self._processing.append(processing_ms)
            self._inference.append(inference_ms)
            self._wait.append(wait_ms)

    def snapshot(self) -> dict[str, float | int | str]:
        with self._lock:
            now = self._clock()
            snap: dict[str, float | int | str] = {
                'frames_received': self.received,
                'frames_processed': self.processed,
                'frames_dropped': self.dropped,
                'frames_rejected': self.rejected,
                **{f'rejected_{kind}': n for kind, n in self.rejected_by_kind.items()},
                'errors': self.errors,
                'input_rate_hz': self._in.rate(now),
                'output_rate_hz': self._out.rate(now),
            }
            for name, values in (('latency', self._latency), ('processing', self._processing),
                                 ('inference', self._inference), ('wait', self._wait)):
                p50, p99 = percentiles(values, (50, 99))
                snap[f'{name}_p50_ms'] = p50
                snap[f'{name}_p99_ms'] = p99
            snap['last_rejection'] = self.last_rejection
            snap['last_error'] = self.last_error
            return snap


def percentiles(values, qs) -> tuple[float, ...]:
    """Percentiles of `values` (nan for none)."""
    if not values:
        return tuple(float('nan') for _ in qs)
    return tuple(float(v) for v in np.percentile(np.fromiter(values, float), qs))
