"""jetseg: JetSeg (Lopez-Montiel, Lopez, Montiel, 2023), "Efficient real-time semantic
segmentation model for low-power GPU-embedded systems".

JetNet encoder + RegSeg-style decoder: 33,070 parameters in the default Nano mode (19
classes) and 0.96 GMACs at 512x512.

Encoder (JetNet), strides relative to the input:
    S0  input block: JetConv(3 -> 8, stride 2), BN, REU                               1/2
    S1  JetBlock 8 -> 16, CBAM                                                        1/4
    S2  residual JetBlock 16, JetBlock 16 -> 32, residual 32, JetBlock 32 -> 48; SAM   1/16
    S3  residual 48, JetBlock 48 -> 64, residual 64, JetBlock 64 -> 64 (stride 1); ECA 1/32
JetBlock: grouped 1x1 expansion, BN, REU, channel shuffle, JetConv, attention, REU,
grouped 1x1 projection (+ identity for the residual blocks).
JetConv: depthwise 3x3 (carries the stride), depthwise dilated 3x1 and 1x3, grouped 1x1.
Decoder: 1x1 conv-BN-REU heads (64 ch) on the 1/2, 1/8 and 1/32 features, summed top-down
to 1/2, a 1x1 conv-BN-REU, concat with the 1/2 head, a 1x1 conv-BN-REU, a 1x1 classifier,
bilinear upsampling to the input size.

The paper's text does not give JetConv / JetBlock / decoder details (its section 2.1-2.2 and
figures are lost in our copy); where it is silent this follows the authors' public code
(github.com/mmontielpz/jetseg, Nano mode = mode 3, combination 0), which measures ~32 K
params and 1.04 GMACs at 512x512 with 32 classes. Readings and deviations, each also noted
where it is implemented:
- Stage layout: the official code derives the blocks from the input size (512x512 gives the
  table above); it is fixed here to that 512x512 layout so any input size builds the same net.
- JetConv: one 3x1 / 1x3 dilated pair + one 3x3 (the official combination 0 chains 7x1/1x7,
  5x1/1x5, 3x3 and 1x1 depthwise kernels, varying by stage); dilation per stage = the largest
  dilation the official kernels use in that stage (3, 3, 2, 1).
- Downsampling: in the depthwise 3x3 of JetConv, not a stride-2 1x1 expansion (official),
  which would drop 3/4 of the pixels unseen. MACs move by < 1 %.
- Residual blocks: one identity around the whole block (official code adds the input around
  every layer of the block; the paper says "skip connection ... for each block").
- Decoder: heads are summed top-down 1/32 -> 1/8 -> 1/2 before the fuse conv. The official
  loop drops the 1/32 head (stage 3 gets no gradient); summing all of them keeps its parameter
  count and its fuse conv at 1/2 resolution, hence its ~1 GMAC.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
import torch.nn.functional as F

from seg_perception.models.layers.activations import REU, TanhExp
from seg_perception.models.layers.blocks import ConvBNAct, channel_shuffle
from seg_perception.models.layers.cbam import CBAM, SpatialAttention
from seg_perception.models.layers.eca import ECA
from seg_perception.models.registry import register_model

Mode = Literal['nano', 'agx', 'workstation']
Activation = Literal['reu', 'tanhexp']
Attention = Literal['cbam', 'sam', 'eca']

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {'reu': REU, 'tanhexp': TanhExp}


@dataclass(frozen=True)
class JetSegMode:
    """Widths and depths of one JetSeg configuration (values from the official code).

    Attributes:
        base: Channels out of the input block, and the per-stage channel increment.
        max_channels: Cap on a JetBlock's output channels.
        max_expand: Cap on a JetBlock's expanded channels.
        decoder_channels: Width of the decoder heads and fuse conv.
        last_channels: Width of the conv before the classifier.
        residuals: Residual JetBlocks per resolution level, for stages S0..S3.
    """

    base: int
    max_channels: int
    max_expand: int
    decoder_channels: int
    last_channels: int
    residuals: tuple[int, int, int, int]


MODES: dict[str, JetSegMode] = {
    'nano': JetSegMode(8, 64, 64, 64, 64, (0, 0, 1, 1)),  # Jetson Nano, the default
    'agx': JetSegMode(16, 256, 256, 256, 256, (0, 2, 4, 2)),  # Jetson AGX Xavier
    'workstation': JetSegMode(32, 512, 1024, 512, 512, (0, 2, 4, 2)),
}

# (stage, stride) of each resolution level after the input block: the official layout for
# a 512x512 input (levels at 256, 128, 64, 32, 16 px; no downsampling at its last, 16 px).
_LEVELS = ((1, 2), (2, 2), (2, 2), (3, 2), (3, 1))
# Paper, sec. 2: S0/S1 use CBAM, S2 only its spatial attention module (SAM), S3 ECA.
_STAGE_ATTENTION: tuple[Attention | None, ...] = (None, 'cbam', 'sam', 'eca')
# Guess: dilation of JetConv's 3x1 / 1x3 pair per stage. The official kernels' dilation
# grows with their size (5 -> 2, 7 -> 3); S0/S1 use up to 7, S2 up to 5, S3 only 3x3 / 1x1.
_STAGE_DILATION = (3, 3, 2, 1)
# Levels whose input (the output of their residual blocks) the decoder taps: 1/2 and 1/8.
_SKIP_LEVELS = (0, 2)


def mean_divisor_groups(cin: int, cout: int) -> int:
    """Groups of a 1x1 conv cin -> cout: the common divisor nearest the divisors' mean.

    The paper's JetBlock "estimates the number of group convolutions"; this is the official
    code's estimate (ties go to the smaller divisor). E.g. (8, 16) -> 4, (16, 16) -> 8,
    (64, 64) -> 16, (48, 48) -> 12, (3, 8) -> 1.
    """
    divisors = [g for g in range(1, min(cin, cout) + 1) if cin % g == 0 and cout % g == 0]
    mean = sum(divisors) / len(divisors)
    return min(divisors, key=lambda g: abs(g - mean))


def _attention(kind: Attention | None, channels: int) -> nn.Module:
    if kind == 'cbam':
        return CBAM(channels, reduction=8)  # official reduction; CBAM's paper uses 16
    if kind == 'sam':
        # The official "SAM" class is a 1x1-conv gate; the paper cites CBAM's SAM [20].
        return SpatialAttention(7)
    if kind == 'eca':
        return ECA(channels)  # adaptive kernel size, gamma = 2, b = 1
    return nn.Identity()


class JetConv(nn.Module):
    """Depthwise 3x3 (stride), depthwise dilated 3x1 and 1x3, grouped pointwise cin -> cout.

    No BN / activation between the depthwise convs, as in the official code: together they
    act as one factorised large-receptive-field depthwise kernel.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.square = nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False)
        self.vertical = nn.Conv2d(cin, cin, (3, 1), 1, (dilation, 0), (dilation, 1),
                                  groups=cin, bias=False)
        self.horizontal = nn.Conv2d(cin, cin, (1, 3), 1, (0, dilation), (1, dilation),
                                    groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, groups=mean_divisor_groups(cin, cout),
                                   bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.horizontal(self.vertical(self.square(x))))


