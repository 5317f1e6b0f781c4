"""sensor_msgs <-> numpy through real message serialisation: valid frames round-trip exactly,
anything else is an ImageRejected with a kind and a reason."""

from __future__ import annotations

import cv2
from hypothesis import given
from hypothesis import strategies as st
import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from seg_perception.core.image_codec import REJECTION_KINDS, ImageRejected
from seg_perception.ros.conversions import array_to_image_msg, image_msg_to_array, output_array
from test.core.test_image_codec import PROPERTY, compressed_payloads, raw_frames


def over_the_wire(msg):
    """The message as a subscriber gets it: CDR-serialised and deserialised by rclpy."""
    return deserialize_message(serialize_message(msg), type(msg))


@st.composite
def images(draw):
    height, width = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    channels = draw(st.sampled_from([1, 3]))
    shape = (height, width) if channels == 1 else (height, width, 3)
    data = draw(st.binary(min_size=height * width * channels,
                          max_size=height * width * channels))
    return np.frombuffer(data, np.uint8).reshape(shape)


@PROPERTY
@given(images(), st.booleans())
def test_arrays_round_trip_exactly_through_serialised_messages(array, bgr):
    header = Header(frame_id='cam')
    header.stamp.sec, header.stamp.nanosec = 17, 42
    encoding = 'bgr8' if bgr and array.ndim == 3 else None
    msg = over_the_wire(array_to_image_msg(array, header, encoding))
    assert (msg.header.frame_id, msg.header.stamp.sec, msg.header.stamp.nanosec) == (
        'cam', 17, 42)
    np.testing.assert_array_equal(output_array(msg), array)
    rgb = image_msg_to_array(msg).rgb()
    if array.ndim == 2:
        np.testing.assert_array_equal(rgb, np.repeat(array[:, :, None], 3, axis=2))
    else:  # a bgr8 message holds the array as BGR: its RGB is the array reversed
        np.testing.assert_array_equal(rgb, array[:, :, ::-1] if bgr else array)


@PROPERTY
@given(raw_frames(), st.integers(0, 255))
def test_any_image_message_decodes_or_is_rejected(frame, is_bigendian):
    fields, rgb = frame
    msg = Image(height=fields['height'], width=fields['width'], encoding=fields['encoding'],
                step=fields['step'], is_bigendian=is_bigendian, data=fields['data'])
    try:
        image = image_msg_to_array(over_the_wire(msg))
    except ImageRejected as err:
        assert err.kind in REJECTION_KINDS and err.reason
        assert rgb is None, f'a valid frame was rejected: {err.reason}'
        return
    if rgb is not None:
        np.testing.assert_array_equal(image.rgb(), rgb)


@PROPERTY
@given(compressed_payloads(), st.text(max_size=30))
def test_any_compressed_message_decodes_or_is_rejected(payload, fmt):
    data, _ = payload
    msg = over_the_wire(CompressedImage(format=fmt, data=data))
    try:
        image = image_msg_to_array(msg)
    except ImageRejected as err:
        assert err.kind in REJECTION_KINDS and err.reason
        return
    assert image.pixels.dtype == np.uint8 and image.pixels.shape[2] == 3


def test_png_message_round_trips_exactly():
    rgb = np.random.default_rng(3).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    msg = CompressedImage(format='png', data=cv2.imencode('.png', rgb[:, :, ::-1])[1].tobytes())
    np.testing.assert_array_equal(image_msg_to_array(over_the_wire(msg)).rgb(), rgb)


@pytest.mark.parametrize('array', [np.zeros((2, 2), np.float32), np.zeros((2, 2, 4), np.uint8),
                                   np.zeros(4, np.uint8)])
def test_outputs_of_the_wrong_type_or_shape_are_refused(array):
    with pytest.raises(ValueError, match='expected uint8'):
        array_to_image_msg(array, Header())


def test_uint32_fields_at_their_limits_are_rejected_not_raised():
    for value in (0, 2**32 - 1):
        msg = over_the_wire(Image(height=value, width=value, encoding='rgb8', step=value,
                                  data=b'\0' * 12))
        with pytest.raises(ImageRejected) as err:
            image_msg_to_array(msg)
        assert err.value.kind == 'size'
