"""OpenVINO backend: the same ONNX file on Intel's CPU runtime, the fastest CPU path here.

Opt-in (`backend: openvino`): `auto` keeps ONNX Runtime as the CPU default and reference
(see `_AUTO_ORDER` in base.py).

Side by side at 360x480 on an AVX-512 / AMX Xeon, OpenVINO 2026.4 runs bisegunet, fbsnet and
jetseg in about 0.4-0.6x the latency of eager torch, faster than ONNX Runtime's CPU provider,
with outputs within 6e-7 relative of torch (the README's bench section has the tables;
`bench --backend torch onnxruntime openvino` prints the figures of the machine it runs on).

The CPU plugin's default inference precision is bf16 wherever the CPU has AMX or AVX-512 BF16:
that changes labels, so this backend always asks for f32 and the graph runs as exported (an
INT8 Q/DQ graph still runs in INT8: OpenVINO folds Q/DQ around convolutions into integer
kernels). No graph rewrites: `onnxruntime_rewrites` works around ONNX Runtime kernels only.
"""

from __future__ import annotations

import threading

import numpy as np

from seg_perception.core.artifact import ModelArtifact, ModelLoadError
from seg_perception.core.backends.base import BackendUnavailable


class OpenVinoBackend:
    name = 'openvino'

    def __init__(self, compiled):
        self._compiled = compiled
        # One request, created once: its input and output buffers are reused run after run.
        self._request = compiled.create_infer_request()

    def infer(self, batch: np.ndarray) -> np.ndarray:
        self._request.infer({0: np.ascontiguousarray(batch, np.float32)})
        # The output tensor is the request's own buffer, overwritten by the next run.
        return self._request.get_output_tensor(0).data.copy()

    def describe(self) -> dict[str, str]:
        import openvino as ov

        return {
            'backend': self.name,
            'version': ov.get_version(),
            'device': 'CPU',
            'precision': self._compiled.get_property('INFERENCE_PRECISION_HINT').to_string(),
            'threads': str(self._compiled.get_property('INFERENCE_NUM_THREADS')),
        }


_CORE = []  # the one ov.Core, made on first use
_CORE_LOCK = threading.Lock()


def _core():
    """The process's one `ov.Core`, kept until exit, shared by every model this backend loads.

    Why one and never released: each Core loads its own CPU plugin, and the plugin replaces the
    calling thread's signal stack (sigaltstack) with one of its own, big enough for AMX state,
    and on destruction puts back the stack it found, then unmaps its own (OpenVINO 2026.4
    `SigAltStackSetup`). Two Cores released in the order they were made (A, then B) leave the
    thread's signal stack pointing at A's unmapped memory: B puts back A's stack. The next
    signal that runs a handler on that stack (every Python signal handler: SIGINT, SIGCHLD
    from a torch DataLoader worker, faulthandler's) kills the process with SIGSEGV. The test
    suite died so at a DataLoader fork; `test_openvino_backend.py` reproduces it with two Cores
    and checks that two backends loaded and dropped that way leave the process working.
    """
    import openvino as ov

    with _CORE_LOCK:  # two nodes' first loads at once must not make two Cores either
        if not _CORE:
            _CORE.append(ov.Core())
        return _CORE[0]


def load(artifact: ModelArtifact, *, threads: int = 0) -> OpenVinoBackend:
    try:
        import openvino  # noqa: F401  (here so a missing install is BackendUnavailable)
    except ImportError as err:
        raise BackendUnavailable('openvino', f'cannot import openvino ({err})') from err
    core = _core()
    if 'CPU' not in core.available_devices:
        raise BackendUnavailable('openvino', 'OpenVINO has no CPU device on this machine '
                                             f'(devices: {core.available_devices})')
    try:
        model = core.read_model(str(artifact.path))
    except Exception as err:  # OpenVINO raises RuntimeError / its own types for bad files
        raise ModelLoadError(artifact.path, f'not a loadable ONNX model ({err})') from err
    if len(model.inputs) != 1:
        raise ModelLoadError(artifact.path,
                             f'expected one network input, found {len(model.inputs)}')
    shape = model.inputs[0].get_partial_shape()
    expected = [1, 3, *artifact.input_size]
    fixed = shape.rank.is_static and len(shape) == 4 and all(
        d.is_dynamic or d.get_length() == e for d, e in zip(shape, expected, strict=True))
    if not fixed:
        # Printed as ONNX Runtime prints it, [1, 3, 180, 240], not OpenVINO's [1,3,180,240].
        dims = [d.get_length() if d.is_static else '?' for d in shape] if shape.rank.is_static \
            else shape
        raise ModelLoadError(artifact.path, f'network input shape {dims} does not match the '
                                            f'sidecar input_size (expected {expected})')
    config = {'INFERENCE_PRECISION_HINT': 'f32', 'PERFORMANCE_HINT': 'LATENCY'}
    if threads > 0:
        config['INFERENCE_NUM_THREADS'] = threads
    try:
        compiled = core.compile_model(model, 'CPU', config)
    except Exception as err:
        raise ModelLoadError(artifact.path, f'OpenVINO cannot compile it ({err})') from err
    return OpenVinoBackend(compiled)
