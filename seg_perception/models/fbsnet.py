"""FBSNet: Fast Bilateral Symmetrical Network (Gao, Xu, Li, Yu, Lu, Yang; IEEE TMM 2022).

Rebuilt from the paper text (Section III and Table I): 600,471 parameters at 19 classes (the
paper reports 0.62 M) and 9.1 GMACs at 512x1024 (it reports 9.7 GFLOPs).
Two branches share an initial block at 1/2 resolution:

* Semantic Information Branch (SIB): a symmetrical encoder-decoder of Bottleneck Residual
  Units (BRU) at 16 / 64 / 128 channels (1/2, 1/4, 1/8 resolution) with ENet-style
  downsampling, transposed-conv upsampling back to 1/2, and a channel attention module (CAM,
  ECA-style) closing every stage.
* Spatial Detail Branch (SDB): a Detail Residual Module (DRM) and a spatial attention module
  (SAM) at 1/2 resolution, without downsampling.

A Feature Aggregation Module (FAM: sum, then coordinate attention) merges the two and a 2x2
stride-2 transposed conv projects to class scores at full resolution.

Where the text leaves a detail open, the comment at that spot says which reading was taken and
why; the tie-breaker was the parameter budget the paper reports (0.62 M; its ablation table
also pins the CAM kernel and the SAM kernel, see below).
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from seg_perception.models.layers.blocks import ConvBNAct, channel_shuffle
from seg_perception.models.layers.cbam import SpatialAttention
from seg_perception.models.layers.coordinate_attention import CoordinateAttention
from seg_perception.models.layers.eca import ECA
from seg_perception.models.registry import register_model

# Table I, layers 13-32: [1, 2, 5, 9, 17] x 4 at 128 channels, 1/8 resolution.
_DEEP_DILATIONS = (1, 2, 5, 9, 17) * 4


# Activation: per-channel PReLU after every BN. The text says ReLU, but with ReLU the Table I
# network has 0.582 M parameters (6 % under the reported 0.62 M); the authors' released code
# uses BN + per-channel PReLU throughout, which brings it to 0.600 M (3 % under).
def _conv(cin: int, cout: int, kernel_size: int | tuple[int, int], stride: int = 1,
          dilation: int = 1, groups: int = 1, act: bool = True) -> ConvBNAct:
    """Conv -> BN -> PReLU(cout) ('same' padding), or conv -> BN if `act` is False."""
    return ConvBNAct(cin, cout, kernel_size, stride, dilation=dilation, groups=groups,
                     act_layer=partial(nn.PReLU, cout) if act else None)


def _bn_act(channels: int) -> nn.Sequential:
    """BN -> PReLU, for sums and concatenations."""
    return nn.Sequential(nn.BatchNorm2d(channels), nn.PReLU(channels))


def _cam() -> ECA:
    """CAM, eq. (8): ECA [40] with kernel 3, not ECA's channel-adaptive size: Table II(a)
    prices the SIB's stand-alone CAMs at 15 parameters, 3 weights apiece."""
    return ECA(kernel_size=3)


# SAM, eq. (9): CBAM spatial attention with a 7x7 kernel, no bias (Table II(c) prices SAM at
# 98 parameters = 2 x 7 x 7); the map multiplies the features ("attention map ... paying
# attention to the useful spatial information").


def _factorised_dw(channels: int, order: str, dilation: int) -> nn.Sequential:
    """Depthwise 3x3 factorised into 3x1 and 1x3 (`order` 'vh' = 3x1 first), each BN + act."""
    kernels = {'v': (3, 1), 'h': (1, 3)}
    return nn.Sequential(*(_conv(channels, channels, kernels[k], dilation=dilation,
                                 groups=channels) for k in order))


