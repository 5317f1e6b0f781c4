"""The output images of one frame, each computed only when someone wants it."""

from __future__ import annotations

import numpy as np

from seg_perception.core.classes import ClassSet
from seg_perception.core.drivable import DrivableArea
from seg_perception.core.segmenter import Segmentation, resize_nearest
from seg_perception.core.visualize import colorize, overlay

OUTPUT_NAMES = ('labels', 'color', 'overlay', 'confidence', 'drivable', 'mask')


def render_outputs(result: Segmentation, rgb: np.ndarray, wanted: set[str],
                   class_set: ClassSet, drivable: DrivableArea | None = None,
                   overlay_alpha: float = 0.5) -> dict[str, np.ndarray]:
    """Returns {output name: uint8 image at the input size} for each `wanted` output.

    Colour and drivable area are made at the network's output size and enlarged with nearest
    neighbours, which gives the same pixels as making them from the enlarged labels (colour)
    at a fraction of the cost; drivable-area kernels are therefore in network pixels.

    Args:
        result: The Segmenter's result for the frame.
        rgb: The input image, (H, W, 3) RGB (for the overlay).
        wanted: Output names to make (OUTPUT_NAMES).
        class_set: Palette source.
        drivable: Drivable-area estimator (multi-class models), or None.
        overlay_alpha: Weight of the colour mask in the overlay.
    """
    size = result.labels.shape
    outputs = {'labels': result.labels} if 'labels' in wanted else {}
    if wanted & {'color', 'overlay'}:
        color = resize_nearest(colorize(result.net_labels, class_set), size)
        if 'color' in wanted:
            outputs['color'] = color
        if 'overlay' in wanted:
            outputs['overlay'] = overlay(rgb, color, overlay_alpha)
    if 'confidence' in wanted and result.confidence is not None:
        outputs['confidence'] = result.confidence
    if 'mask' in wanted and result.mask is not None:
        outputs['mask'] = result.mask
    if 'drivable' in wanted and drivable is not None:
        outputs['drivable'] = resize_nearest(drivable(result.net_labels), size)
    return outputs
