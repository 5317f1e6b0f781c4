"""TensorRT backend: pure cache / flag / provider logic everywhere, engines only on a GPU.

Nothing here stands in for TensorRT: the pure functions take plain values, the fallback tests
run the real backends on this machine, and what needs TensorRT and a GPU is skipped
without them (`needs_gpu`).
"""

from __future__ import annotations

from dataclasses import fields, replace
import importlib.util
import json
import os

import numpy as np
import pytest

from seg_perception.core.artifact import load_artifact
from seg_perception.core.backends import BackendUnavailable, create_backend
from seg_perception.core.backends import tensorrt_backend as trb
from seg_perception.tools.build_engine import main as build_engine_main

HAS_TRT = importlib.util.find_spec('tensorrt') is not None


def _gpu_ready() -> bool:
    if not HAS_TRT:
        return False  # short cut: no torch / CUDA probing at collection when TRT is absent
    try:
        trb.probe_device()
    except BackendUnavailable:
        return False
    return True


GPU = _gpu_ready()
needs_gpu = pytest.mark.skipif(not GPU, reason='needs TensorRT and a CUDA GPU')
without_trt = pytest.mark.skipif(HAS_TRT, reason='tensorrt is installed here')

KEY = trb.EngineKey(onnx_sha256='ab' * 32, trt_version='10.3.0', gpu_name='Orin',
                    compute_capability='8.7', precision='fp16', input_shape=(1, 3, 64, 96))


@pytest.fixture(scope='module')
def tiny_onnx(tmp_path_factory):
    from seg_perception.models import build_model
    from seg_perception.models.export import export_onnx

    path = tmp_path_factory.mktemp('trt') / 'm.onnx'
    export_onnx(build_model('fcn_tiny', num_classes=11).eval(), path, model_name='fcn_tiny',
                class_set='camvid11', num_classes=11, input_size=(64, 96))
    return path


# ---- cache key and file names -----------------------------------------------------------------

def test_cache_key_is_stable_and_changes_with_every_part():
    assert KEY.digest() == replace(KEY).digest()
    assert len(KEY.digest()) == 64
    changed = {'onnx_sha256': 'cd' * 32, 'trt_version': '10.3.1', 'gpu_name': 'RTX 4090',
               'compute_capability': '8.9', 'precision': 'fp32', 'input_shape': (1, 3, 64, 128)}
    assert set(changed) == {f.name for f in fields(trb.EngineKey)}
    digests = {KEY.digest()} | {replace(KEY, **{k: v}).digest() for k, v in changed.items()}
    assert len(digests) == 1 + len(changed)


def test_onnx_hash_is_of_the_file_content(tmp_path):
    a, b = tmp_path / 'a.onnx', tmp_path / 'b.onnx'
    a.write_bytes(b'graph')
    b.write_bytes(b'graph')
    assert trb.file_sha256(a) == trb.file_sha256(b)
    b.write_bytes(b'graph2')
    assert trb.file_sha256(a) != trb.file_sha256(b)


def test_engine_path_is_model_stem_and_key_prefix(tmp_path):
    path = trb.engine_path(tmp_path, '/models/fcn_tiny_camvid.onnx', KEY)
    assert path == tmp_path / f'fcn_tiny_camvid-{KEY.digest()[:16]}.engine'
    assert trb.meta_path(path) == tmp_path / f'fcn_tiny_camvid-{KEY.digest()[:16]}.json'


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.delenv('XDG_CACHE_HOME', raising=False)
    monkeypatch.setenv('HOME', str(tmp_path))
    assert trb.default_cache_dir() == tmp_path / '.cache' / 'seg_perception' / 'engines'
    monkeypatch.setenv('XDG_CACHE_HOME', str(tmp_path / 'xdg'))
    assert trb.default_cache_dir() == tmp_path / 'xdg' / 'seg_perception' / 'engines'


# ---- the rebuild decision --------------------------------------------------------------------

