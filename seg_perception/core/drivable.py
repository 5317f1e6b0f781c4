"""Drivable area: label image -> 0/255 mask of the free ground the vehicle can reach."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_CLASSES = ('road',)  # class names, case-insensitive (the node's drivable_classes)


@dataclass(frozen=True)
class DrivableConfig:
    """How the drivable mask is made from labels.

    Attributes:
        class_ids: Class ids that count as drivable (e.g. CamVid Road = 3).
        close_kernel: Side in pixels of the elliptical closing that fills small holes
            (lane markings, shadows misread as another class); 0 or 1 disables it.
        open_kernel: Side in pixels of the opening that removes thin spurs and specks;
            0 or 1 disables it.
        bottom_band: Height of the band at the bottom of the image, as a fraction of the
            image height, where the vehicle stands. Only regions touching it are kept:
            road seen across a wall or in a reflection is not reachable.
        smoothing_frames: Frames of temporal majority voting (1 = none). The buffer resets
            when the image size changes.
    """

    class_ids: tuple[int, ...]
    close_kernel: int = 5
    open_kernel: int = 5
    bottom_band: float = 0.1
    smoothing_frames: int = 1

    def __post_init__(self):
        if not 0.0 < self.bottom_band <= 1.0:
            raise ValueError(f'bottom_band must be in (0, 1], got {self.bottom_band}')
        if self.smoothing_frames < 1:
            raise ValueError(f'smoothing_frames must be >= 1, got {self.smoothing_frames}')
        if self.close_kernel < 0 or self.open_kernel < 0:
            raise ValueError('kernel sizes must be >= 0')


class DrivableArea:
    """Stateful (for temporal smoothing) drivable-area estimator; one per camera stream."""

    def __init__(self, config: DrivableConfig):
        self.config = config
        self._ids = np.zeros(256, bool)
        self._ids[list(config.class_ids)] = True
        self._close = _kernel(config.close_kernel)
        self._open = _kernel(config.open_kernel)
        self._history: deque[np.ndarray] = deque(maxlen=config.smoothing_frames)

    def reset(self) -> None:
        self._history.clear()

    def __call__(self, labels: np.ndarray) -> np.ndarray:
        """(H, W) uint8 labels -> (H, W) uint8 mask, 255 = drivable."""
        if labels.ndim != 2 or labels.dtype != np.uint8:
            raise ValueError(f'expected (H, W) uint8 labels, got {labels.shape} {labels.dtype}')
        mask = self._ids[labels].view(np.uint8)
        if self._close is not None:
            mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self._close)
        if self._open is not None:
            mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self._open)
        mask = self._connected_to_bottom(mask)
        if self.config.smoothing_frames > 1:
            mask = self._smooth(mask)
        return mask * np.uint8(255)

    def _connected_to_bottom(self, mask: np.ndarray) -> np.ndarray:
        count, components = cv2.connectedComponents(mask, connectivity=8)
        if count <= 1:
            return mask
        band = max(1, int(round(self.config.bottom_band * mask.shape[0])))
        keep = np.zeros(count, np.uint8)
        keep[np.unique(components[-band:])] = 1
        keep[0] = 0  # component 0 is the background
        return keep[components]

    def _smooth(self, mask: np.ndarray) -> np.ndarray:
        if self._history and self._history[0].shape != mask.shape:
            self._history.clear()
        self._history.append(mask)
        votes = np.sum(self._history, axis=0, dtype=np.uint16)
        # Majority of the frames seen so far (ties count as drivable only if > half).
        return (votes * 2 > len(self._history)).view(np.uint8)


def _kernel(size: int) -> np.ndarray | None:
    if size <= 1:
        return None
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
