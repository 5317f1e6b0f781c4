"""TensorRT backend: ONNX -> engine (built once per GPU, TensorRT version and precision) -> GPU.

An engine only runs on the GPU model and TensorRT version that built it, and building takes
seconds on a desktop GPU but minutes on a Jetson, so engines are cached on disk under a key of
everything they depend on (`EngineKey`); an engine that does not deserialise is rebuilt. The
pure parts (key, file names, the load-or-rebuild logic `cached_or_built`, version-gated flags,
buffer provider choice) take plain values so they are tested without TensorRT; the rest
(probe, build, open, buffers, backend) needs a GPU.

Engine files contain compiled GPU code and deserialising one runs the plugin code it names:
only load engines you built, from a cache directory only you can write (docs/security.md).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
import hashlib
import json
import logging
import os
from pathlib import Path
import re
import time
from typing import Any, Callable
import weakref

import numpy as np

from seg_perception.core.artifact import ModelArtifact, ModelLoadError
from seg_perception.core.atomic import atomic_write
from seg_perception.core.backends.base import BackendUnavailable

log = logging.getLogger(__name__)

PRECISIONS = ('fp32', 'fp16', 'int8')
WORKSPACE_BYTES = 1 << 30  # builder scratch limit; tactics needing more are skipped
# Outcomes of `read_cached`.
MISSING, REBUILD, OK = 'missing', 'rebuild', 'ok'


# ---- pure logic (no TensorRT, no GPU) ---------------------------------------------------------

def parse_version(version: str) -> tuple[int, int, int]:
    """'10.3.0.26' / '8.6.1.post1' -> (10, 3, 0)."""
    match = re.match(r'(\d+)\.(\d+)(?:\.(\d+))?', version)
    if match is None:
        raise ValueError(f'not a TensorRT version: {version!r}')
    return int(match[1]), int(match[2]), int(match[3] or 0)


def has_v3_api(version: str) -> bool:
    """Name-based tensor API and execute_async_v3 exist from TensorRT 8.5 on."""
    return parse_version(version)[:2] >= (8, 5)


def network_flags(version: str) -> tuple[str, ...]:
    """NetworkDefinitionCreationFlag names to set: EXPLICIT_BATCH before 10 (ignored since)."""
    return ('EXPLICIT_BATCH',) if parse_version(version)[0] < 10 else ()


def precision_flags(version: str, precision: str) -> tuple[str, ...]:
    """BuilderFlag names that select `precision` on TensorRT `version`.

    fp16 sets FP16; int8 sets INT8 and FP16 (for graphs with Q/DQ nodes: layers without scales
    then run in fp16, not fp32). TensorRT 11 removed these flags: every network is strongly
    typed and precision comes from the ONNX itself, so no flag is set there.
    """
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    if parse_version(version)[0] >= 11 or precision == 'fp32':
        return ()
    return ('FP16',) if precision == 'fp16' else ('INT8', 'FP16')


def choose_provider(torch_cuda: bool, cudart_cuda: bool, detail: str = '') -> str:
    """Device buffers through torch when it has CUDA (no extra package), else cuda-python."""
    if torch_cuda:
        return 'torch'
    if cudart_cuda:
        return 'cudart'
    raise BackendUnavailable('tensorrt', f'no CUDA device: {detail or "none found"}')


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialised engine depends on; any change means a different engine."""

    onnx_sha256: str
    trt_version: str
    gpu_name: str
    compute_capability: str  # '8.7'
    precision: str
    input_shape: tuple[int, ...]

    def digest(self) -> str:
        parts = json.dumps(asdict(self), sort_keys=True)  # tuples become lists: stable
        return hashlib.sha256(parts.encode()).hexdigest()


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def default_cache_dir() -> Path:
    base = os.environ.get('XDG_CACHE_HOME') or Path.home() / '.cache'
    return Path(base) / 'seg_perception' / 'engines'


