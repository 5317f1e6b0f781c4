"""Inference backends behind one interface; see `base.create_backend`."""

from seg_perception.core.backends.base import (
    BACKEND_NAMES,
    Backend,
    BackendUnavailable,
    create_backend,
)

__all__ = ['BACKEND_NAMES', 'Backend', 'BackendUnavailable', 'create_backend']
