"""BiSeNet v1 (Yu et al., ECCV 2018) with a ResNet-18 context path (`bisenet_r18`), and the
lightweight VGG-like context path of the lightweight-BiSeNet paper (`bisenet_lite`, Table 1).

Spatial path: three stride-2 conv-BN-ReLU layers (1/8 resolution) and a 1x1 projection to 128
channels. Context path: features at 1/16 and 1/32, each refined by an Attention Refinement
Module (ARM); the 1/32 branch also gets the global context (global average pool + 1x1 conv),
and the two are merged top-down to 1/8. The Feature Fusion Module (FFM) fuses both paths; two
auxiliary heads supervise the context path during training.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from seg_perception.models.layers.blocks import ConvBNAct
from seg_perception.models.registry import register_model
from seg_perception.models.resnet import ResNet18Features

CONTEXT_CHANNELS = 128  # width of the refined context features (BiSeNet v1)


def _upsample(x: torch.Tensor, like: torch.Tensor | tuple[int, int]) -> torch.Tensor:
    size = like.shape[-2:] if isinstance(like, torch.Tensor) else like
    return F.interpolate(x, size=size, mode='bilinear', align_corners=False)


def scaled(channels: int, width: float) -> int:
    """`channels` x `width`, rounded to a multiple of 8 (at least 8)."""
    return max(8, int(round(channels * width / 8)) * 8)


class SpatialPath(nn.Module):
    def __init__(self, out_channels: int = 128, mid: int = 64):
        super().__init__()
        self.layers = nn.Sequential(
            ConvBNAct(3, mid, 7, stride=2), ConvBNAct(mid, mid, 3, stride=2),
            ConvBNAct(mid, mid, 3, stride=2), ConvBNAct(mid, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class LiteContextBackbone(nn.Module):
    """Table 1 of the lightweight-BiSeNet paper: five pairs of 3x3 conv-BN-ReLU
    (8,16 | 16,32 | 64,64 | 128,128 | 256,256), a 2x2 max-pool after each pair."""

    PAIRS = ((8, 16), (16, 32), (64, 64), (128, 128), (256, 256))

    def __init__(self, width: float = 1.0):
        super().__init__()
        pairs = [(scaled(a, width), scaled(b, width)) for a, b in self.PAIRS]
        stages, cin = [], 3
        for first, second in pairs:
            stages.append(nn.Sequential(ConvBNAct(cin, first), ConvBNAct(first, second),
                                        nn.MaxPool2d(2, 2)))
            cin = second
        self.stages = nn.ModuleList(stages)
        self.channels = (pairs[2][1], pairs[3][1], pairs[4][1])

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = []
        for stage in self.stages:
            x = stage(x)
            feats.append(x)
        return feats[2], feats[3], feats[4]  # 1/8, 1/16, 1/32


class ResNetContextBackbone(ResNet18Features):
    channels = (128, 256, 512)


class AttentionRefinement(nn.Module):
    """ARM: 3x3 conv, then channel attention from global average pooling (1x1 conv, BN,
    sigmoid) multiplied back."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNAct(cin, cout, 3)
        self.attention = nn.Sequential(nn.Conv2d(cout, cout, 1, bias=False),
                                       nn.BatchNorm2d(cout), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * self.attention(feat.mean((2, 3), keepdim=True))


class FeatureFusion(nn.Module):
    """FFM: concat, 1x1 conv-BN-ReLU, then feat + feat x SE-style attention."""

    def __init__(self, cin: int, cout: int, reduction: int = 4):
        super().__init__()
        self.conv = ConvBNAct(cin, cout, 1)
        self.attention = nn.Sequential(
            nn.Conv2d(cout, cout // reduction, 1), nn.ReLU(inplace=True),
            nn.Conv2d(cout // reduction, cout, 1), nn.Sigmoid())

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.conv(torch.cat([spatial, context], dim=1))
        return feat + feat * self.attention(feat.mean((2, 3), keepdim=True))


class SegHead(nn.Sequential):
    def __init__(self, cin: int, mid: int, num_classes: int):
        super().__init__(ConvBNAct(cin, mid, 3), nn.Dropout2d(0.1),
                         nn.Conv2d(mid, num_classes, 1))


class BiSeNet(nn.Module):
    """BiSeNet v1. Eval: (N, num_classes, H, W) logits. Training: (main, aux_16, aux_32),
    all at the input size."""

    # Classifier convs of the three heads: binarize_model keeps them float.
    float_layers = ('head.2', 'aux16.2', 'aux32.2')

    def __init__(self, backbone: nn.Module, num_classes: int, head_channels: int = 256,
                 width: float = 1.0):
        super().__init__()
        c8, c16, c32 = backbone.channels
        del c8  # BiSeNet v1 takes the context path at 1/16 and 1/32 only
        context = scaled(CONTEXT_CHANNELS, width)
        head_channels = scaled(head_channels, width)
        self.spatial_path = SpatialPath(context, scaled(64, width))
        self.backbone = backbone
        self.global_context = ConvBNAct(c32, context, 1)
        self.arm32 = AttentionRefinement(c32, context)
        self.arm16 = AttentionRefinement(c16, context)
        self.refine32 = ConvBNAct(context, context, 3)
        self.refine16 = ConvBNAct(context, context, 3)
        self.ffm = FeatureFusion(2 * context, head_channels)
        self.head = SegHead(head_channels, head_channels, num_classes)
        self.aux16 = SegHead(context, scaled(64, width), num_classes)
        self.aux32 = SegHead(context, scaled(64, width), num_classes)

    def forward(self, x: torch.Tensor):
        size = x.shape[-2:]
        spatial = self.spatial_path(x)
        _, f16, f32 = self.backbone(x)
        context = self.global_context(f32.mean((2, 3), keepdim=True))
        c32 = self.arm32(f32) + context
        c32 = self.refine32(_upsample(c32, f16))
        c16 = self.arm16(f16) + c32
        c16 = self.refine16(_upsample(c16, spatial))
        out = _upsample(self.head(self.ffm(spatial, c16)), size)
        if not self.training:
            return out
        return out, _upsample(self.aux16(c16), size), _upsample(self.aux32(c32), size)


@register_model
def bisenet_r18(*, num_classes: int = 19, backbone_weights: str | None = None) -> BiSeNet:
    """BiSeNet v1 with a ResNet-18 context path.

    Args:
        num_classes: Output classes.
        backbone_weights: Optional local torchvision resnet18 state_dict file (never
            downloaded).
    """
    backbone = ResNetContextBackbone()
    if backbone_weights:
        backbone.load_torchvision_weights(backbone_weights)
    return BiSeNet(backbone, num_classes)


@register_model
def bisenet_lite(*, num_classes: int = 2, width: float = 1.0) -> BiSeNet:
    """BiSeNet v1 with the lightweight context path (lightweight-BiSeNet paper, Table 1).

    Args:
        num_classes: Output classes.
        width: Channel multiplier for every layer (rounded to multiples of 8); 1.0 is the
            paper's network. Not in the paper: 0.5 (0.73 M parameters, about 1/4 of the
            compute) is what the shipped binary human / vehicle models use, so three nodes fit
            one Jetson (and the package's 30 MB model budget).
    """
    if not 0.0 < width <= 4.0:
        raise ValueError(f'width must be in (0, 4], got {width}')
    return BiSeNet(LiteContextBackbone(width), num_classes, width=width)
