import cv2
import numpy as np
import pytest

from seg_perception.core.image_codec import ImageRejected, decode_compressed, decode_raw

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (6, 5, 3), dtype=np.uint8)


@pytest.mark.parametrize('encoding,pixels', [
    ('rgb8', RGB), ('bgr8', RGB[:, :, ::-1]),
    ('rgba8', np.dstack([RGB, np.full((6, 5), 7, np.uint8)])),
    ('bgra8', np.dstack([RGB[:, :, ::-1], np.full((6, 5), 7, np.uint8)])),
])
def test_colour_encodings_round_trip(encoding, pixels):
    data = np.ascontiguousarray(pixels).tobytes()
    image = decode_raw(6, 5, encoding, pixels.shape[1] * pixels.shape[2], data)
    np.testing.assert_array_equal(image.rgb(), RGB)


def test_raw_rgb_is_a_view_of_the_message_buffer():
    data = bytearray(RGB.tobytes())
    image = decode_raw(6, 5, 'rgb8', 15, data)
    data[0] = (data[0] + 1) % 256
    assert image.pixels[0, 0, 0] == data[0]


def test_padded_rows_are_skipped():
    padded = np.zeros((6, 20), np.uint8)
    padded[:, :15] = RGB.reshape(6, 15)
    np.testing.assert_array_equal(decode_raw(6, 5, 'rgb8', 20, padded.tobytes()).pixels, RGB)


def test_mono8_becomes_grey_rgb():
    grey = RNG.integers(0, 256, (4, 3), dtype=np.uint8)
    image = decode_raw(4, 3, 'mono8', 3, grey.tobytes())
    assert image.pixels.shape == (4, 3, 3)
    np.testing.assert_array_equal(image.pixels[:, :, 1], grey)


@pytest.mark.parametrize('args,match', [
    ((6, 5, 'rgb16', 30, b'\0' * 180), "unsupported encoding 'rgb16'"),
    ((6, 5, '32FC1', 20, b'\0' * 120), 'unsupported encoding'),
    ((0, 5, 'rgb8', 15, b''), 'empty image'),
    ((6, 0, 'rgb8', 0, b''), 'empty image'),
    ((6, 5, 'rgb8', 14, RGB.tobytes()), 'step 14 is smaller'),
    ((6, 5, 'rgb8', 15, RGB.tobytes()[:-1]), 'data has 89 bytes'),
    ((100000, 5, 'rgb8', 15, b''), 'exceeds'),
])
def test_malformed_raw_images_are_rejected_with_reason(args, match):
    with pytest.raises(ImageRejected, match=match):
        decode_raw(*args)


def test_compressed_jpeg_and_png_decode_to_what_opencv_decodes():
    for ext in ('.png', '.jpg'):
        ok, buf = cv2.imencode(ext, RGB[:, :, ::-1])
        assert ok
        image = decode_compressed(ext.strip('.'), buf.tobytes())
        np.testing.assert_array_equal(image.pixels, cv2.imdecode(buf, cv2.IMREAD_COLOR))
        assert image.bgr
    png = cv2.imencode('.png', RGB[:, :, ::-1])[1].tobytes()
    np.testing.assert_array_equal(decode_compressed('png', png).rgb(), RGB)


@pytest.mark.parametrize('fmt,data,match', [
    ('jpeg', b'\xff\xd8\xff\xe0garbage', 'corrupt compressed image'),
    ('jpeg', b'', 'empty compressed image'),
    ('tiff', b'II*\0', "unsupported compressed format 'tiff'"),
])
def test_bad_compressed_images_are_rejected(fmt, data, match):
    with pytest.raises(ImageRejected, match=match):
        decode_compressed(fmt, data)
