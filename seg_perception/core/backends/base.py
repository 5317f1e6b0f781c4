"""The backend protocol, and `auto` selection among the backends that can run here."""

from __future__ import annotations

import importlib
import logging
from typing import Protocol

import numpy as np

from seg_perception.core.artifact import ModelArtifact, ModelLoadError

log = logging.getLogger(__name__)

# name -> module defining `load(artifact, options) -> Backend`; imported lazily so that a
# missing onnxruntime / torch only matters when that backend is asked for.
_MODULES = {
    'onnxruntime': 'seg_perception.core.backends.onnxruntime_backend',
    'openvino': 'seg_perception.core.backends.openvino_backend',
    'torch': 'seg_perception.core.backends.torch_backend',
    'tensorrt': 'seg_perception.core.backends.tensorrt_backend',
}
BACKEND_NAMES = ('auto', *_MODULES)
# Backends `auto` tries for each artefact format, best first: TensorRT where it and a GPU
# exist (it raises BackendUnavailable otherwise, so ONNX Runtime takes over). OpenVINO is
# opt-in (`backend: openvino`): ONNX Runtime stays the CPU default and the reference the other
# backends are checked against (DESIGN: "the default off-Jetson").
_AUTO_ORDER = {'onnx': ('tensorrt', 'onnxruntime'), 'torch': ('torch',)}
# Backends that run an artefact format without being in `auto`.
_EXPLICIT = {'onnx': ('openvino',)}


class BackendUnavailable(RuntimeError):
    """The backend cannot run on this machine (library or device missing)."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f'backend unavailable: {name}: {reason}')


class Backend(Protocol):
    """Runs a network: float32 NCHW batch in, (N, C, h, w) scores out."""

    name: str

    def infer(self, batch: np.ndarray) -> np.ndarray: ...

    def describe(self) -> dict[str, str]: ...


PRECISIONS = ('fp32', 'fp16', 'int8')


def create_backend(name: str, artifact: ModelArtifact, *, threads: int = 0,
                   precision: str = 'fp16', spinning: bool = False) -> Backend:
    """Loads `artifact` on backend `name` (`auto` picks the first that is available).

    Args:
        name: One of BACKEND_NAMES.
        artifact: The model to load.
        threads: CPU threads for inference; 0 lets the library decide.
        precision: TensorRT engine precision (PRECISIONS); the other backends run the graph
            as exported.
        spinning: ONNX Runtime only: idle intra-op threads spin instead of sleeping between
            ops (faster inference with 2+ threads; the others ignore it).

    Raises:
        BackendUnavailable: The backend (or, for `auto`, every candidate) cannot run here.
        ModelLoadError: The model file itself is unusable.
    """
    if name == 'auto':
        candidates = _AUTO_ORDER[artifact.format]
        reasons = []
        for candidate in candidates:
            try:
                backend = create_backend(candidate, artifact, threads=threads,
                                         precision=precision, spinning=spinning)
                # Why better candidates were passed over, for the node to log.
                backend.skipped = tuple(reasons)
                return backend
            except BackendUnavailable as err:
                log.info('%s; trying the next backend', err)
                reasons.append(f'{candidate}: {err.reason}')
        raise BackendUnavailable('auto', '; '.join(reasons))
    if name not in _MODULES:
        raise ValueError(f'unknown backend {name!r} (expected one of {BACKEND_NAMES})')
    if name not in (*_AUTO_ORDER.get(artifact.format, ()), *_EXPLICIT.get(artifact.format, ())):
        raise ModelLoadError(artifact.path, f'backend {name!r} cannot run a '
                                            f'{artifact.format} file')
    module = importlib.import_module(_MODULES[name])
    options = {'tensorrt': {'precision': precision},
               'onnxruntime': {'spinning': spinning}}.get(name, {})
    backend = module.load(artifact, threads=threads, **options)
    _check_output(backend, artifact)
    return backend


def _check_output(backend: Backend, artifact: ModelArtifact) -> None:
    """Runs one warm-up inference and checks the output against the sidecar."""
    height, width = artifact.input_size
    out = backend.infer(np.zeros((1, 3, height, width), np.float32))
    if out.ndim != 4 or out.shape[0] != 1:
        raise ModelLoadError(artifact.path, f'network output has shape {out.shape}, '
                                            'expected (1, C, h, w)')
    if out.shape[1] != artifact.num_classes:
        raise ModelLoadError(artifact.path, f'network outputs {out.shape[1]} classes but the '
                                            f'sidecar says {artifact.num_classes}')
