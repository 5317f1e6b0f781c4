"""BiSegUNet (IEEE Access): a binary U-shaped network with Capacity Blocks.

Multi-Stream Gateway (parallel float convs, concatenated: eq. 1) -> four binary stride-2
encoder stages (Table 1) -> a Capacity Block on every skip (eqs. 3-10) -> ASPP with rates
1, 6, 12, 18 and the self-attention ANP at the bottleneck (eqs. 11-14) -> decoder that fuses
the bottleneck with the top skip (eq. 15), then upsamples and adds each skip (eq. 16, Table 1
"addition") -> a Capacity Block on the decoder output -> 1x1 head (eq. 17).

Table 1 widths (stem 128, stages 256 / 512 / 1024 / 2048, bottleneck 1024) are multiplied by
`width`. The default 0.125 (stages 32..256) trains on a CPU in tens of minutes; width=1.0 is
the paper's size.

Readings where the text is open (each chosen to keep the paper's structure):
- Gateway: three parallel conv-BN-ReLU streams with 3x3, 5x5, 7x7 kernels giving C/4, C/4 and
  C/2 channels (C = 128 x width), concatenated. Kept float: BNNs keep the first layer float.
- Encoder stage: BN, binary 3x3 stride-2 conv, BN, PReLU (Bi-Real / ReActNet: BN before the
  sign so that inputs from ReLUs do not binarise to a constant +1; a learnable-slope
  activation after each binary conv).
- Capacity Block: four branches of C/4 channels each (Table 1: the binary part gives 0.5 C):
  two sequential binary 3x3 (B1), one binary 3x3 (B2), a float 7x7 conv with dilation 2 (D),
  a float grouped 3x3 (G, `groups` groups); concatenated to C, then SE channel attention
  (eqs. 8-10, reduction 8).
- ASPP branch outputs are bottleneck/4 each (rate 1 is a 1x1 conv), concatenated; ANP's
  Q / K are 1x1 projections to bottleneck/8 channels, V to the bottleneck width, and the
  output is exactly A V (eq. 14), no residual.
- Decoder fusions H are 3x3 conv-BN-ReLU; upsampling is bilinear.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

from seg_perception.models.layers.binary import BinaryConv2d
from seg_perception.models.layers.blocks import ConvBNAct
from seg_perception.models.registry import register_model

STEM, STAGES, BOTTLENECK = 128, (256, 512, 1024, 2048), 1024  # Table 1, width 1.0


def _ch(channels: int, width: float, multiple: int = 4) -> int:
    """Scales a Table 1 width, rounded to a multiple of 4 (branches split C in quarters)."""
    return max(multiple, int(round(channels * width / multiple)) * multiple)


class BinaryConvBN(nn.Sequential):
    """BN -> binary 3x3 conv (BinaryConv2d with input_bn) -> BN -> PReLU."""

    def __init__(self, cin: int, cout: int, stride: int, binary_opts: dict):
        super().__init__(BinaryConv2d(cin, cout, 3, stride, 1, input_bn=True, **binary_opts),
                         nn.BatchNorm2d(cout), nn.PReLU(cout))


class SqueezeExcite(nn.Module):
    """Channel attention of eqs. 8-10: global mean, two-layer MLP, sigmoid, rescale."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        hidden = max(4, channels // reduction)
        self.mlp = nn.Sequential(nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, channels, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mlp(x.mean((2, 3), keepdim=True))


class CapacityBlock(nn.Module):
    """Eqs. 3-10: [B1(B2(x)) | B3(x) | D(x) | G(x)] concatenated, then SE attention."""

    def __init__(self, channels: int, binary_opts: dict, groups: int = 4):
        super().__init__()
        quarter = channels // 4
        self.b_seq = nn.Sequential(BinaryConvBN(channels, quarter, 1, binary_opts),
                                   BinaryConvBN(quarter, quarter, 1, binary_opts))
        self.b_par = BinaryConvBN(channels, quarter, 1, binary_opts)
        self.dilated = ConvBNAct(channels, quarter, 7, dilation=2)
        self.grouped = ConvBNAct(channels, quarter, 3,
                                 groups=groups if channels % groups == 0 and quarter % groups == 0
                                 else 1)
        self.attention = SqueezeExcite(4 * quarter)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.cat([self.b_seq(x), self.b_par(x), self.dilated(x), self.grouped(x)], 1)
        return self.attention(out)


class MultiStreamGateway(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        quarter = channels // 4
        self.streams = nn.ModuleList([ConvBNAct(3, quarter, 3), ConvBNAct(3, quarter, 5),
                                      ConvBNAct(3, channels - 2 * quarter, 7)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([stream(x) for stream in self.streams], 1)


class ASPP(nn.Module):
    """Eq. 11: parallel convs with dilation rates (1 = 1x1), concatenated."""

    def __init__(self, cin: int, cout: int, rates: tuple[int, ...] = (1, 6, 12, 18)):
        super().__init__()
        branch = cout // len(rates)
        self.branches = nn.ModuleList(
            [ConvBNAct(cin, branch, 1) if r == 1 else ConvBNAct(cin, branch, 3, dilation=r)
             for r in rates])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


class AttentionNetworkPart(nn.Module):
    """ANP, eqs. 12-14: spatial self-attention softmax(Q K^T / sqrt(d_k)) V."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.key_dim = max(8, cin // 8)
        self.query = nn.Conv2d(cin, self.key_dim, 1)
        self.key = nn.Conv2d(cin, self.key_dim, 1)
        self.value = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)          # (N, HW, d_k)
        k = self.key(x).flatten(2)                            # (N, d_k, HW)
        v = self.value(x).flatten(2).transpose(1, 2)          # (N, HW, C)
        attn = torch.softmax(q @ k / self.key_dim ** 0.5, dim=-1)
        return (attn @ v).transpose(1, 2).reshape(n, -1, h, w)


class BiSegUNet(nn.Module):
    def __init__(self, num_classes: int, width: float, binary_opts: dict):
        super().__init__()
        stem = _ch(STEM, width)
        stages = [_ch(c, width) for c in STAGES]
        bottleneck = _ch(BOTTLENECK, width)
        self.gateway = MultiStreamGateway(stem)
        self.encoder = nn.ModuleList(
            BinaryConvBN(cin, cout, 2, binary_opts)
            for cin, cout in zip([stem, *stages[:-1]], stages, strict=True))
        self.capacity = nn.ModuleList(CapacityBlock(c, binary_opts) for c in stages)
        self.aspp = ASPP(stages[-1], bottleneck)
        self.anp = AttentionNetworkPart(bottleneck, bottleneck)
        # Decoder stage 1 fuses the bottleneck with the top skip (eq. 15); stages 2-4 add the
        # next skip to the upsampled features and fuse (eq. 16). Output widths per Table 1.
        outs = [stages[2], stages[1], stages[0], stem]
        self.fuse = nn.ModuleList([ConvBNAct(bottleneck + stages[3], outs[0])] + [
            ConvBNAct(cin, cout) for cin, cout in zip(outs[:-1], outs[1:], strict=True)])
        self.out_capacity = CapacityBlock(stem, binary_opts)
        self.head = nn.Conv2d(stem, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feat = self.gateway(x)
        skips = []
        for stage, capacity in zip(self.encoder, self.capacity, strict=True):
            feat = stage(feat)
            skips.append(capacity(feat))
        bottleneck = self.anp(self.aspp(skips[-1]))
        dec = self.fuse[0](torch.cat([bottleneck, skips[-1]], 1))
        for fuse, skip in zip(self.fuse[1:], reversed(skips[:-1]), strict=True):
            dec = F.interpolate(dec, size=skip.shape[-2:], mode='bilinear', align_corners=False)
            dec = fuse(dec + skip)
        dec = F.interpolate(dec, size=size, mode='bilinear', align_corners=False)
        return self.head(self.out_capacity(dec))


@register_model
def bisegunet(*, num_classes: int = 19, width: float = 0.125, binary: bool = True,
              estimator: str = 'ste', weight_scale: str = 'mean', binarizer: str = 'sign',
              cfb: bool = False) -> BiSegUNet:
    """BiSegUNet.

    Args:
        num_classes: Output classes.
        width: Multiplier of Table 1's channel widths (1.0 = paper; default fits a CPU).
        binary: Binary convs start binary (False: the same network in float, its float twin;
            phased binarisation switches layers later).
        estimator, weight_scale, binarizer, cfb: BinaryConv2d options.
    """
    if width <= 0:
        raise ValueError(f'width must be positive, got {width}')
    opts = dict(binary=binary, estimator=estimator, weight_scale=weight_scale,
                binarizer=binarizer, cfb=cfb)
    return BiSegUNet(num_classes, width, opts)
