"""A small model registry: builders registered by name, looked up by name."""

from __future__ import annotations

from collections.abc import Callable
import importlib

_BUILDERS: dict[str, Callable] = {}
# Modules whose import registers models; imported on first lookup so torch loads lazily.
_MODEL_MODULES = (
    'seg_perception.models.fcn_tiny',
    'seg_perception.models.bisenet',
    'seg_perception.models.bisegunet',
    'seg_perception.models.fbsnet',
    'seg_perception.models.jetseg',
)


def register_model(fn: Callable) -> Callable:
    """Decorator: registers `fn` under its function name; a duplicate name raises."""
    name = fn.__name__
    if name in _BUILDERS:
        raise ValueError(f'model {name!r} is registered twice')
    _BUILDERS[name] = fn
    return fn


def _load_all() -> None:
    for module in _MODEL_MODULES:
        importlib.import_module(module)


def list_models() -> list[str]:
    _load_all()
    return sorted(_BUILDERS)


def get_builder(name: str) -> Callable:
    """The builder registered under `name`; KeyError naming the registered ones."""
    _load_all()
    if name not in _BUILDERS:
        raise KeyError(f'unknown model {name!r} (registered: {", ".join(sorted(_BUILDERS))})')
    return _BUILDERS[name]


def build_model(name: str, **kwargs):
    """Builds model `name` with keyword-only options (num_classes, ...)."""
    return get_builder(name)(**kwargs)
