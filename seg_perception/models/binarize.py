"""Whole-model binarisation helpers: swap convs for BinaryConv2d, phased binarisation, deploy
mode and the BiSegUNet binary-weight regulariser (eq. 24).

Depth order: with `example_input`, the order in which convs first run in one forward pass
(hooks, eval mode, no grad; convs that do not run come last in registration order); without
it, module registration order (`named_modules`), which equals forward order for models that
register their layers in the order they use them (fcn_tiny does).
"""

from __future__ import annotations

from collections.abc import Callable
import math

import torch
from torch import nn

from seg_perception.models.layers.binary import BinaryConv2d, sign

REDUCTIONS = ('sum', 'mean')


def _trace(model: nn.Module, modules: list[tuple[str, nn.Module]],
           example_input: torch.Tensor) -> dict[str, torch.Tensor]:
    """{name: the input of its first call}, in call order, from one eval, no-grad forward."""
    first_input: dict[str, torch.Tensor] = {}

    def recorder(name: str) -> Callable[[nn.Module, tuple], None]:
        def hook(_module: nn.Module, inputs: tuple) -> None:  # returns None: input unchanged
            first_input.setdefault(name, inputs[0])
        return hook

    handles = [m.register_forward_pre_hook(recorder(name)) for name, m in modules]
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()  # no BN running-statistics updates from the trace
        with torch.no_grad():
            model(example_input)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes:
            module.training = training
    return first_input


def _sort_by_calls(modules: list[tuple[str, nn.Module]],
                   calls: dict[str, torch.Tensor]) -> list[tuple[str, nn.Module]]:
    rank = {name: i for i, name in enumerate(calls)}
    unused = len(modules)  # modules that did not run go last, in registration order
    order = {name: rank.get(name, unused + i) for i, (name, _) in enumerate(modules)}
    return sorted(modules, key=lambda item: order[item[0]])


def _depth_order(model: nn.Module, example_input: torch.Tensor | None,
                 kind: type[nn.Module] = nn.Conv2d) -> list[tuple[str, nn.Module]]:
    """(name, module) of every `kind` module of `model`, in depth order (module docstring)."""
    found = [(name, m) for name, m in model.named_modules() if isinstance(m, kind)]
    if example_input is None or not found:
        return found
    return _sort_by_calls(found, _trace(model, found, example_input))


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition('.')
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def binarize_model(model: nn.Module, *, estimator: str = 'ste', weight_scale: str = 'mean',
                   binarizer: str = 'sign', cfb: bool = False, keep_float: tuple[str, ...] = (),
                   example_input: torch.Tensor | None = None,
                   input_bn: bool = True) -> list[str]:
    """Replaces `model`'s nn.Conv2d layers by BinaryConv2d (same shape, weights, bias) in place.

    Every plain nn.Conv2d is eligible whatever its kernel size (ReActNet / BiDense keep 1x1
    and downsampling convs binary too), except: the first and the last Conv2d in depth order
    (the image stem and the classifier stay float, as in every BNN), names in `keep_float`
    and in the model's own `float_layers` attribute (classifier convs of a model with several
    heads, e.g. BiSeNet's auxiliary heads; a module name keeps every conv inside it float),
    existing BinaryConv2d layers, and
    subclasses of nn.Conv2d (their own forward would be lost). With `example_input`, also
    every conv that reads the same tensor as the first one (parallel stems such as
    BiSegUNet's Multi-Stream Gateway) and every conv on a 1x1 map (pooled channel-attention
    MLPs), where a sign would discard the information; without it, name those in
    `keep_float`. All replacements are built before any is swapped in, so a ValueError (bad
    option, cfb geometry) leaves `model` as is.

    Args:
        estimator, weight_scale, binarizer, cfb: BinaryConv2d options.
        input_bn: BatchNorm before each binarised input (BinaryConv2d option); on by default
            because replaced convs usually read ReLU outputs, whose sign is constant.
        keep_float: Module names (or names of modules containing them) to keep float.
        example_input: A batch for `model`, to find the forward order (module docstring)
            and the stem / pooled-MLP convs; use a realistic size (at a tiny one, deep maps
            shrink to 1x1 and would stay float).

    Returns:
        The replaced module names in depth order.
    """
    names = {name for name, _ in model.named_modules()}
    keep_float = (*keep_float, *getattr(model, 'float_layers', ()))
    unknown = [name for name in keep_float if name not in names]
    if unknown:
        raise ValueError(f'keep_float names not found in the model: {unknown}')
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    stem_like: set[str] = set()
    if example_input is not None and convs:
        calls = _trace(model, convs, example_input)
        convs = _sort_by_calls(convs, calls)
        stem_input = calls.get(convs[0][0])
        stem_like = {name for name, x in calls.items()
                     if x is stem_input or x.shape[-2:].numel() == 1}
    if len(convs) <= 2:
        return []
    protected = (convs[0][0], convs[-1][0], *keep_float)
    replacements = []
    for name, conv in convs[1:-1]:
        if type(conv) is not nn.Conv2d or name in stem_like or any(
                name == p or name.startswith(p + '.') for p in protected):
            continue
        try:
            layer = BinaryConv2d.from_conv(conv, estimator=estimator, weight_scale=weight_scale,
                                           binarizer=binarizer, cfb=cfb, input_bn=input_bn)
        except ValueError as err:
            raise ValueError(f'{name}: {err} (or keep it float with keep_float)') from err
        replacements.append((name, layer))
    for name, layer in replacements:
        _replace(model, name, layer)
    return [name for name, _ in replacements]