def engine_path(cache_dir: Path | str, model_path: Path | str, key: EngineKey) -> Path:
    """`<cache_dir>/<model stem>-<first 16 hex digits of the key>.engine`."""
    return Path(cache_dir) / f'{Path(model_path).stem}-{key.digest()[:16]}.engine'


def meta_path(engine: Path) -> Path:
    """The JSON beside an engine recording its key parts (for people, not for lookup)."""
    return engine.with_suffix('.json')


def read_cached(path: Path, deserialize: Callable[[bytes], Any]) -> tuple[str, Any]:
    """Loads a cached engine: (OK, engine), (MISSING, None) or (REBUILD, None).

    A file that does not deserialise (truncated, another TensorRT version or GPU, corrupt)
    is logged and reported as REBUILD, never raised: the cache can always be rebuilt.
    """
    if not path.is_file():
        return MISSING, None
    try:
        engine = deserialize(path.read_bytes())
    except Exception as err:  # TensorRT raises RuntimeError / TypeError; OSError on read
        log.warning('cached engine %s does not load (%s); rebuilding', path, err)
        return REBUILD, None
    if engine is None:
        log.warning('cached engine %s does not deserialise; rebuilding', path)
        return REBUILD, None
    return OK, engine


def cached_or_built(path: Path, deserialize: Callable[[bytes], Any], build: Callable[[], Any],
                    *, build_if_missing: bool, model: Path | str, force: bool = False,
                    meta: dict | None = None) -> Any:
    """The engine cached at `path`, or one built by `build()` and cached there.

    A cached file that does not deserialise (another TensorRT version or GPU, truncated,
    corrupt) counts as missing: it is rebuilt and replaced when `build_if_missing`, else
    BackendUnavailable says to run build_engine (so the node never blocks minutes on a build,
    and `auto` falls back to ONNX Runtime). The new engine and `meta` (JSON beside it, with
    the build time added) are written atomically: a kill mid-write leaves the old file.

    Args:
        path: Cache file of this engine (`engine_path`).
        deserialize: Serialised bytes -> engine, or None / raises when they are unusable.
        build: -> the serialised engine (bytes or TensorRT's IHostMemory).
        build_if_missing: Build when there is no usable cached engine.
        model: The ONNX file, for messages.
        force: Build even when a usable engine is cached.
        meta: Key parts to record beside the engine.
    """
    state = MISSING
    if not force:
        state, engine = read_cached(path, deserialize)
        if state == OK:
            log.info('using cached engine %s', path)
            return engine
    if not build_if_missing:
        what = 'no prebuilt' if state == MISSING else 'unusable prebuilt'
        raise BackendUnavailable('tensorrt', f'{what} engine for {Path(model).name} (run '
                                             f'build_engine --model {model})')
    serialized = build()
    atomic_write(path, lambda f: f.write(serialized))
    if meta is not None:
        meta = {**meta, 'built': time.strftime('%Y-%m-%dT%H:%M:%S%z')}
        atomic_write(meta_path(path), lambda f: f.write(json.dumps(meta, indent=2).encode()))
    log.info('wrote %s', path)
    engine = deserialize(serialized)
    if engine is None:
        raise BackendUnavailable('tensorrt', f'the engine just built ({path}) does not load')
    return engine


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    is_input: bool


def split_io(specs: list[TensorSpec],
             input_shape: tuple[int, ...]) -> tuple[TensorSpec, TensorSpec]:
    """Checks an engine has one fixed-shape input of `input_shape` and one fixed output."""
    inputs = [s for s in specs if s.is_input]
    outputs = [s for s in specs if not s.is_input]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f'expected one input and one output, found {len(inputs)} and '
                         f'{len(outputs)}')
    for spec in specs:
        if any(d < 0 for d in spec.shape):
            raise ValueError(f'tensor {spec.name!r} has a dynamic shape {spec.shape}')
    if inputs[0].shape != tuple(input_shape):
        raise ValueError(f'network input shape {inputs[0].shape} does not match the sidecar '
                         f'input_size (expected {tuple(input_shape)})')
    return inputs[0], outputs[0]


