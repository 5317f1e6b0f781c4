"""Parameter and multiply-accumulate counts, with the float / binary split and the BNN cost as
BiDense counts it: OPs = float MACs + binary MACs / 64, params = float + binary / 32 (a 64-bit
XNOR-popcount word does 64 binary MACs; a binary weight takes 1 of 32 bits)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Complexity:
    """Counts for one model at one input size (MACs of conv / linear layers only)."""

    name: str
    size: str
    num_classes: int
    params: int
    binary_params: int
    macs: int
    binary_macs: int

    @property
    def float_macs(self) -> int:
        return self.macs - self.binary_macs

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def ops(self) -> float:
        """BNN operations (BiDense): float MACs + binary MACs / 64."""
        return self.float_macs + self.binary_macs / 64

    @property
    def bnn_params(self) -> float:
        """32-bit-equivalent parameters (BiDense): float + binary / 32."""
        return self.params - self.binary_params + self.binary_params / 32

    def as_dict(self) -> dict:
        return {**asdict(self), 'float_macs': self.float_macs, 'flops': self.flops,
                'ops': self.ops, 'bnn_params': self.bnn_params}


def _is_binary(module: nn.Module) -> bool:
    # A BinaryConv2d switched to float (phased binarisation) counts as float.
    return bool(getattr(module, 'binary', False)) and hasattr(module, 'binarized_weight')


def count(model: nn.Module, size: tuple[int, int], *, name: str = '',
          num_classes: int = 0) -> Complexity:
    """Counts parameters and MACs of `model` (eval mode, batch 1) at `size` (H, W)."""
    macs = {'float': 0, 'binary': 0}

    def hook(module: nn.Module, inputs, output) -> None:
        kind = 'binary' if _is_binary(module) else 'float'
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * module.weight[0, 0].numel()
            macs[kind] += output.numel() * per_output
        elif isinstance(module, nn.ConvTranspose2d):
            per_input = module.out_channels // module.groups * module.weight[0, 0].numel()
            macs[kind] += inputs[0].numel() * per_input
        elif isinstance(module, nn.Linear):
            macs[kind] += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, *size))
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    params = sum(p.numel() for p in model.parameters())
    binary_params = sum(m.weight.numel() for m in model.modules() if _is_binary(m))
    return Complexity(name, f'{size[0]}x{size[1]}', num_classes, params, binary_params,
                      macs['float'] + macs['binary'], macs['binary'])
