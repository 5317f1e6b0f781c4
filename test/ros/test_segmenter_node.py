"""The segmenter node over real Fast DDS: pixels, headers, newest-frame-only, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from seg_perception.core.segmenter import Segmenter
from seg_perception.ros.conversions import array_to_image_msg, output_array
from test.ros.conftest import OUTPUTS


def image_msg(rgb: np.ndarray, stamp_sec: int, frame_id: str = 'camera_optical',
              encoding: str = 'rgb8') -> Image:
    pixels = rgb[:, :, ::-1] if encoding == 'bgr8' else rgb
    msg = array_to_image_msg(pixels, header_for(stamp_sec, frame_id), encoding)
    return msg


def header_for(stamp_sec: int, frame_id: str):
    from std_msgs.msg import Header

    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = stamp_sec, 123_456_789
    return header


def labels_of(msg: Image) -> np.ndarray:
    assert msg.encoding == 'mono8'
    return output_array(msg)


def by_stamp(probe, output: str, sec: int):
    return probe.by_stamp(output, sec)


@pytest.fixture(scope='module')
def raw_node(start_node, camvid_model):
    return start_node('/t_raw', {'model': str(camvid_model), 'qos_reliability': 'reliable',
                                 'qos_depth': 50},
                      outputs=OUTPUTS[:5])


def test_raw_frame_gives_offline_pixels_with_input_header(raw_node, camvid_model, val_frames):
    _, probe = raw_node
    offline = Segmenter.from_path(camvid_model)
    for i, (name, rgb, _) in enumerate(val_frames[:3]):
        stamp = 1000 + i
        encoding = 'bgr8' if i == 1 else 'rgb8'
        probe.image_pub.publish(image_msg(rgb, stamp, f'cam_{i}', encoding))
        probe.wait_for(lambda p, s=stamp: all(by_stamp(p, o, s) for o in OUTPUTS[:5]),
                       what=f'outputs of {name}')
        expected = offline(rgb)
        labels = by_stamp(probe, 'labels', stamp)[0]
        assert labels.header.frame_id == f'cam_{i}'
        assert labels.header.stamp.nanosec == 123_456_789
        np.testing.assert_array_equal(labels_of(labels), expected.labels)
        for output, encoding_out in (('color', 'rgb8'), ('overlay', 'rgb8'),
                                     ('confidence', 'mono8'), ('drivable', 'mono8')):
            msg = by_stamp(probe, output, stamp)[0]
            assert (msg.height, msg.width, msg.encoding) == (*rgb.shape[:2], encoding_out)
            assert msg.header.frame_id == f'cam_{i}'
        color = output_array(by_stamp(probe, 'color', stamp)[0])
        np.testing.assert_array_equal(color, offline.class_set.palette[expected.labels])
        conf = by_stamp(probe, 'confidence', stamp)[0]
        np.testing.assert_array_equal(labels_of(conf), expected.confidence)
        drivable = labels_of(by_stamp(probe, 'drivable', stamp)[0])
        assert set(np.unique(drivable)) <= {0, 255}


def test_burst_processes_newest_and_counts_drops(raw_node, val_frames):
    _, probe = raw_node
    probe.clear()
    rgb = val_frames[0][1]
    before = probe.last_diagnostics()
    burst = 20
    for i in range(burst):
        probe.image_pub.publish(image_msg(rgb, 2000 + i))
    probe.wait_for(lambda p: by_stamp(p, 'labels', 2000 + burst - 1), what='the newest frame')
    after = probe.wait_for(
        lambda p: p.diagnostics and int(p.diagnostics[-1]['frames_received'])
        - int(before['frames_received']) == burst and p.diagnostics[-1], what='diagnostics')
    processed = int(after['frames_processed']) - int(before['frames_processed'])
    dropped = int(after['frames_dropped']) - int(before['frames_dropped'])
    stamps = sorted(m.header.stamp.sec for m in probe.received['labels'])
    assert processed == len(stamps) < burst
    assert dropped == burst - processed
    assert stamps[-1] == 2000 + burst - 1


MALFORMED = {
    'wrong step': dict(step=100),
    'truncated data': dict(truncate=1000),
    'unknown encoding': dict(encoding='yuv422'),
    'zero size': dict(height=0, width=0, data=b''),
}


@pytest.mark.parametrize('case', list(MALFORMED))
def test_malformed_raw_frame_is_rejected_and_node_keeps_going(raw_node, val_frames, case):
    _, probe = raw_node
    rgb = val_frames[0][1]
    bad = image_msg(rgb, 3000)
    spec = dict(MALFORMED[case])
    if 'truncate' in spec:
        bad.data = bytes(bad.data)[:-spec.pop('truncate')]
    for key, value in spec.items():
        setattr(bad, key, value)
    before = int(probe.last_diagnostics()['frames_rejected'])
    probe.image_pub.publish(bad)
    diag = probe.wait_for(lambda p: p.diagnostics and int(
        p.diagnostics[-1]['frames_rejected']) == before + 1 and p.diagnostics[-1],
        what='the rejection in diagnostics')
    assert diag['last_rejection']
    probe.image_pub.publish(image_msg(rgb, 3001))
    probe.wait_for(lambda p: by_stamp(p, 'labels', 3001), what='the next good frame')
    assert not by_stamp(probe, 'labels', 3000)


def test_diagnostics_report_rates_latency_backend_model(raw_node, val_frames, camvid_model):
    _, probe = raw_node
    for i in range(5):
        probe.image_pub.publish(image_msg(val_frames[0][1], 4000 + i))
        probe.wait_for(lambda p, s=4000 + i: by_stamp(p, 'labels', s))
    diag = probe.last_diagnostics()
    assert diag['backend'] == 'onnxruntime' and diag['model'] == str(camvid_model)
    assert float(diag['output_rate_hz']) > 0 and float(diag['input_rate_hz']) > 0
    assert 0 < float(diag['inference_p50_ms']) <= float(diag['latency_p99_ms'])
    assert diag['state'] == 'active'


@pytest.fixture(scope='module')
def compressed_node(start_node, binary_model):
    return start_node('/t_jpeg', {'model': str(binary_model), 'input_transport': 'compressed',
                                  'qos_reliability': 'reliable'},
                      outputs=('labels', 'mask', 'overlay'), compressed=True)


def compressed_msg(rgb: np.ndarray, stamp_sec: int, fmt: str = 'jpeg') -> CompressedImage:
    ok, buf = cv2.imencode('.jpg' if fmt == 'jpeg' else '.png', rgb[:, :, ::-1])
    assert ok
    return CompressedImage(header=header_for(stamp_sec, 'cam_jpeg'), format=fmt,
                           data=buf.tobytes())


def test_compressed_frame_gives_offline_pixels_and_binary_mask(compressed_node, binary_model,
                                                               val_frames):
    _, probe = compressed_node
    offline = Segmenter.from_path(binary_model)
    rgb = val_frames[3][1]
    msg = compressed_msg(rgb, 5000)
    probe.compressed_pub.publish(msg)
    probe.wait_for(lambda p: all(by_stamp(p, o, 5000) for o in ('labels', 'mask', 'overlay')),
                   what='compressed outputs')
    decoded = cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
    expected = offline(np.ascontiguousarray(decoded[:, :, ::-1]))
    labels = by_stamp(probe, 'labels', 5000)[0]
    assert labels.header.frame_id == 'cam_jpeg'
    np.testing.assert_array_equal(labels_of(labels), expected.labels)
    np.testing.assert_array_equal(labels_of(by_stamp(probe, 'mask', 5000)[0]), expected.mask)
    assert by_stamp(probe, 'overlay', 5000)[0].encoding == 'rgb8'


def test_corrupt_jpeg_is_rejected_and_node_keeps_going(compressed_node, val_frames):
    _, probe = compressed_node
    before = int(probe.last_diagnostics()['frames_rejected'])
    good = compressed_msg(val_frames[0][1], 5100)
    corrupt = CompressedImage(header=header_for(5101, 'cam_jpeg'), format='jpeg',
                              data=bytes(good.data)[:200] + b'\x00' * 50)
    probe.compressed_pub.publish(corrupt)
    diag = probe.wait_for(lambda p: p.diagnostics and int(
        p.diagnostics[-1]['frames_rejected']) == before + 1 and p.diagnostics[-1],
        what='the rejection')
    assert 'corrupt compressed image' in diag['last_rejection']
    probe.compressed_pub.publish(compressed_msg(val_frames[0][1], 5102))
    probe.wait_for(lambda p: by_stamp(p, 'labels', 5102), what='the next good frame')
