"""Segmentation losses: CE, OHEM-CE, hinge, Dice, CE + Dice, JetLoss, auxiliary weighting.

Every loss takes (logits (N, C, H, W) float, target (N, H, W) int64) and returns a scalar;
pixels equal to `ignore_index` contribute nothing, and an all-ignored batch gives 0 (with a
graph), not NaN. Losses are computed in float32 whatever the logits' dtype (AMP).
"""

from training.losses.builder import LOSSES, build_loss
from training.losses.ce import CrossEntropy
from training.losses.composite import AuxWeighted, CEDice
from training.losses.dice import DiceLoss
from training.losses.hinge import HingeLoss
from training.losses.jetloss import JetLoss, effective_number_weights
from training.losses.ohem import OhemCrossEntropy

__all__ = [
    'LOSSES',
    'AuxWeighted',
    'CEDice',
    'CrossEntropy',
    'DiceLoss',
    'HingeLoss',
    'JetLoss',
    'OhemCrossEntropy',
    'build_loss',
    'effective_number_weights',
]