class BottleneckResidualUnit(nn.Module):
    """BRU, eqs. (1)-(7): 1x1 to C/2, a local (left), an identity (middle) and a dilated (right)
    branch of factorised depthwise convs with CAM halfway, sum, 1x1 back to C, CAM, residual,
    channel shuffle.

    Readings of the text:
    * "bottleneck": the first 1x1 halves the channels (C -> C/2) and the last restores C; with
      a full-width body the network would have 1.04 M parameters, not the reported 0.62 M.
    * Eq. (3) orders the left branch's second half 3x1 then 1x3; eq. (5) orders the right
      branch's 1x3 then 3x1. Both are taken literally; both halves of the right branch are
      dilated (eqs. (4), (5) both carry r).
    * BN + activation (omitted in the formulas) follow every conv except the last 1x1, which
      gets BN only; the sum of the three branches gets BN + activation before it, and the
      activation follows the residual addition (post-activation, as in ERFNet / LEDNet).
    * Channel shuffle with 2 groups: the text gives no group count. (The authors' code uses
      C/2 groups, which is the inverse permutation of 2 groups; as the next unit starts with
      a dense 1x1, either is equivalent up to a relabelling of its input channels.)
    """

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        mid = channels // 2
        self.reduce = _conv(channels, mid, 1)
        self.left_a = _factorised_dw(mid, 'vh', 1)
        self.left_b = _factorised_dw(mid, 'vh', 1)
        self.right_a = _factorised_dw(mid, 'vh', dilation)
        self.right_b = _factorised_dw(mid, 'hv', dilation)
        self.cam_left = _cam()
        self.cam_mid = _cam()
        self.cam_right = _cam()
        self.merge = _bn_act(mid)
        self.expand = _conv(mid, channels, 1, act=False)
        self.cam_out = _cam()
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)                                      # eq. (1)
        left_half = self.cam_left(self.left_a(reduced))               # eq. (2)
        right_half = self.cam_right(self.right_a(reduced))            # eq. (4)
        middle = left_half + self.cam_mid(reduced) + right_half       # eq. (6)
        total = self.left_b(left_half) + self.right_b(right_half) + middle
        out = self.cam_out(self.expand(self.merge(total)))            # eq. (7)
        return channel_shuffle(self.act(out + x), 2)


class DownsamplingBlock(nn.Module):
    """ENet initial block: [3x3 stride-2 conv to (cout - cin), 2x2 max pool] -> BN -> act.

    Both halves round odd sizes up (padding 1; ceil-mode pooling) so they always concatenate.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout - cin, 3, stride=2, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2, stride=2, ceil_mode=True)
        self.bn_act = _bn_act(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn_act(torch.cat([self.conv(x), self.pool(x)], dim=1))


class UpsamplingBlock(nn.Module):
    """3x3 stride-2 transposed conv -> BN -> act (the ERFNet upsampler; Table I does not say
    which, and a learnt upsampler is what fits the parameter budget).

    `size` is the encoder tensor size at the target scale. The transposed conv always makes
    2x its input (output padding 1) and is cropped to `size`, which equals choosing the output
    padding per size (it only appends the last row / column), so odd sizes round-trip (45 ->
    23 -> 45) without the size arithmetic that makes the tracer warn.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1,
                                       bias=False)
        self.bn_act = _bn_act(cout)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return self.bn_act(self.conv(x)[..., :size[0], :size[1]])


