import cv2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import numpy as np
import pytest

from seg_perception.core.image_codec import (
    ENCODINGS,
    MAX_PIXELS,
    MAX_SIDE,
    REJECTION_KINDS,
    ImageRejected,
    decode_compressed,
    decode_raw,
)

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


def test_reasons_carry_the_kind_they_are_counted_under():
    with pytest.raises(ImageRejected) as err:
        decode_raw(6, 5, 'rgb8', 14, RGB.tobytes())
    assert err.value.kind == 'step'
    with pytest.raises(ImageRejected) as err:
        decode_compressed('jpeg', b'GIF89a' + b'\0' * 20)
    assert err.value.kind == 'format' and 'neither PNG nor JPEG' in err.value.reason
    with pytest.raises(ValueError, match='unknown rejection kind'):
        ImageRejected('bad', 'reason')


# ---- compressed frames whose header announces more pixels than the node accepts --------------

def _with_png_size(png: bytes, width: int, height: int) -> bytes:
    """The PNG with its IHDR width / height replaced (CRC fixed, so only the size is wrong)."""
    import struct
    import zlib

    ihdr = png[12:16] + struct.pack('>II', width, height) + png[24:29]
    return png[:8] + png[8:12] + ihdr + struct.pack('>I', zlib.crc32(ihdr)) + png[33:]


def _with_jpeg_size(jpeg: bytes, width: int, height: int) -> bytes:
    sof = jpeg.index(b'\xff\xc0')
    return (jpeg[:sof + 5] + height.to_bytes(2, 'big') + width.to_bytes(2, 'big')
            + jpeg[sof + 9:])


def test_decompression_bomb_is_rejected_from_its_header_before_decoding():
    # A real one: 8000 x 8000 zeros compress to 190 KB of PNG and decode to 192 MB. Here the
    # header of a small image is rewritten: the rejection must come before any decoding.
    png = cv2.imencode('.png', RGB)[1].tobytes()
    jpeg = cv2.imencode('.jpg', RGB)[1].tobytes()
    for data in (_with_png_size(png, 8000, 8000), _with_jpeg_size(jpeg, 65000, 60000),
                 _with_png_size(png, 2**31 - 1, 1)):
        with pytest.raises(ImageRejected) as err:
            decode_compressed('', data)
        assert err.value.kind == 'size' and 'exceeds' in err.value.reason
    with pytest.raises(ImageRejected, match='empty image 0x6'):
        decode_compressed('png', _with_png_size(png, 0, 6))
    # The header parsers read the sizes OpenCV writes.
    assert decode_compressed('png', _with_png_size(png, 5, 6)).pixels.shape == (6, 5, 3)
    assert decode_compressed('jpeg', _with_jpeg_size(jpeg, 5, 6)).pixels.shape == (6, 5, 3)


# ---- properties: no exception but ImageRejected, valid frames round-trip exactly -------------

PROPERTY = settings(max_examples=300, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])
UINT32 = st.integers(0, 2**32 - 1)


@st.composite
def raw_frames(draw):
    """A valid frame (random encoding, size, row padding, trailing bytes) as
    (fields, expected RGB), or with one field broken: (fields, None)."""
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    channels, order = ENCODINGS[encoding]
    height, width = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    pixels = draw(st.binary(min_size=height * width * channels,
                            max_size=height * width * channels))
    pixels = np.frombuffer(pixels, np.uint8).reshape(height, width, channels)
    step = width * channels + draw(st.integers(0, 7))
    rows = np.zeros((height, step), np.uint8)
    rows[:, :width * channels] = pixels.reshape(height, -1)
    data = rows.tobytes()[:step * (height - 1) + width * channels]  # last row unpadded
    data += draw(st.binary(max_size=8)) if draw(st.booleans()) else rows.tobytes()[len(data):]
    fields = dict(height=height, width=width, encoding=encoding, step=step, data=data)
    broken = draw(st.sampled_from([None, 'height', 'width', 'encoding', 'step', 'data']))
    if broken is None:
        rgb = np.repeat(pixels, 3, axis=2) if order is None else pixels[:, :, list(order)]
        return fields, rgb
    if broken == 'encoding':
        fields['encoding'] = draw(st.text(max_size=12).filter(lambda e: e not in ENCODINGS)
                                  | st.sampled_from(['16UC1', 'yuv422', 'RGB8', 'bayer_rggb8']))
    elif broken == 'data':
        fields['data'] = draw(st.binary(max_size=len(data) + 40))
    else:
        fields[broken] = draw(UINT32)
    return fields, None


