"""fcn_tiny: a ~130 K-parameter encoder-decoder for tests and the demo, not from a paper.

Three stride-2 conv stages (1/8 resolution), two dilated convs for context, a 1/4 skip, and
bilinear upsampling to the input size. It trains on a CPU in minutes, which is all it is for.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from seg_perception.models.registry import register_model


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class FcnTiny(nn.Module):
    def __init__(self, num_classes: int, width: int = 16):
        super().__init__()
        self.stage1 = _conv(3, width, 2)
        self.stage2 = nn.Sequential(_conv(width, 2 * width, 2), _conv(2 * width, 2 * width))
        self.stage3 = nn.Sequential(_conv(2 * width, 4 * width, 2),
                                    _conv(4 * width, 4 * width, dilation=2),
                                    _conv(4 * width, 4 * width, dilation=4))
        self.skip = nn.Conv2d(2 * width, 4 * width, 1, bias=False)
        self.head = nn.Sequential(_conv(4 * width, 2 * width),
                                  nn.Conv2d(2 * width, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        quarter = self.stage2(self.stage1(x))
        deep = self.stage3(quarter)
        deep = F.interpolate(deep, size=quarter.shape[-2:], mode='bilinear', align_corners=False)
        out = self.head(deep + self.skip(quarter))
        return F.interpolate(out, size=size, mode='bilinear', align_corners=False)


@register_model
def fcn_tiny(*, num_classes: int, width: int = 16) -> FcnTiny:
    return FcnTiny(num_classes, width)