class JetBlock(nn.Module):
    """Grouped 1x1 expand, BN, act, channel shuffle, JetConv, attention, act, grouped 1x1.

    The projection has no BN after it (paper sec. 2.3 and official code end the block with
    "REU and 1x1 GPCConv"). Residual blocks (stride 1, cin == cout) add their input.
    """

    def __init__(self, cin: int, cout: int, cexp: int, *, stride: int, dilation: int,
                 attention: Attention | None, act_layer: Callable[[], nn.Module],
                 residual: bool):
        super().__init__()
        if residual and (stride != 1 or cin != cout):
            raise ValueError('a residual JetBlock needs stride 1 and cin == cout')
        self.residual = residual
        self.shuffle_groups = mean_divisor_groups(cin, cexp)
        self.expand = ConvBNAct(cin, cexp, 1, groups=self.shuffle_groups, act_layer=act_layer)
        self.jetconv = JetConv(cexp, cexp, stride, dilation)
        self.attention = _attention(attention, cexp)
        self.act = act_layer()
        self.project = nn.Conv2d(cexp, cout, 1, groups=mean_divisor_groups(cexp, cout),
                                 bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x)
        if self.shuffle_groups > 1:  # fixed at build time, not data-dependent
            y = channel_shuffle(y, self.shuffle_groups)
        y = self.project(self.act(self.attention(self.jetconv(y))))
        return x + y if self.residual else y


def _level_channels(stage: int, cin: int, mode: JetSegMode) -> tuple[int, int]:
    """(expanded, output) channels of a level's downsampling JetBlock (official rule)."""
    if stage == 1:
        cout = cin + mode.base
    elif stage == 2:
        cout = cin + 2 * mode.base
    else:
        cout = 2 * cin
    return min(2 * cin, mode.max_expand), min(cout, mode.max_channels)


