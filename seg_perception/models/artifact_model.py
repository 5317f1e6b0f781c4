"""The network an artefact describes: registry builder + options (+ binarisation)."""

from __future__ import annotations

import torch
from torch import nn

from seg_perception.core.artifact import ModelArtifact
from seg_perception.models.registry import build_model


def build_network(name: str, num_classes: int, model_options: dict | None = None,
                  binarize: dict | None = None,
                  input_size: tuple[int, int] = (360, 480)) -> nn.Module:
    """Builds `name` and, with `binarize`, applies binarize_model with those options.

    binarize_model's choice of layers depends on a traced forward, so it is traced at
    `input_size` here exactly as in training: the same layers become binary.
    """
    model = build_model(name, num_classes=num_classes, **(model_options or {}))
    if binarize is not None:
        from seg_perception.models.binarize import binarize_model

        binarize_model(model, example_input=torch.zeros(1, 3, *input_size), **binarize)
    return model


def build_for_artifact(artifact: ModelArtifact) -> nn.Module:
    """The untrained network of `artifact` (weights are loaded by the caller)."""
    return build_network(artifact.model, artifact.num_classes, artifact.model_options,
                         artifact.binarize, artifact.input_size)