def _expected_kind(height, width, encoding, step, data) -> str | None:
    """What a frame is rejected for, from the message definition (None: valid)."""
    if encoding not in ENCODINGS:
        return 'encoding'
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE and height * width <= MAX_PIXELS):
        return 'size'
    channels = ENCODINGS[encoding][0]
    if step < width * channels:
        return 'step'
    if len(data) < step * (height - 1) + width * channels:
        return 'data_length'
    return None


def _rows_of(height, width, encoding, step, data) -> np.ndarray:
    """The pixels by slicing rows out of the bytes (not through decode_raw's strides)."""
    channels, order = ENCODINGS[encoding]
    rows = [np.frombuffer(data[r * step:r * step + width * channels], np.uint8)
            for r in range(height)]
    pixels = np.stack(rows).reshape(height, width, channels)
    return np.repeat(pixels, 3, axis=2) if order is None else pixels[:, :, list(order)]


@PROPERTY
@given(raw_frames())
def test_raw_frames_decode_exactly_or_are_rejected_for_the_right_kind(frame):
    fields, rgb = frame
    kind = _expected_kind(**fields)
    try:
        image = decode_raw(**fields)
    except ImageRejected as err:
        assert err.kind == kind and err.reason, (fields['height'], fields['width'])
        return
    assert kind is None, f'accepted a frame that should be rejected for {kind}'
    out = image.rgb()
    assert out.dtype == np.uint8 and out.shape == (fields['height'], fields['width'], 3)
    np.testing.assert_array_equal(out, _rows_of(**fields))
    if rgb is not None:  # untouched valid frame: exactly the pixels it was made from
        np.testing.assert_array_equal(out, rgb)


@st.composite
def compressed_payloads(draw):
    """Garbage, or a real PNG / JPEG truncated, with bytes overwritten, or intact."""
    kind = draw(st.sampled_from(['garbage', 'png', 'jpeg']))
    if kind == 'garbage':
        return draw(st.binary(max_size=300)), None
    height, width = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    image = np.frombuffer(draw(st.binary(min_size=height * width * 3,
                                         max_size=height * width * 3)),
                          np.uint8).reshape(height, width, 3)
    ok, buf = cv2.imencode('.png' if kind == 'png' else '.jpg', image)
    assert ok
    data = bytearray(buf.tobytes())
    damage = draw(st.sampled_from(['none', 'truncate', 'overwrite']))
    if damage == 'truncate':
        data = data[:draw(st.integers(0, len(data) - 1))]
    elif damage == 'overwrite':
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data), (image if damage == 'none' and kind == 'png' else None)


@PROPERTY
@given(compressed_payloads(), st.sampled_from(['jpeg', 'png', '', 'rgb8; jpeg compressed bgr8'])
       | st.text(max_size=20))
def test_compressed_garbage_is_rejected_and_intact_png_is_exact(payload, fmt):
    data, bgr = payload
    try:
        image = decode_compressed(fmt, data)
    except ImageRejected as err:
        assert err.kind in REJECTION_KINDS and err.reason
        assert bgr is None or err.kind == 'format', 'an intact PNG was rejected'
        return
    assert image.bgr and image.pixels.dtype == np.uint8 and image.pixels.ndim == 3
    assert image.pixels.shape[0] * image.pixels.shape[1] <= MAX_PIXELS
    if bgr is not None:
        np.testing.assert_array_equal(image.pixels, bgr)