def binary_layers(model: nn.Module, *,
                  example_input: torch.Tensor | None = None) -> list[tuple[str, BinaryConv2d]]:
    """(name, layer) of every BinaryConv2d in depth order (module docstring)."""
    return _depth_order(model, example_input, BinaryConv2d)


def set_binary_fraction(model: nn.Module, fraction: float, *,
                        example_input: torch.Tensor | None = None) -> int:
    """Makes the first ceil(fraction * N) of the N binary layers (by depth) binary and the rest
    float (BiSegUNet's phased binarisation, one group at a time by depth).

    Returns:
        How many layers are binary.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f'fraction must be in [0, 1], got {fraction}')
    layers = binary_layers(model, example_input=example_input)
    # Rounded first so that e.g. 0.6 * 5 = 3.0000000000000004 gives 3, not 4.
    count = math.ceil(round(fraction * len(layers), 9))
    for i, (_, layer) in enumerate(layers):
        layer.binary = i < count
    return count


def deploy_model(model: nn.Module) -> nn.Module:
    """Puts `model` in eval mode and every BinaryConv2d in deploy mode; returns `model`."""
    model.eval()
    for module in model.modules():
        if isinstance(module, BinaryConv2d):
            module.deploy()
    return model


def binary_weight_l1(model: nn.Module, *, reduction: str = 'sum') -> torch.Tensor:
    """BiSegUNet eq. 24: sum over layers l of ||W_l - sign(W_l)||_1, over the BinaryConv2d
    layers that are currently binary (float-phase layers are not binarised, so not pulled to
    +-1). sign(W) is +-1 (not alpha-scaled) as eq. 24 writes it, and a constant: the gradient
    is sign(W - sign(W)).

    Args:
        reduction: 'sum' (eq. 24 exactly) or 'mean' (divided by the number of weights).
    """
    if reduction not in REDUCTIONS:
        raise ValueError(f'reduction must be one of {REDUCTIONS}, got {reduction!r}')
    weights = [m.weight for m in model.modules() if isinstance(m, BinaryConv2d) and m.binary]
    if not weights:
        reference = next(model.parameters(), None)
        return torch.zeros((), device=None if reference is None else reference.device)
    total = sum((w - sign(w.detach())).abs().sum() for w in weights)
    if reduction == 'mean':
        total = total / sum(w.numel() for w in weights)
    return total


def trained_like_statistics(model: nn.Module) -> nn.Module:
    """Gives a freshly built network trained-like BatchNorm statistics and DAB thresholds, in
    place (from torch's global RNG: seed it first), and returns it.

    Fresh BN is the identity, so a binary conv sum that is exactly 0 (equal +alpha and -alpha
    counts) stays at +-1 ulp, whose sign depends on the summation order: torch, the float ONNX
    graph and the exact INT8 one would binarise it differently, and labels of untrained
    networks would differ for that reason alone. For tests and benchmarks of random networks.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
            elif isinstance(module, BinaryConv2d) and module.dab is not None:
                module.dab.k.uniform_(-1, 1)
                module.dab.b.uniform_(-0.3, 0.3)
                module.dab.a.fill_(0.7)
    return model