class DetailResidualModule(nn.Module):
    """DRM (Fig. 5a): a 3x3 conv from C to 4C, two depthwise-separable 3x3 convs at 4C, a 1x1
    back to C, identity residual.

    Reading: "increase the number of channels of the second and third convolutional layers to
    4C" is taken as those two layers *working at* 4C, so the first 3x3 does the widening and
    Table I's 16 / 64 / 64 / 16 are the module's input, the two 4C layers and its output. The
    alternative (first 3x3 keeping C, the second widening) costs about 10 K parameters and
    1.2 GMACs at 512x1024; this one 20.6 K and 2.6 GMACs, closer to the 22.5 K parameters and
    2.9 GFLOPs (input size not stated) that Table II(b) charges for adding the SDB.
    Depthwise-separable = depthwise 3x3 + BN + act, then pointwise 1x1 + BN + act
    (MobileNet-v1 style; the text does not say).
    """

    def __init__(self, channels: int, expansion: int = 4):
        super().__init__()
        wide = channels * expansion
        self.body = nn.Sequential(
            _conv(channels, wide, 3),
            _conv(wide, wide, 3, groups=wide),
            _conv(wide, wide, 1),
            _conv(wide, wide, 3, groups=wide),
            _conv(wide, wide, 1),
            _conv(wide, channels, 1, act=False),
        )
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class FeatureAggregation(nn.Module):
    """FAM, eqs. (10)-(13): Y = (X1 + X2) * K_h * K_w, coordinate attention on the sum.

    Reduction 4 (max(8, 16 / 4) = 8 mid channels): the official code's setting. Any r >= 2
    gives the same 8 at 16 channels, since the coordinate-attention floor is 8.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.attention = CoordinateAttention(channels, reduction=4)

    def forward(self, semantic: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        return self.attention(semantic + detail)


class FBSNet(nn.Module):
    """FBSNet, Table I. Input (N, 3, H, W), output (N, num_classes, H, W) logits."""

    def __init__(self, num_classes: int = 19):
        super().__init__()
        # Layer 1: three 3x3 convs, the first with stride 2 -> 16 x H/2 x W/2.
        self.initial = nn.Sequential(_conv(3, 16, 3, stride=2), _conv(16, 16, 3),
                                     _conv(16, 16, 3))
        # Encoder (SIB), layers 2-33.
        self.cam_1 = _cam()
        self.stage_1 = nn.Sequential(*(BottleneckResidualUnit(16, 1) for _ in range(3)))
        self.cam_2 = _cam()
        self.down_1 = DownsamplingBlock(16, 64)
        self.stage_2 = nn.Sequential(*(BottleneckResidualUnit(64, 1) for _ in range(3)))
        self.cam_3 = _cam()
        self.down_2 = DownsamplingBlock(64, 128)
        self.stage_3 = nn.Sequential(*(BottleneckResidualUnit(128, d) for d in _DEEP_DILATIONS))
        self.cam_4 = _cam()
        # Decoder (SIB), layers 34-43: mirror of the encoder's resolutions.
        self.up_1 = UpsamplingBlock(128, 64)
        self.stage_4 = nn.Sequential(*(BottleneckResidualUnit(64, 1) for _ in range(3)))
        self.cam_5 = _cam()
        self.up_2 = UpsamplingBlock(64, 16)
        self.stage_5 = nn.Sequential(*(BottleneckResidualUnit(16, 1) for _ in range(3)))
        self.cam_6 = _cam()
        # Spatial detail branch (SDB), from the initial block's output.
        self.drm = DetailResidualModule(16)
        self.sam = SpatialAttention(7)
        # Layers 44-45.
        self.fam = FeatureAggregation(16)
        self.project = nn.ConvTranspose2d(16, num_classes, 2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        shared = self.initial(x)                                     # 16, 1/2
        half = self.cam_2(self.stage_1(self.cam_1(shared)))          # 16, 1/2
        quarter = self.cam_3(self.stage_2(self.down_1(half)))        # 64, 1/4
        eighth = self.cam_4(self.stage_3(self.down_2(quarter)))      # 128, 1/8
        up = self.cam_5(self.stage_4(self.up_1(eighth, quarter.shape[-2:])))
        semantic = self.cam_6(self.stage_5(self.up_2(up, half.shape[-2:])))
        detail = self.sam(self.drm(shared))
        logits = self.project(self.fam(semantic, detail))    # 2 * ceil(H / 2) x 2 * ceil(W / 2)
        # For odd input sizes the stride-2 convs round up and this is one row / column past
        # the input; cropping it keeps the pixel grid (a resize would shift it). For even sizes
        # it is a no-op, and unconditional, so the traced graph has no shape-dependent branch.
        return logits[..., :height, :width]


@register_model
def fbsnet(*, num_classes: int = 19) -> nn.Module:
    """FBSNet (Gao et al., IEEE TMM 2022): 0.600 M parameters at 19 classes (paper: 0.62 M)."""
    return FBSNet(num_classes)