# ---- TensorRT and CUDA ------------------------------------------------------------------------

@dataclass(frozen=True)
class Device:
    name: str
    capability: str
    provider: str  # 'torch' | 'cudart'


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendUnavailable('tensorrt', f'cannot import tensorrt ({err})') from err
    if not has_v3_api(trt.__version__):
        raise BackendUnavailable('tensorrt', f'TensorRT {trt.__version__} is older than 8.5 '
                                             '(no execute_async_v3)')
    return trt


def _import_cudart():
    """cuda-python's runtime module: cuda.bindings.runtime (12.x+; cuda.cudart is gone in 13)."""
    try:
        from cuda.bindings import runtime
        return runtime
    except ImportError:
        pass
    try:
        from cuda import cudart
        return cudart
    except ImportError:
        return None


def _cuda(rt, result):
    """Unpacks a cuda-python (error, *values) result, raising on error."""
    err, *values = result
    if err != rt.cudaError_t.cudaSuccess:
        raise RuntimeError(f'CUDA error: {err}')
    return values[0] if len(values) == 1 else tuple(values)


def probe_device() -> Device:
    """Finds GPU 0 through torch, else cuda-python; BackendUnavailable when neither sees one."""
    reasons, torch_cuda, cudart_cuda, rt = [], False, False, None
    try:
        import torch

        torch_cuda = torch.cuda.is_available()
        if not torch_cuda:
            reasons.append(f'torch {torch.__version__} sees no CUDA device')
    except ImportError:
        reasons.append('torch not installed')
    if not torch_cuda:
        rt = _import_cudart()
        if rt is None:
            reasons.append('cuda-python not installed')
        else:
            err, count = rt.cudaGetDeviceCount()
            cudart_cuda = err == rt.cudaError_t.cudaSuccess and count > 0
            if not cudart_cuda:
                reasons.append(f'cudaGetDeviceCount: {err}, {count} devices')
    provider = choose_provider(torch_cuda, cudart_cuda, '; '.join(reasons))
    if provider == 'torch':
        major, minor = torch.cuda.get_device_capability(0)
        return Device(torch.cuda.get_device_name(0), f'{major}.{minor}', provider)
    props = _cuda(rt, rt.cudaGetDeviceProperties(0))
    name = props.name  # char[256] as bytes
    if isinstance(name, bytes):
        name = name.split(b'\0', 1)[0].decode(errors='replace')
    return Device(str(name), f'{props.major}.{props.minor}', provider)


_TRT_LOGGER = None


def _trt_logger(trt):
    global _TRT_LOGGER  # one logger per process, shared by builder, parser and runtime
    if _TRT_LOGGER is None:
        _TRT_LOGGER = trt.Logger(trt.Logger.WARNING)
    return _TRT_LOGGER


def _build(trt, onnx_path: Path, precision: str, input_shape: tuple[int, ...]):
    """Parses the ONNX and builds a serialised engine (IHostMemory)."""
    logger = _trt_logger(trt)
    builder = trt.Builder(logger)
    flags = 0
    for name in network_flags(trt.__version__):
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    log.info('parsing %s', onnx_path)
    # Parse / build failures raise BackendUnavailable, not ModelLoadError, so that `auto`
    # falls back to ONNX Runtime for a graph TensorRT cannot take (which reports a bad file).
    if not parser.parse_from_file(str(onnx_path)):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendUnavailable('tensorrt', f'cannot parse {onnx_path.name}: {errors}')
    shape = tuple(network.get_input(0).shape)
    if shape != input_shape:
        raise ModelLoadError(onnx_path, f'TensorRT needs a fixed network input of the sidecar '
                                        f'size {input_shape}, the ONNX has {shape}')
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    for name in precision_flags(trt.__version__, precision):
        config.set_flag(getattr(trt.BuilderFlag, name))
    if parse_version(trt.__version__)[0] >= 11 and precision != 'fp32':
        log.info('TensorRT %s takes precision from the ONNX; %s only names the cache entry',
                 trt.__version__, precision)
    log.info('building the %s engine with TensorRT %s (can take minutes)', precision,
             trt.__version__)
    start = time.monotonic()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendUnavailable('tensorrt', f'engine build failed for {onnx_path.name} '
                                             '(see the TensorRT log above)')
    log.info('built in %.1f s (%.1f MB)', time.monotonic() - start, serialized.nbytes / 1e6)
    return serialized