class JetNet(nn.Module):
    """JetNet encoder; returns the 1/2, 1/8 and 1/32 features.

    Attributes:
        skip_channels: Channels of the three returned features, shallow to deep.
    """

    def __init__(self, mode: JetSegMode, act_layer: Callable[[], nn.Module],
                 in_channels: int = 3):
        super().__init__()
        # S0, the input block (paper fig. 3a): JetConv, BN, activation.
        self.stem = nn.Sequential(
            JetConv(in_channels, mode.base, stride=2, dilation=_STAGE_DILATION[0]),
            nn.BatchNorm2d(mode.base), act_layer())
        channels = mode.base
        skips: list[int] = []
        self.residual_blocks = nn.ModuleList()
        self.down_blocks = nn.ModuleList()
        for index, (stage, stride) in enumerate(_LEVELS):
            common = dict(dilation=_STAGE_DILATION[stage], attention=_STAGE_ATTENTION[stage],
                          act_layer=act_layer)
            self.residual_blocks.append(nn.Sequential(*(
                JetBlock(channels, channels, channels, stride=1, residual=True, **common)
                for _ in range(mode.residuals[stage]))))
            if index in _SKIP_LEVELS:
                skips.append(channels)
            cexp, cout = _level_channels(stage, channels, mode)
            self.down_blocks.append(
                JetBlock(channels, cout, cexp, stride=stride, residual=False, **common))
            channels = cout
        self.skip_channels = (*skips, channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem(x)
        skips = []
        for index, (residual, down) in enumerate(
                zip(self.residual_blocks, self.down_blocks, strict=True)):
            x = residual(x)
            if index in _SKIP_LEVELS:
                skips.append(x)
            x = down(x)
        return skips[0], skips[1], x


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, size=like.shape[-2:], mode='bilinear', align_corners=False)


class RegSegDecoder(nn.Module):
    """RegSeg-style decoder over (1/2, 1/8, 1/32) features, output at 1/2 resolution.

    The convs are 1x1 as in the official code (RegSeg's own fuse convs are 3x3).
    """

    def __init__(self, skip_channels: tuple[int, int, int], width: int, last: int,
                 num_classes: int, act_layer: Callable[[], nn.Module]):
        super().__init__()
        shallow, middle, deep = skip_channels
        self.head_shallow = ConvBNAct(shallow, width, 1, act_layer=act_layer)
        self.head_middle = ConvBNAct(middle, width, 1, act_layer=act_layer)
        self.head_deep = ConvBNAct(deep, width, 1, act_layer=act_layer)
        self.fuse = ConvBNAct(width, width, 1, act_layer=act_layer)
        self.last = ConvBNAct(2 * width, last, 1, act_layer=act_layer)
        self.classifier = nn.Conv2d(last, num_classes, 1)

    def forward(self, shallow: torch.Tensor, middle: torch.Tensor,
                deep: torch.Tensor) -> torch.Tensor:
        s = self.head_shallow(shallow)
        m = self.head_middle(middle)
        x = m + _resize(self.head_deep(deep), m)  # resize to the real skip sizes (360 px)
        x = self.fuse(s + _resize(x, s))
        return self.classifier(self.last(torch.cat([x, s], dim=1)))


class JetSeg(nn.Module):
    """JetNet encoder + RegSeg-style decoder; logits (N, num_classes, H, W) at input size."""

    def __init__(self, num_classes: int, mode: Mode = 'nano', activation: Activation = 'reu'):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f'unknown JetSeg mode {mode!r} (one of {", ".join(MODES)})')
        if activation not in _ACTIVATIONS:
            raise ValueError(f'unknown activation {activation!r} '
                             f'(one of {", ".join(_ACTIVATIONS)})')
        config = MODES[mode]
        act_layer = _ACTIVATIONS[activation]
        self.encoder = JetNet(config, act_layer)
        self.decoder = RegSegDecoder(self.encoder.skip_channels, config.decoder_channels,
                                     config.last_channels, num_classes, act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _resize(self.decoder(*self.encoder(x)), x)


@register_model
def jetseg(*, num_classes: int = 19, mode: Mode = 'nano',
           activation: Activation = 'reu') -> JetSeg:
    """JetSeg; `mode` 'nano' (default, 33 K params), 'agx' (346 K) or 'workstation' (1.27 M).

    Args:
        num_classes: Output classes.
        mode: Official width / depth configuration (see `MODES`).
        activation: 'reu' everywhere (paper sec. 2.3), or 'tanhexp', the official code's
            alternative.
    """
    return JetSeg(num_classes, mode, activation)
