"""Colour masks and overlays for people to look at."""

from __future__ import annotations

import cv2
import numpy as np

from seg_perception.core.classes import ClassSet


def colorize(labels: np.ndarray, class_set: ClassSet) -> np.ndarray:
    """(H, W) uint8 class ids -> (H, W, 3) uint8 RGB with the class set's palette.

    cv2.LUT on a 3-channel copy: 2.8 ms at 1280x720 where `palette[labels]` takes 17 ms.
    """
    return cv2.LUT(cv2.merge([labels, labels, labels]), class_set.palette.reshape(256, 1, 3))


def overlay(image: np.ndarray, color: np.ndarray, alpha: float) -> np.ndarray:
    """Blends `color` over `image` (both HxWx3 uint8): (1 - alpha) x image + alpha x color."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f'alpha must be in [0, 1], got {alpha}')
    return cv2.addWeighted(image, 1.0 - alpha, color, alpha, 0.0)
