"""Raw and compressed image buffers -> numpy, with a reason for every rejection.

ROS-free on purpose: the node passes message fields in, so every check is tested without
DDS. cv_bridge is not used: it is not installable outside a ROS install, and for the
encodings a camera sends a strided numpy view is all the conversion there is.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# encoding -> (channels, index of R, G, B in the pixel; None for grey)
ENCODINGS: dict[str, tuple[int, tuple[int, int, int] | None]] = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, None),
}
COMPRESSED_FORMATS = ('jpeg', 'jpg', 'png')
MAX_SIDE = 16384  # pixels; larger is a corrupt header, not a camera
# Pixels per frame (8K UHD fits). Bounds what a compressed frame may decompress to: a 190 KB
# PNG of 8000 x 8000 zeros decodes to 192 MB, and it is the header that says how much.
MAX_PIXELS = 1 << 25
# What a rejection is counted under (diagnostics `rejected_<kind>`).
REJECTION_KINDS = ('encoding', 'size', 'step', 'data_length', 'format', 'corrupt')
_PNG_MAGIC = b'\x89PNG\r\n\x1a\n'
_JPEG_MAGIC = b'\xff\xd8\xff'


class ImageRejected(ValueError):
    """An input frame that cannot be used.

    Attributes:
        kind: One of REJECTION_KINDS, what the frame is counted under.
        reason: Short, names the problem and the values involved.
    """

    def __init__(self, kind: str, reason: str):
        if kind not in REJECTION_KINDS:
            raise ValueError(f'unknown rejection kind {kind!r}')
        self.kind = kind
        self.reason = reason
        super().__init__(reason)


@dataclass
class DecodedImage:
    """(H, W, 3) uint8 pixels and their channel order. `pixels` may be a view of the message
    buffer: it must not be written to and is only valid while the message is alive."""

    pixels: np.ndarray
    bgr: bool

    def rgb(self) -> np.ndarray:
        """RGB copy-free when already RGB."""
        return self.pixels[:, :, ::-1] if self.bgr else self.pixels


def decode_raw(height: int, width: int, encoding: str, step: int, data,
               is_bigendian: int = 0) -> DecodedImage:
    """Wraps a sensor_msgs/Image buffer without copying (grey is expanded to 3 channels).

    Raises:
        ImageRejected: unknown encoding, zero or absurd size, step too small, data too short.
    """
    del is_bigendian  # only 8-bit encodings are accepted; byte order does not apply
    if encoding not in ENCODINGS:
        raise ImageRejected('encoding', f'unsupported encoding {encoding!r} (supported: '
                                        f'{", ".join(ENCODINGS)})')
    _check_size(width, height)
    channels, order = ENCODINGS[encoding]
    row = width * channels
    if step < row:
        raise ImageRejected('step', f'step {step} is smaller than width x channels = {row}')
    buffer = np.frombuffer(data, np.uint8)
    # The last row's padding is not required: some drivers send step x (height - 1) + row.
    needed = step * (height - 1) + row
    if buffer.size < needed:
        raise ImageRejected('data_length', f'data has {buffer.size} bytes, {encoding} '
                                           f'{width}x{height} with step {step} needs {needed}')
    rows = np.lib.stride_tricks.as_strided(buffer, (height, row), (step, 1), writeable=False)
    pixels = rows.reshape(height, width, channels)
    if order is None:
        return DecodedImage(cv2.cvtColor(np.ascontiguousarray(pixels[:, :, 0]),
                                         cv2.COLOR_GRAY2RGB), bgr=False)
    if channels == 4:
        pixels = pixels[:, :, :3]
    return DecodedImage(pixels, bgr=order[0] == 2)


def decode_compressed(fmt: str, data) -> DecodedImage:
    """Decodes a sensor_msgs/CompressedImage (jpeg or png) to BGR pixels.

    Raises:
        ImageRejected: a format other than jpeg / png (by name or by content), a header
            announcing an empty or absurdly large image, empty or corrupt data.
    """
    lowered = fmt.lower()
    if lowered and not any(name in lowered for name in COMPRESSED_FORMATS):
        raise ImageRejected('format', f'unsupported compressed format {fmt!r} (jpeg or png)')
    buffer = np.frombuffer(data, np.uint8)
    if buffer.size == 0:
        raise ImageRejected('corrupt', 'empty compressed image')
    # Only PNG and JPEG reach a decoder (OpenCV would try every format it knows), and only
    # once their header says the frame fits MAX_PIXELS.
    head = buffer[:8].tobytes()
    if head.startswith(_PNG_MAGIC):
        size = _png_size(buffer)
    elif head.startswith(_JPEG_MAGIC):
        size = _jpeg_size(buffer)
    else:
        raise ImageRejected('format', f'compressed data is neither PNG nor JPEG (starts with '
                                      f'{head[:4].hex()}, format {fmt or "unspecified"!r})')
    if size is None:
        raise ImageRejected('corrupt', f'corrupt compressed image ({buffer.size} bytes, '
                                       f'format {fmt or "unspecified"!r}): no image header')
    _check_size(*size)
    try:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as err:  # decoders mostly return None, but may throw
        raise ImageRejected('corrupt', f'corrupt compressed image ({buffer.size} bytes): '
                                       f'{str(err).strip().splitlines()[-1]}') from err
    if pixels is None:
        raise ImageRejected('corrupt', f'corrupt compressed image ({buffer.size} bytes, '
                                       f'format {fmt or "unspecified"!r})')
    return DecodedImage(pixels, bgr=True)


def _check_size(width: int, height: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageRejected('size', f'empty image {width}x{height}')
    if height > MAX_SIDE or width > MAX_SIDE:
        raise ImageRejected('size', f'image {width}x{height} exceeds {MAX_SIDE} pixels per side')
    if height * width > MAX_PIXELS:
        raise ImageRejected('size', f'image {width}x{height} exceeds {MAX_PIXELS} pixels')


def _png_size(buffer: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from the IHDR chunk, which must come first; None if it does not."""
    ihdr = buffer[8:24].tobytes()
    if len(ihdr) < 16 or ihdr[4:8] != b'IHDR':
        return None
    return int.from_bytes(ihdr[8:12], 'big'), int.from_bytes(ihdr[12:16], 'big')


# JPEG markers that start a frame (SOF0-SOF15 without DHT C4, JPG C8 and DAC CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(buffer: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from the first SOF segment; None if none comes before the scan."""
    data = buffer.tobytes()
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # no length field
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no frame header so far
            return None
        length = int.from_bytes(data[pos + 2:pos + 4], 'big')
        if marker in _SOF:
            if length < 7 or pos + 9 > len(data):
                return None
            height = int.from_bytes(data[pos + 5:pos + 7], 'big')
            width = int.from_bytes(data[pos + 7:pos + 9], 'big')
            return width, height
        if length < 2:
            return None
        pos += 2 + length
    return None
