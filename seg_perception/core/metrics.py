"""Segmentation metrics from a confusion matrix: shared by training, offline and bag
evaluation so that every number in the project is computed one way."""

from __future__ import annotations

import numpy as np


class ConfusionMatrix:
    """Accumulates a (C, C) confusion matrix, rows = ground truth, columns = prediction.

    Pixels whose ground truth is `ignore_index` (or outside 0..C-1) are not counted.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = None):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        if pred.shape != target.shape:
            raise ValueError(f'prediction {pred.shape} and ground truth {target.shape} differ')
        target = target.ravel().astype(np.int64)
        pred = pred.ravel().astype(np.int64)
        valid = (target >= 0) & (target < self.num_classes)
        if self.ignore_index is not None:
            valid &= target != self.ignore_index
        index = target[valid] * self.num_classes + np.clip(pred[valid], 0, self.num_classes - 1)
        self.matrix += np.bincount(index, minlength=self.num_classes ** 2).reshape(
            self.num_classes, self.num_classes)

    def per_class_iou(self) -> np.ndarray:
        """IoU per class; nan for a class absent from both ground truth and prediction."""
        tp = np.diag(self.matrix).astype(float)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid='ignore', divide='ignore'):
            return np.where(union > 0, tp / union, np.nan)

    def per_class_dice(self) -> np.ndarray:
        tp = np.diag(self.matrix).astype(float)
        total = self.matrix.sum(0) + self.matrix.sum(1)
        with np.errstate(invalid='ignore', divide='ignore'):
            return np.where(total > 0, 2 * tp / total, np.nan)

    def miou(self) -> float:
        iou = self.per_class_iou()
        return float(np.nanmean(iou)) if np.isfinite(iou).any() else float('nan')

    def dice(self) -> float:
        dice = self.per_class_dice()
        return float(np.nanmean(dice)) if np.isfinite(dice).any() else float('nan')

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(np.trace(self.matrix) / total) if total else float('nan')