def test_read_cached_decides_ok_missing_or_rebuild(tmp_path, caplog):
    path = tmp_path / 'm.engine'
    assert trb.read_cached(path, bytes.upper) == (trb.MISSING, None)
    path.write_bytes(b'engine')
    assert trb.read_cached(path, bytes.upper) == (trb.OK, b'ENGINE')
    # TensorRT returns None for a file it cannot use ...
    assert trb.read_cached(path, lambda data: None) == (trb.REBUILD, None)

    def raises(data):  # ... or raises, depending on version and damage
        raise RuntimeError('magic tag mismatch')

    assert trb.read_cached(path, raises) == (trb.REBUILD, None)
    assert 'magic tag mismatch' in caplog.text and 'rebuilding' in caplog.text


class FakeEngineFormat:
    """Plain stand-ins for TensorRT's two calls around the cache: `build` returns serialised
    bytes, `deserialize` accepts only what `build` made (like an engine of another TensorRT or
    GPU, anything else is unusable). The cache logic itself is the real code."""

    MAGIC = b'ENGINE v10 '

    def __init__(self):
        self.builds = 0

    def build(self) -> bytes:
        self.builds += 1
        return self.MAGIC + f'build {self.builds}'.encode()

    def deserialize(self, data: bytes):
        return ('engine', bytes(data)) if bytes(data).startswith(self.MAGIC) else None


@pytest.mark.parametrize('cached', [b'', b'ENGINE v8 from another TensorRT', b'\x00' * 64,
                                    b'ENGINE v10 build 1'[:5]])
def test_an_engine_that_does_not_deserialise_is_rebuilt_and_replaced(tmp_path, cached, caplog):
    fmt, path = FakeEngineFormat(), tmp_path / 'm-0123.engine'
    path.write_bytes(cached)
    engine = trb.cached_or_built(path, fmt.deserialize, fmt.build, build_if_missing=True,
                                 model='m.onnx', meta={'key': 'k'})
    assert engine == ('engine', b'ENGINE v10 build 1') and fmt.builds == 1
    assert path.read_bytes() == b'ENGINE v10 build 1'
    assert json.loads(trb.meta_path(path).read_text())['key'] == 'k'
    assert sorted(os.listdir(tmp_path)) == ['m-0123.engine', 'm-0123.json']
    assert 'rebuilding' in caplog.text
    # Now cached: loaded, not built again.
    assert trb.cached_or_built(path, fmt.deserialize, fmt.build, build_if_missing=True,
                               model='m.onnx') == engine and fmt.builds == 1


def test_without_build_an_unusable_engine_is_unavailable_not_fatal_and_kept(tmp_path):
    fmt, path = FakeEngineFormat(), tmp_path / 'm.engine'
    with pytest.raises(BackendUnavailable, match=r'no prebuilt engine for m\.onnx \(run '
                                                 r'build_engine --model /models/m\.onnx\)'):
        trb.cached_or_built(path, fmt.deserialize, fmt.build, build_if_missing=False,
                            model='/models/m.onnx')
    path.write_bytes(b'corrupt')
    with pytest.raises(BackendUnavailable, match='unusable prebuilt engine'):
        trb.cached_or_built(path, fmt.deserialize, fmt.build, build_if_missing=False,
                            model='/models/m.onnx')
    assert fmt.builds == 0 and path.read_bytes() == b'corrupt'


def test_force_rebuilds_a_good_engine_and_a_failed_build_keeps_the_old_file(tmp_path):
    fmt, path = FakeEngineFormat(), tmp_path / 'm.engine'
    path.write_bytes(b'ENGINE v10 old')
    trb.cached_or_built(path, fmt.deserialize, fmt.build, build_if_missing=True, force=True,
                        model='m.onnx')
    assert path.read_bytes() == b'ENGINE v10 build 1'

    def fails():
        raise BackendUnavailable('tensorrt', 'engine build failed for m.onnx')

    with pytest.raises(BackendUnavailable, match='engine build failed'):
        trb.cached_or_built(path, fmt.deserialize, fails, build_if_missing=True, force=True,
                            model='m.onnx')
    assert path.read_bytes() == b'ENGINE v10 build 1'
    with pytest.raises(BackendUnavailable, match='the engine just built .* does not load'):
        trb.cached_or_built(path, fmt.deserialize, lambda: b'garbage', build_if_missing=True,
                            force=True, model='m.onnx')


