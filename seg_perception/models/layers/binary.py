"""Binary convolution: sign activations x scaled sign weights (BiSegUNet eqs. 22-23), with
the BiDense DAB binarizer and CFB bypass as options, a float mode for phased binarisation and
an export-friendly deploy mode.

Conventions (ReActNet where the papers are silent):
- Sign(0) = +1 (BiDense eq. 1); torch.sign(0) = 0 would make the layer ternary.
- Activation gradients: 'ste' is the clipped identity 1{|x| <= 1}; 'approx_sign' is
  ReActNet's piecewise quadratic, d/dx = 2 + 2x on [-1, 0), 2 - 2x on [0, 1), else 0.
- Weights: sign(W) * alpha, alpha per output channel. The weight gradient is ReActNet's
  clipped identity 1{|W| <= 1} (no alpha factor); 'mean' alpha = mean |W| over (in, kh, kw) is
  a constant of the step (ReActNet detaches it), 'learnable' alpha gets
  sum(grad * sign(W)). alpha > 0 (eq. 23) is kept by using |alpha|.
- Estimators are autograd Functions whose forward is the pure sign, so the training forward
  gives bit-identical values to the deploy forward.
- Zero padding is applied after binarisation (pads are 0, not +1), as in ReActNet.
- INT8 Q/DQ export (`set_qdq_export`, used only while exporting): the deploy forward with
  the activation sign through an INT8 fake-quantiser (scale 1) and the weights as INT8 sign(W)
  dequantised with scale alpha, which the ONNX exporter writes as QuantizeLinear /
  DequantizeLinear; +-1 and +-alpha are exact in INT8 x scale, so the values do not change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from seg_perception.models.layers.bidense import (
    ChannelAdaptiveBypass,
    DistributionAdaptiveBinarizer,
)

ESTIMATORS = ('ste', 'approx_sign')
WEIGHT_SCALES = ('mean', 'learnable')
BINARIZERS = ('sign', 'dab')
# INT8 range of the export fake-quantiser: the TorchScript exporter accepts only (-128, 127)
# for signed INT8; the values are +-1, so the range never clips.
QMIN, QMAX = -128, 127


def sign(x: torch.Tensor) -> torch.Tensor:
    """+1 where x >= 0, else -1, in x's dtype (ONNX: GreaterOrEqual + Where)."""
    out = torch.where(x >= 0, 1.0, -1.0)
    return out if out.dtype == x.dtype else out.to(x.dtype)


