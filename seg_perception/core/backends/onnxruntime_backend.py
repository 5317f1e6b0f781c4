"""ONNX Runtime backend: the CPU reference and the default off-Jetson."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
import tempfile

import numpy as np

from seg_perception.core.artifact import ModelArtifact, ModelLoadError
from seg_perception.core.backends.base import BackendUnavailable
from seg_perception.core.backends.onnxruntime_rewrites import (
    EXACT_FLOAT_DISABLED_OPTIMIZERS,
    nchwc_block_size,
)

log = logging.getLogger(__name__)

# Largest score difference, relative to the largest score, that the blocked-layout rewrite
# may make on its probe image (measured: 1.6e-7 on JetSeg, from NCHWc Upsample's rounding).
PROBE_TOLERANCE = 1e-5

# Preferred execution providers, best first; only those this onnxruntime build has are used.
_PROVIDERS = ('CUDAExecutionProvider', 'CPUExecutionProvider')


class OnnxRuntimeBackend:
    name = 'onnxruntime'

    def __init__(self, session, artifact: ModelArtifact, rewrites: dict[str, int] | None = None,
                 *, spinning: bool = False):
        self._session = session
        self._input = session.get_inputs()[0].name
        self._output = session.get_outputs()[0].name
        self._artifact = artifact
        self.rewrites = dict(rewrites or {})  # rewrite name -> nodes replaced at load
        self.spinning = spinning

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._session.run([self._output], {self._input: batch})[0]

    def describe(self) -> dict[str, str]:
        import onnxruntime as ort

        return {
            'backend': self.name,
            'version': ort.__version__,
            'providers': ','.join(self._session.get_providers()),
            'rewrites': ' '.join(f'{k} x{v}' for k, v in self.rewrites.items()) or 'none',
            'intra_op_spinning': 'on' if self.spinning else 'off',
        }


def load(artifact: ModelArtifact, *, threads: int = 0, spinning: bool = False,
         blocked_layout: bool = True) -> OnnxRuntimeBackend:
    """`blocked_layout`: rewrite ORT's optimised graph with `onnxruntime_blocked` (x86 CPUs;
    off only to compare)."""
    try:
        import onnxruntime as ort
    except ImportError as err:
        raise BackendUnavailable('onnxruntime', f'cannot import onnxruntime ({err})') from err
    providers = [p for p in _PROVIDERS if p in ort.get_available_providers()]
    model, rewrites, proto = _rewritten(artifact)
    # Keeps the exact binary convs' alpha scaling out of their weights.
    disabled = list(EXACT_FLOAT_DISABLED_OPTIMIZERS) if rewrites.get('binary_conv') else []
    block = nchwc_block_size()
    blocked = blocked_layout and proto is not None and block > 0 \
        and providers[0] == 'CPUExecutionProvider'
    with contextlib.ExitStack() as stack:
        try:
            scratch = Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix='seg_perception_ort_')))
        except OSError as err:
            log.warning('no scratch directory for ORT\'s optimised graph (%s); %s loads '
                        'without the blocked-layout rewrite', err, artifact.path)
            blocked = False
        session, first_error = None, None
        if blocked:  # ORT writes its optimised graph there while it builds the session
            options = _options(ort, threads, spinning)
            options.optimized_model_filepath = str(scratch / 'optimized.onnx')
            try:
                session = ort.InferenceSession(model, options, providers=providers,
                                               disabled_optimizers=disabled)
            except Exception as err:  # e.g. it could not write the file: try without
                first_error = err
        if session is None:
            try:
                session = ort.InferenceSession(model, _options(ort, threads, spinning),
                                               providers=providers,
                                               disabled_optimizers=disabled)
            except Exception as err:  # ORT raises its own Fail / InvalidGraph / ... types
                raise ModelLoadError(artifact.path,
                                     f'not a loadable ONNX model ({err})') from err
            if first_error is not None:
                log.warning('ONNX Runtime could not build %s while writing its optimised '
                            'graph (%s); it runs without the blocked-layout rewrite',
                            artifact.path, first_error)
        elif blocked and (scratch / 'optimized.onnx').exists():
            session, moved = _blocked_session(ort, session, scratch / 'optimized.onnx', proto,
                                              block, _options(ort, threads, spinning),
                                              providers, artifact)
            if moved:
                rewrites['blocked_layout'] = moved
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelLoadError(artifact.path, f'expected one network input, found {len(inputs)}')
    shape = inputs[0].shape
    expected = [1, 3, *artifact.input_size]
    fixed = len(shape) == 4 and all(
        not isinstance(d, int) or d == e for d, e in zip(shape, expected, strict=True))
    if not fixed:
        raise ModelLoadError(artifact.path, f'network input shape {shape} does not match the '
                                            f'sidecar input_size (expected {expected})')
    return OnnxRuntimeBackend(session, artifact, rewrites, spinning=spinning)


def _options(ort, threads: int, spinning: bool):
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(0, threads)
    options.log_severity_level = 3  # errors only: warnings about unused initialisers are noise
    # Off by default: idle intra-op threads otherwise spin after every run and take the cores
    # that the node's post-processing and DDS threads need right then (fcn_tiny, 1280x720
    # images, every output, 2 threads on 2 cores: 19.3 ms from callback to last publish
    # spinning, 14.4 sleeping; bench_node). On, networks of many small ops run much faster:
    # between two ops the workers need no wake-up (FBSNet end to end 142 vs 206 ms).
    options.add_session_config_entry('session.intra_op.allow_spinning',
                                     '1' if spinning else '0')
    return options


def _blocked_session(ort, session, optimized: Path, proto, block: int, options, providers,
                     artifact: ModelArtifact):
    """(session, ops moved): a session on ORT's optimised graph after `keep_blocked`, loaded
    with optimisations off (the graph has had them); `session` itself, and 0, when nothing
    moved or anything fails (said in the log: the model still runs, only slower)."""
    import onnx

    from seg_perception.core.backends.onnxruntime_blocked import keep_blocked
    from seg_perception.core.backends.onnxruntime_rewrites import inferred_shapes

    try:
        graph = onnx.load(str(optimized))
        moved = keep_blocked(graph, inferred_shapes(proto), block)
        if not moved:
            return session, 0
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        rewritten = ort.InferenceSession(graph.SerializeToString(), options,
                                         providers=providers)
        # One probe image through both: the rewrite only reorders memory (and lets NCHWc
        # Upsample round where Resize did), so anything beyond float rounding means a graph
        # it misread; then ORT's own graph runs instead.
        first = session.get_inputs()[0]
        shape = [d if isinstance(d, int) else e
                 for d, e in zip(first.shape, (1, 3, *artifact.input_size), strict=False)]
        probe = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
        name = first.name
        expected = session.run(None, {name: probe})[0]
        got = rewritten.run(None, {name: probe})[0]
        err = float(np.abs(got - expected).max()) if got.shape == expected.shape else np.inf
        if not err <= PROBE_TOLERANCE * float(np.abs(expected).max()):
            log.warning('blocked-layout rewrite of %s changed the scores (max difference '
                        '%.3g); running ORT\'s optimised graph', artifact.path, err)
            return session, 0
        return rewritten, moved
    except Exception:  # a graph the rewrite did not foresee: keep ORT's own
        log.warning('blocked-layout rewrite failed on %s; running ORT\'s optimised graph',
                    artifact.path, exc_info=True)
        return session, 0


def _rewritten(artifact: ModelArtifact):
    """(model for ORT, what the rewrites replaced, the ModelProto or None).

    The model is `onnxruntime_rewrites` applied and serialised; the file path instead when
    nothing matched, the onnx package is missing or the file does not parse (ORT then
    reports it). The ModelProto is None in the last two cases."""
    try:
        import onnx
    except ImportError:
        log.info('onnx not installed: %s runs without the ONNX Runtime rewrites', artifact.path)
        return str(artifact.path), {}, None
    from seg_perception.core.backends.onnxruntime_rewrites import rewrite_for_onnxruntime

    try:
        model = onnx.load(str(artifact.path))
    except Exception:  # DecodeError, OSError, ...: let ORT report the file
        return str(artifact.path), {}, None
    try:
        rewrites = rewrite_for_onnxruntime(model)
    except Exception:  # a graph the rewrites did not foresee: run it as it is, but say so
        log.warning('ONNX Runtime rewrites failed on %s; loading it unchanged', artifact.path,
                    exc_info=True)
        return str(artifact.path), {}, onnx.load(str(artifact.path))
    return (model.SerializeToString() if rewrites else str(artifact.path)), rewrites, model
