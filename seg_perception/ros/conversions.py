"""sensor_msgs <-> numpy without cv_bridge (not installable off a ROS install; for 8-bit
encodings a strided numpy view is the whole conversion). Zero-copy in, `tobytes()` out:
assigning an ndarray or list to `msg.data` is two orders of magnitude slower."""

from __future__ import annotations

import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from seg_perception.core.image_codec import DecodedImage, decode_compressed, decode_raw

_ENCODING_BY_CHANNELS = {1: 'mono8', 3: 'rgb8'}


def image_msg_to_array(msg: Image | CompressedImage) -> DecodedImage:
    """Wraps an Image (no copy) or decodes a CompressedImage; raises ImageRejected."""
    if isinstance(msg, CompressedImage):
        return decode_compressed(msg.format, msg.data)
    return decode_raw(msg.height, msg.width, msg.encoding, msg.step, msg.data, msg.is_bigendian)


def array_to_image_msg(array: np.ndarray, header: Header, encoding: str | None = None) -> Image:
    """(H, W) uint8 -> mono8, (H, W, 3) uint8 -> rgb8 (or `encoding`), header copied."""
    channels = 1 if array.ndim == 2 else array.shape[-1]
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or channels not in (1, 3):
        raise ValueError(f'expected uint8 (H, W) or (H, W, 3), got {array.dtype} {array.shape}')
    msg = Image()
    msg.header = header
    msg.height, msg.width = int(array.shape[0]), int(array.shape[1])
    msg.encoding = encoding or _ENCODING_BY_CHANNELS[channels]
    msg.is_bigendian = 0
    msg.step = msg.width * channels
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def output_array(msg: Image) -> np.ndarray:
    """View of a mono8 / rgb8 output image as (H, W) or (H, W, 3) uint8 (no copy)."""
    channels = {'mono8': 1, 'rgb8': 3, 'bgr8': 3}.get(msg.encoding)
    if channels is None or msg.step != msg.width * channels:
        raise ValueError(f'expected a packed mono8 / rgb8 image, got {msg.encoding} '
                         f'step {msg.step} width {msg.width}')
    shape = (msg.height, msg.width) if channels == 1 else (msg.height, msg.width, channels)
    return np.frombuffer(msg.data, np.uint8).reshape(shape)
