"""Network definitions (torch). Importing this package does not import torch; building a
model does, so the runtime works on machines without torch."""

from seg_perception.models.registry import (
    build_model,
    get_builder,
    list_models,
    register_model,
)

__all__ = ['build_model', 'get_builder', 'list_models', 'register_model']