@dataclass
class _Opened:
    trt: Any
    runtime: Any
    engine: Any
    path: Path
    device: Device


def _open(artifact: ModelArtifact, precision: str, cache_dir: Path | str | None, *,
          build_if_missing: bool, force: bool = False) -> _Opened:
    """Loads the cached engine for `artifact`, building (and caching) it when needed."""
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {PRECISIONS}, got {precision!r}')
    if artifact.format != 'onnx':
        raise ModelLoadError(artifact.path, 'the tensorrt backend needs an ONNX file')
    trt = _import_tensorrt()
    device = probe_device()
    input_shape = (1, 3, *artifact.input_size)
    key = EngineKey(file_sha256(artifact.path), trt.__version__, device.name,
                    device.capability, precision, input_shape)
    path = engine_path(cache_dir or default_cache_dir(), artifact.path, key)
    runtime = trt.Runtime(_trt_logger(trt))  # kept alive as long as its engine
    engine = cached_or_built(
        path, runtime.deserialize_cuda_engine,
        lambda: _build(trt, artifact.path, precision, input_shape),
        build_if_missing=build_if_missing, force=force, model=artifact.path,
        meta={**asdict(key), 'key': key.digest(), 'onnx': str(artifact.path)})
    return _Opened(trt, runtime, engine, path, device)


class _TorchBuffers:
    """Device and pinned host buffers as torch tensors, on one torch CUDA stream."""

    def __init__(self, specs: list[TensorSpec]):
        import torch

        self._stream = torch.cuda.Stream()
        self._torch = torch
        dtypes = {s.name: torch.from_numpy(np.empty(0, s.dtype)).dtype for s in specs}
        self._device = {s.name: torch.empty(s.shape, dtype=dtypes[s.name], device='cuda')
                        for s in specs}
        self._host = {s.name: torch.empty(s.shape, dtype=dtypes[s.name], pin_memory=True)
                      for s in specs}
        self.stream_handle = self._stream.cuda_stream

    def address(self, name: str) -> int:
        return self._device[name].data_ptr()

    def upload(self, name: str, array: np.ndarray) -> None:
        self._host[name].numpy()[...] = array
        with self._torch.cuda.stream(self._stream):
            self._device[name].copy_(self._host[name], non_blocking=True)

    def download(self, name: str) -> np.ndarray:
        """Waits for the stream and returns a float32 copy (the host buffer is reused)."""
        with self._torch.cuda.stream(self._stream):
            self._host[name].copy_(self._device[name], non_blocking=True)
        self._stream.synchronize()
        return np.array(self._host[name].numpy(), dtype=np.float32)

    def close(self) -> None:
        pass  # torch frees its tensors


class _CudartBuffers:
    """Device buffers from cudaMalloc and numpy host buffers, on one CUDA stream."""

    def __init__(self, specs: list[TensorSpec]):
        rt = self._rt = _import_cudart()
        self._stream = _cuda(rt, rt.cudaStreamCreate())
        self._host = {s.name: np.empty(s.shape, s.dtype) for s in specs}
        self._device = {s.name: _cuda(rt, rt.cudaMalloc(self._host[s.name].nbytes))
                        for s in specs}
        self.stream_handle = self._stream

    def address(self, name: str) -> int:
        return int(self._device[name])

    def _copy(self, dst, src, nbytes: int, kind) -> None:
        _cuda(self._rt, self._rt.cudaMemcpyAsync(dst, src, nbytes, kind, self._stream))

    def upload(self, name: str, array: np.ndarray) -> None:
        host = self._host[name]
        np.copyto(host, array, casting='same_kind')
        self._copy(self._device[name], host.ctypes.data, host.nbytes,
                   self._rt.cudaMemcpyKind.cudaMemcpyHostToDevice)

    def download(self, name: str) -> np.ndarray:
        host = self._host[name]
        self._copy(host.ctypes.data, self._device[name], host.nbytes,
                   self._rt.cudaMemcpyKind.cudaMemcpyDeviceToHost)
        _cuda(self._rt, self._rt.cudaStreamSynchronize(self._stream))
        return np.array(host, dtype=np.float32)

    def close(self) -> None:
        for ptr in self._device.values():
            self._rt.cudaFree(ptr)
        self._device = {}
        self._rt.cudaStreamDestroy(self._stream)


