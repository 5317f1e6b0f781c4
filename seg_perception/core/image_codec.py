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


class ImageRejected(ValueError):
    """An input frame that cannot be used; `reason` is short and names the problem."""

    def __init__(self, reason: str):
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
        raise ImageRejected(f'unsupported encoding {encoding!r} (supported: '
                            f'{", ".join(ENCODINGS)})')
    if height <= 0 or width <= 0:
        raise ImageRejected(f'empty image {width}x{height}')
    if height > MAX_SIDE or width > MAX_SIDE:
        raise ImageRejected(f'image {width}x{height} exceeds {MAX_SIDE} pixels per side')
    channels, order = ENCODINGS[encoding]
    row = width * channels
    if step < row:
        raise ImageRejected(f'step {step} is smaller than width x channels = {row}')
    buffer = np.frombuffer(data, np.uint8)
    needed = step * (height - 1) + row
    if buffer.size < needed:
        raise ImageRejected(f'data has {buffer.size} bytes, {encoding} {width}x{height} with '
                            f'step {step} needs {step * height}')
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
        ImageRejected: a format other than jpeg / png, empty or corrupt data.
    """
    lowered = fmt.lower()
    if lowered and not any(name in lowered for name in COMPRESSED_FORMATS):
        raise ImageRejected(f'unsupported compressed format {fmt!r} (jpeg or png)')
    buffer = np.frombuffer(data, np.uint8)
    if buffer.size == 0:
        raise ImageRejected('empty compressed image')
    pixels = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if pixels is None:
        raise ImageRejected(f'corrupt compressed image ({buffer.size} bytes, '
                            f'format {fmt or "unspecified"!r})')
    return DecodedImage(pixels, bgr=True)