# ---- version-gated flags ----------------------------------------------------------------------

@pytest.mark.parametrize('version,fp32,fp16,int8,network', [
    ('8.5.2', (), ('FP16',), ('INT8', 'FP16'), ('EXPLICIT_BATCH',)),
    ('8.6.1', (), ('FP16',), ('INT8', 'FP16'), ('EXPLICIT_BATCH',)),
    ('10.3.0', (), ('FP16',), ('INT8', 'FP16'), ()),
    ('11.0.0', (), (), (), ()),
])
def test_flags_per_version_and_precision(version, fp32, fp16, int8, network):
    assert trb.precision_flags(version, 'fp32') == fp32
    assert trb.precision_flags(version, 'fp16') == fp16
    assert trb.precision_flags(version, 'int8') == int8
    assert trb.network_flags(version) == network
    assert trb.has_v3_api(version)


def test_versions_and_precisions_are_checked():
    assert trb.parse_version('8.6.1.post1') == (8, 6, 1)
    assert trb.parse_version('10.0') == (10, 0, 0)
    assert not trb.has_v3_api('8.4.3')
    with pytest.raises(ValueError, match='not a TensorRT version'):
        trb.parse_version('dev')
    with pytest.raises(ValueError, match='precision must be one of'):
        trb.precision_flags('10.3.0', 'int4')


# ---- buffer provider and engine I/O checks ----------------------------------------------------

def test_provider_prefers_torch_then_cuda_python():
    assert trb.choose_provider(True, True) == 'torch'
    assert trb.choose_provider(True, False) == 'torch'
    assert trb.choose_provider(False, True) == 'cudart'
    with pytest.raises(BackendUnavailable, match='no CUDA device: torch sees none') as err:
        trb.choose_provider(False, False, 'torch sees none')
    assert err.value.name == 'tensorrt'


@pytest.mark.skipif(GPU, reason='this machine has a GPU')
def test_probe_device_reports_why_there_is_no_gpu():
    with pytest.raises(BackendUnavailable, match='no CUDA device: ') as err:
        trb.probe_device()
    assert 'torch' in err.value.reason


def _spec(name, shape, is_input):
    return trb.TensorSpec(name, shape, np.dtype(np.float32), is_input)


def test_split_io_checks_counts_shapes_and_sidecar_size():
    image, scores = _spec('image', (1, 3, 64, 96), True), _spec('scores', (1, 11, 8, 12), False)
    assert trb.split_io([scores, image], (1, 3, 64, 96)) == (image, scores)
    with pytest.raises(ValueError, match='one input and one output, found 2 and 1'):
        trb.split_io([image, replace(image, name='extra'), scores], (1, 3, 64, 96))
    with pytest.raises(ValueError, match='dynamic shape'):
        trb.split_io([replace(image, shape=(-1, 3, 64, 96)), scores], (1, 3, 64, 96))
    with pytest.raises(ValueError, match='does not match the sidecar'):
        trb.split_io([image, scores], (1, 3, 128, 96))


# ---- on this machine: fallback and clean failures ---------------------------------------------

@without_trt
def test_auto_falls_back_to_onnxruntime_and_explicit_tensorrt_says_why(tiny_onnx):
    artifact = load_artifact(tiny_onnx)
    chosen = create_backend('auto', artifact)
    assert chosen.name == 'onnxruntime'
    assert len(chosen.skipped) == 1 and chosen.skipped[0].startswith('tensorrt: ')
    with pytest.raises(BackendUnavailable) as err:
        create_backend('tensorrt', artifact)
    assert err.value.name == 'tensorrt'
    assert err.value.reason.startswith("cannot import tensorrt (No module named 'tensorrt'")
    assert str(err.value).startswith('backend unavailable: tensorrt: cannot import tensorrt')