class _SurrogateSign(torch.autograd.Function):
    """Sign forward; subclasses give the surrogate gradient d sign(x) / dx as `slope(x)`."""

    @staticmethod
    def slope(x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return sign(x)

    @classmethod
    def backward(cls, ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * cls.slope(x).to(grad.dtype)


class _SignSTE(_SurrogateSign):
    """Clipped-identity gradient 1{|x| <= 1} (BNN / BiSegUNet STE)."""

    @staticmethod
    def slope(x: torch.Tensor) -> torch.Tensor:
        return x.abs() <= 1


class _ApproxSign(_SurrogateSign):
    """ReActNet ApproxSign gradient: 2 + 2x on [-1, 0) and 2 - 2x on [0, 1) are both
    2 - 2|x|; zero outside."""

    @staticmethod
    def slope(x: torch.Tensor) -> torch.Tensor:
        return (2 - 2 * x.abs()).clamp_min(0)


class _ScaledSignWeight(torch.autograd.Function):
    """sign(W) * alpha forward; W gets the clipped identity, alpha sum(grad * sign(W))."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(weight)
        return scaled_sign(weight, alpha)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (weight,) = ctx.saved_tensors
        grad_weight = grad_alpha = None
        if ctx.needs_input_grad[0]:
            grad_weight = grad * (weight.abs() <= 1).to(grad.dtype)
        if ctx.needs_input_grad[1]:
            grad_alpha = (grad * sign(weight)).sum((1, 2, 3), keepdim=True)
        return grad_weight, grad_alpha


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """Sign with the straight-through estimator (gradient 1{|x| <= 1})."""
    return _SignSTE.apply(x)


def approx_sign(x: torch.Tensor) -> torch.Tensor:
    """Sign with ReActNet's ApproxSign gradient."""
    return _ApproxSign.apply(x)


def scaled_sign(weight: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """sign(W) * alpha (eqs. 22-23), no gradient machinery."""
    return sign(weight) * alpha


def qdq_sign(x: torch.Tensor) -> torch.Tensor:
    """sign(x) through an INT8 fake-quantiser with scale 1, zero point 0: the same +-1 values,
    exported as QuantizeLinear / DequantizeLinear after the sign."""
    return torch.fake_quantize_per_tensor_affine(sign(x), 1.0, 0, QMIN, QMAX)


class _DequantizeInt8(torch.autograd.Function):
    """(q - zero point) x scale per output channel; exported as one DequantizeLinear (axis 0)
    of the INT8 constant q. A fake-quantiser would not do for weights: the tracer folds it on
    a constant tensor, leaving a float weight in the graph."""

    @staticmethod
    def forward(ctx: Any, q: torch.Tensor, scale: torch.Tensor,
                zero_point: torch.Tensor) -> torch.Tensor:
        shape = (-1,) + (1,) * (q.dim() - 1)
        return (q.to(scale.dtype) - zero_point.to(scale.dtype).view(shape)) * scale.view(shape)

    @staticmethod
    def symbolic(g: Any, q: Any, scale: Any, zero_point: Any) -> Any:
        return g.op('DequantizeLinear', q, scale, zero_point, axis_i=0)


def _check_option(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f'{name} must be one of {", ".join(map(repr, allowed))}, '
                         f'got {value!r}')


class BinaryConv2d(nn.Conv2d):
    """A Conv2d with binary activations and scaled binary weights.

    Three forwards: float (`binary = False`: exactly nn.Conv2d on the latent weights, for
    phased binarisation), binary (training: straight-through estimators) and deploy (after
    `deploy()`: precomputed binary weights, pure sign; bit-identical to binary in eval).

    Args:
        binary: Start binary (True) or float (False); switchable at run time.
        estimator: Activation gradient: 'ste' or 'approx_sign'.
        weight_scale: Per-output-channel alpha: 'mean' (mean |W|) or 'learnable' (a parameter
            initialised to mean |W|, BiSegUNet eq. 23).
        binarizer: 'sign' (plain sign of the activations) or 'dab' (BiDense DAB, eqs. 4-10).
        cfb: Add the BiDense full-precision bypass (eqs. 12-13); raises ValueError when the
            conv's geometry cannot be bridged by pooling.
        input_bn: BatchNorm the input before binarising it (the Bi-Real / XNOR-Net order
            BN -> sign -> conv). Needed where the input comes from a ReLU: sign(x >= 0) is +1
            everywhere and the layer would pass no information at all.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 kernel_size: int | tuple[int, int], stride: int | tuple[int, int] = 1,
                 padding: int | tuple[int, int] | str = 0, dilation: int | tuple[int, int] = 1,
                 groups: int = 1, bias: bool = False, *, binary: bool = True,
                 estimator: str = 'ste', weight_scale: str = 'mean', binarizer: str = 'sign',
                 cfb: bool = False, input_bn: bool = False):
        _check_option('estimator', estimator, ESTIMATORS)
        _check_option('weight_scale', weight_scale, WEIGHT_SCALES)
        _check_option('binarizer', binarizer, BINARIZERS)
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias)
        self.binary = binary
        self.estimator = estimator
        self.weight_scale = weight_scale
        self.deployed = False
        self.alpha: nn.Parameter | None = None
        if weight_scale == 'learnable':
            self.alpha = nn.Parameter(self._mean_abs_weight())
        self.input_norm = nn.BatchNorm2d(in_channels) if input_bn else None
        self.dab = DistributionAdaptiveBinarizer(in_channels) if binarizer == 'dab' else None
        self.cfb = (ChannelAdaptiveBypass(in_channels, out_channels,
                                          kernel_size=self.kernel_size, stride=self.stride,
                                          padding=self.padding, dilation=self.dilation)
                    if cfb else None)
        # Deploy-time sign(W) * alpha; not persistent so checkpoints stay mode-independent.
        self.register_buffer('weight_bin', None, persistent=False)
        # Export switch (set_qdq_export): None, or (INT8 sign(W), scale alpha, zero point 0).
        # Plain tensors, so an ONNX trace records them as constants.
        self.qdq_params: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, *, binary: bool = True, estimator: str = 'ste',
                  weight_scale: str = 'mean', binarizer: str = 'sign',
                  cfb: bool = False, input_bn: bool = False) -> BinaryConv2d:
        """A BinaryConv2d with `conv`'s shape, padding mode, weights and bias (copied)."""
        layer = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                    conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                    binary=binary, estimator=estimator, weight_scale=weight_scale,
                    binarizer=binarizer, cfb=cfb, input_bn=input_bn)
        layer.padding_mode = conv.padding_mode
        layer.to(device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            layer.weight.copy_(conv.weight)
            if conv.bias is not None:
                layer.bias.copy_(conv.bias)
        layer.reset_alpha()
        return layer

    @property
    def binarizer(self) -> str:
        return 'dab' if self.dab is not None else 'sign'

    def _mean_abs_weight(self) -> torch.Tensor:
        return self.weight.detach().abs().mean((1, 2, 3), keepdim=True)

    def reset_alpha(self) -> None:
        """Re-initialises a learnable alpha to mean |W| (after loading new weights)."""
        if self.alpha is not None:
            with torch.no_grad():
                self.alpha.copy_(self._mean_abs_weight())

    def _alpha(self) -> torch.Tensor:
        """(out, 1, 1, 1) scale: mean |W| (no gradient, as ReActNet) or |learnable alpha|."""
        return self._mean_abs_weight() if self.alpha is None else self.alpha.abs()

    def binarized_weight(self) -> torch.Tensor:
        """sign(W) * alpha, detached."""
        with torch.no_grad():
            return scaled_sign(self.weight, self._alpha())

    def _binarize_input(self, x: torch.Tensor,
                        sign_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        if self.input_norm is not None:
            x = self.input_norm(x)
        return sign_fn(x) if self.dab is None else self.dab(x, sign_fn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.binary:
            return super().forward(x)
        if self.deployed and self.qdq_params is not None:
            weight = _DequantizeInt8.apply(*self.qdq_params)
            out = self._conv_forward(self._binarize_input(x, qdq_sign), weight, self.bias)
        elif self.deployed:
            out = self._conv_forward(self._binarize_input(x, sign), self.weight_bin, self.bias)
        else:
            sign_fn = sign_ste if self.estimator == 'ste' else approx_sign
            weight = _ScaledSignWeight.apply(self.weight, self._alpha())
            out = self._conv_forward(self._binarize_input(x, sign_fn), weight, self.bias)
        return out if self.cfb is None else self.cfb(x, out)

    def deploy(self) -> BinaryConv2d:
        """Deploy mode (eval): sign(W) * alpha precomputed into `weight_bin`, activations
        through the pure sign. Nothing else is folded: DAB's threshold and scale depend on
        the input, and folding BN or alpha elsewhere would reorder float arithmetic and break
        the bit-exact match with the binary eval forward. Call again after changing weights.
        """
        self.eval()
        self.weight_bin = self.binarized_weight().contiguous()
        self.deployed = True
        return self

    def set_qdq_export(self, enabled: bool) -> None:
        """Export switch (deploy mode; for `models.export` while it exports): the weights
        become INT8 sign(W) dequantised per output channel with scale alpha and zero point 0
        (+-1 x alpha = `weight_bin` exactly), the sign activations pass an INT8 fake-quantiser
        with scale 1 and zero point 0 (+-1 unchanged), so the ONNX graph holds Q/DQ pairs and
        the outputs are bit-identical to the plain deploy forward. A channel with alpha = 0
        (all-zero weights) gets scale 1 and INT8 zeros, also exact. Call after deploy().
        """
        if not enabled:
            self.qdq_params = None
            return
        if not self.deployed:
            raise RuntimeError('set_qdq_export needs deploy mode (call deploy() first)')
        weight = self.weight_bin.detach().float()
        # Every entry of a weight_bin row is +-alpha, so max |row| is alpha exactly.
        alpha = weight.abs().amax((1, 2, 3))
        scale = torch.where(alpha > 0, alpha, torch.ones_like(alpha)).contiguous()
        q = torch.round(weight / scale.view(-1, 1, 1, 1)).to(torch.int8)  # alpha / alpha = 1
        self.qdq_params = (q, scale, torch.zeros_like(scale, dtype=torch.int8))

    def extra_repr(self) -> str:
        return (f'{super().extra_repr()}, binary={self.binary}, estimator={self.estimator}, '
                f'weight_scale={self.weight_scale}, binarizer={self.binarizer}, '
                f'deployed={self.deployed}')
