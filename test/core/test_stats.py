import math
import threading

import pytest

from seg_perception.core.stats import FrameStats, LatestSlot, RateMeter, percentiles


def test_latest_slot_keeps_only_the_newest_and_reports_replacements():
    slot = LatestSlot()
    assert slot.put('a') is False
    assert slot.put('b') is True          # 'a' was never taken: dropped
    assert slot.take(0.0) == 'b'
    assert slot.take(0.01) is None
    slot.put('c')
    slot.clear()
    assert slot.take(0.0) is None


def test_latest_slot_wakes_a_waiting_taker():
    slot = LatestSlot()
    got = []
    taker = threading.Thread(target=lambda: got.append(slot.take(5.0)))
    taker.start()
    slot.put('frame')
    taker.join(2.0)
    assert got == ['frame']


def test_rate_meter_over_its_window():
    meter = RateMeter(window_s=2.0)
    for t in (0.0, 0.1, 0.2, 0.3, 0.4):
        meter.tick(t)
    assert meter.rate(0.4) == pytest.approx(10.0)
    assert meter.rate(10.0) == 0.0         # everything aged out


def test_frame_stats_counts_and_percentiles():
    now = [0.0]
    stats = FrameStats(latency_window=100, clock=lambda: now[0],
                       rejection_kinds=('step', 'corrupt'))
    for i in range(101):
        now[0] = i * 0.1
        stats.on_received(dropped_previous=i % 2 == 1)
        stats.on_processed(latency_ms=i, processing_ms=2 * i, inference_ms=1.0, wait_ms=0.5)
    stats.on_rejected('step', 'bad step')
    stats.on_rejected('step', 'worse step')
    stats.on_rejected('encoding', 'yuv')
    stats.on_error('RuntimeError: boom')
    snap = stats.snapshot()
    assert snap['frames_received'] == 101 and snap['frames_dropped'] == 50
    assert snap['frames_processed'] == 101 and snap['frames_rejected'] == 3
    # Every declared kind is reported, zero or not; an undeclared one once it happens.
    assert (snap['rejected_step'], snap['rejected_corrupt'], snap['rejected_encoding']) == (
        2, 0, 1)
    assert snap['errors'] == 1 and snap['last_error'] == 'RuntimeError: boom'
    assert snap['last_rejection'] == 'yuv'
    assert snap['input_rate_hz'] == pytest.approx(10.0)
    # The window holds the last 100 latencies, 1..100 ms.
    assert snap['latency_p50_ms'] == pytest.approx(50.5)
    assert snap['processing_p99_ms'] == pytest.approx(2 * 99.01)


def test_percentiles_of_nothing_are_nan():
    assert all(math.isnan(v) for v in percentiles([], (50, 99)))
