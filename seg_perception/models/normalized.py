"""Input normalisation as a module, so exported graphs and the torch backend take 0..255 RGB."""

from __future__ import annotations

import torch
from torch import nn


class Normalized(nn.Module):
    """Prepends (x / 255 - mean) / std so the graph takes raw 0..255 RGB."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        self.register_buffer('scale', 1.0 / (255.0 * std_t))
        self.register_buffer('shift', -torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
                             / std_t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x * self.scale + self.shift)