def test_bad_precision_is_an_argument_error(tiny_onnx):
    with pytest.raises(ValueError, match='precision must be one of'):
        trb.load(load_artifact(tiny_onnx), precision='int4')


@without_trt
def test_build_engine_exits_2_with_the_reason(tiny_onnx, tmp_path, capsys):
    code = build_engine_main(['--model', str(tiny_onnx), '--cache-dir', str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ''
    assert 'backend unavailable: tensorrt: cannot import tensorrt' in err
    assert list(tmp_path.iterdir()) == []


def test_build_engine_rejects_a_missing_model_and_bad_precision(tmp_path, capsys):
    assert build_engine_main(['--model', str(tmp_path / 'none.onnx')]) == 2
    assert 'cannot load model' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        build_engine_main(['--model', 'm.onnx', '--precision', 'int4'])
    assert exit_.value.code == 2


# ---- with TensorRT and a GPU ------------------------------------------------------------------

@needs_gpu
def test_fp16_engine_matches_onnxruntime_and_is_cached(tiny_onnx, tmp_path):
    artifact = load_artifact(tiny_onnx)
    backend = create_backend('onnxruntime', artifact)
    trt_backend = trb.load(artifact, precision='fp16', cache_dir=tmp_path, build_if_missing=True)
    info = trt_backend.describe()
    assert info['backend'] == 'tensorrt' and info['precision'] == 'fp16' and info['device']
    engine = tmp_path / info['engine'].rsplit('/', 1)[-1]
    assert engine.is_file() and trb.meta_path(engine).is_file()
    batch = np.random.default_rng(0).uniform(0, 255, (1, 3, 64, 96)).astype(np.float32)
    np.testing.assert_allclose(trt_backend.infer(batch), backend.infer(batch),
                               atol=1e-2, rtol=1e-2)
    # The second load uses the cache: no build allowed, same file untouched.
    mtime = engine.stat().st_mtime_ns
    again = trb.load(artifact, precision='fp16', cache_dir=tmp_path, build_if_missing=False)
    assert again.describe()['engine'] == info['engine'] and engine.stat().st_mtime_ns == mtime


@needs_gpu
def test_corrupt_cached_engine_is_rebuilt_on_load(tiny_onnx, tmp_path):
    artifact = load_artifact(tiny_onnx)
    path = trb.prebuild(artifact, precision='fp32', cache_dir=tmp_path)
    path.write_bytes(b'not an engine')
    with pytest.raises(BackendUnavailable, match='unusable prebuilt engine'):
        trb.load(artifact, precision='fp32', cache_dir=tmp_path, build_if_missing=False)
    backend = trb.load(artifact, precision='fp32', cache_dir=tmp_path, build_if_missing=True)
    assert path.stat().st_size > 100
    out = backend.infer(np.zeros((1, 3, 64, 96), np.float32))
    assert out.shape[:2] == (1, 11) and out.dtype == np.float32


@needs_gpu
def test_missing_engine_without_build_is_unavailable(tiny_onnx, tmp_path):
    with pytest.raises(BackendUnavailable, match='no prebuilt engine for m.onnx'):
        trb.load(load_artifact(tiny_onnx), cache_dir=tmp_path, build_if_missing=False)


@needs_gpu
def test_build_engine_prints_the_engine_path(tiny_onnx, tmp_path, capsys):
    assert build_engine_main(['--model', str(tiny_onnx), '--cache-dir', str(tmp_path),
                              '--precision', 'fp32']) == 0
    path = capsys.readouterr().out.strip()
    assert path.endswith('.engine') and os.path.isfile(path)