class TensorRTBackend:
    name = 'tensorrt'

    def __init__(self, opened: _Opened, artifact: ModelArtifact, precision: str):
        trt, engine = opened.trt, opened.engine
        self._opened = opened  # keeps runtime and engine alive as long as the context
        self._precision = precision
        specs = []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            specs.append(TensorSpec(
                name, tuple(engine.get_tensor_shape(name)),
                np.dtype(trt.nptype(engine.get_tensor_dtype(name))),
                engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT))
        try:
            self._input, self._output = split_io(specs, (1, 3, *artifact.input_size))
        except ValueError as err:
            raise ModelLoadError(artifact.path, f'TensorRT engine {opened.path}: {err}') from err
        self._context = engine.create_execution_context()
        # Allocated once: addresses stay bound to the context for every infer().
        provider = _TorchBuffers if opened.device.provider == 'torch' else _CudartBuffers
        self._buffers = provider(specs)
        weakref.finalize(self, self._buffers.close)
        for spec in specs:
            self._context.set_tensor_address(spec.name, self._buffers.address(spec.name))

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape != self._input.shape:
            raise ValueError(f'batch shape {batch.shape} != engine input {self._input.shape}')
        self._buffers.upload(self._input.name, batch)
        if not self._context.execute_async_v3(self._buffers.stream_handle):
            raise RuntimeError('TensorRT execute_async_v3 failed (see the TensorRT log)')
        return self._buffers.download(self._output.name)

    def describe(self) -> dict[str, str]:
        return {
            'backend': self.name,
            'version': self._opened.trt.__version__,
            'precision': self._precision,
            'engine': str(self._opened.path),
            'device': self._opened.device.name,
        }


def load(artifact: ModelArtifact, *, threads: int = 0, precision: str = 'fp16',
         cache_dir: Path | str | None = None, build_if_missing: bool = False) -> TensorRTBackend:
    """Loads `artifact` on TensorRT, from the engine cache or by building the engine.

    Args:
        artifact: An ONNX artefact with a fixed input shape.
        threads: Unused (inference runs on the GPU); accepted like every backend's load.
        precision: fp32, fp16 or int8 (int8 for graphs with Q/DQ nodes).
        cache_dir: Engine cache; default ~/.cache/seg_perception/engines.
        build_if_missing: Build a missing or unusable engine (minutes on a Jetson). Off by
            default: the node then never blocks on a build; it raises BackendUnavailable
            (so `auto` falls back to ONNX Runtime) and says to run build_engine.

    Raises:
        BackendUnavailable: No tensorrt, no CUDA device, no engine and no build asked for,
            or TensorRT cannot parse / build the graph.
        ModelLoadError: The engine's inputs and outputs do not match the sidecar.
    """
    del threads
    opened = _open(artifact, precision, cache_dir, build_if_missing=build_if_missing)
    return TensorRTBackend(opened, artifact, precision)


def prebuild(artifact: ModelArtifact, *, precision: str = 'fp16',
             cache_dir: Path | str | None = None, force: bool = False) -> Path:
    """Builds (or, without `force`, reuses) the cached engine and returns its path."""
    return _open(artifact, precision, cache_dir, build_if_missing=True, force=force).path
