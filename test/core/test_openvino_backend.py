"""The OpenVINO backend: the same ONNX files as ONNX Runtime on OpenVINO's CPU runtime, with the
same scores (f32, not the CPU plugin's bf16 default), exact INT8 Q/DQ labels, the same load
errors, and a process that still takes signals after models come and go."""

from __future__ import annotations

import importlib.util
from pathlib import Path
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from seg_perception.core.artifact import ModelLoadError, load_artifact
from seg_perception.core.backends import create_backend
from seg_perception.core.paths import models_dir
from seg_perception.core.segmenter import Segmenter
from test.core.test_segmenter import copy_model, edit_sidecar

pytestmark = pytest.mark.skipif(importlib.util.find_spec('openvino') is None,
                                reason='openvino is not installed (pip install openvino)')


def test_shipped_model_scores_equal_onnxruntime_on_camvid_frames(val_frames):
    """The shipped 11-class model on real CamVid val frames: OpenVINO's scores are within 1e-4
    (relative to the largest) of ONNX Runtime's and the labels are the same."""
    path = models_dir() / 'bisenet_lite_camvid.onnx'
    ov_seg = Segmenter.from_path(path, backend='openvino', threads=2)
    ort_seg = Segmenter.from_path(path, backend='onnxruntime', threads=2)
    described = ov_seg.backend.describe()
    assert described['backend'] == 'openvino' and described['precision'] == 'f32'
    for _, image, _ in val_frames[:3]:
        batch = ort_seg.preprocess(image)
        want = ort_seg.backend.infer(batch)
        got = ov_seg.backend.infer(batch)
        assert got.shape == want.shape and got.dtype == np.float32
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max()
        same = (got.argmax(1) == want.argmax(1)).mean()
        assert same >= 0.9999, f'{100 * (1 - same):.3f} % of labels differ'
        np.testing.assert_array_equal(ov_seg(image).labels, ort_seg(image).labels)


def test_infer_returns_its_own_array_each_run(camvid_model):
    """The output is copied out of the request's buffer: a second run must not change the
    first result."""
    backend = create_backend('openvino', load_artifact(camvid_model))
    rng = np.random.default_rng(0)
    a_in, b_in = (rng.uniform(0, 255, (1, 3, 180, 240)).astype(np.float32) for _ in range(2))
    first = backend.infer(a_in)
    kept = first.copy()
    backend.infer(b_in)
    np.testing.assert_array_equal(first, kept)


def test_binary_int8_qdq_graph_labels_as_the_torch_deploy_forward(tmp_path):
    """BiSegUNet (plain sign binarisation) in deploy mode, exported as INT8 Q/DQ: OpenVINO
    runs it in integer kernels and labels every pixel as eager torch does."""
    from seg_perception.tools.bench import prepare

    forwards = {b: prepare('bisegunet', b, (96, 128), num_classes=11, threads=2,
                           workdir=Path(tmp_path))
                for b in ('torch', 'openvino', 'openvino-int8')}
    want = forwards['torch']()
    for backend in ('openvino', 'openvino-int8'):
        got = forwards[backend]()
        np.testing.assert_array_equal(got.argmax(1), want.argmax(1), err_msg=backend)
        assert np.abs(got - want).max() <= 1e-4 * np.abs(want).max(), backend


def test_openvino_is_opt_in_and_not_picked_by_auto(camvid_model):
    artifact = load_artifact(camvid_model)
    assert create_backend('auto', artifact).name == 'onnxruntime'
    assert create_backend('openvino', artifact).name == 'openvino'


def test_bad_files_fail_with_the_file_and_reason(camvid_model, tmp_path):
    path = copy_model(camvid_model, tmp_path)
    edit_sidecar(path, input_size=[360, 480])
    with pytest.raises(ModelLoadError,
                       match=r'input shape \[1, 3, 180, 240\] does not match the sidecar'):
        create_backend('openvino', load_artifact(path))
    path.write_text('hello')
    with pytest.raises(ModelLoadError, match=r'm\.onnx.*not a loadable ONNX model'):
        create_backend('openvino', load_artifact(path))


# Loads two models, drops them in the order they were loaded (the order that left the signal
# stack dangling with one ov.Core per model), then checks that the thread's signal stack is
# mapped memory and that Python signal handlers still run: SIGCHLD from forked children (as
# torch DataLoader workers send) and SIGINT (Ctrl-C on a node).
_SIGNALS_AFTER_MODELS = textwrap.dedent("""
    import ctypes, gc, os, signal, sys
    from seg_perception.core.artifact import load_artifact
    from seg_perception.core.backends import create_backend

    class Stack(ctypes.Structure):
        _fields_ = [('sp', ctypes.c_void_p), ('flags', ctypes.c_int), ('size', ctypes.c_size_t)]

    def signal_stack_is_mapped():
        stack = Stack()
        assert ctypes.CDLL(None).sigaltstack(None, ctypes.byref(stack)) == 0
        if stack.flags & 2:  # SS_DISABLE: no signal stack, handlers run on the thread's own
            return True
        for line in open('/proc/self/maps'):
            lo, hi = (int(x, 16) for x in line.split()[0].split('-'))
            if lo <= stack.sp and stack.sp + stack.size <= hi:
                return True
        return False

    first = create_backend('openvino', load_artifact(sys.argv[1]))
    second = create_backend('openvino', load_artifact(sys.argv[2]))
    del first
    gc.collect()
    del second
    gc.collect()
    print('signal stack mapped:', signal_stack_is_mapped(), flush=True)
    caught = []
    signal.signal(signal.SIGCHLD, lambda *_: caught.append('SIGCHLD'))
    signal.signal(signal.SIGINT, lambda *_: caught.append('SIGINT'))
    for _ in range(3):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    os.kill(os.getpid(), signal.SIGINT)
    print('caught:', sorted(set(caught)), flush=True)
""")


def test_signals_still_work_after_models_are_dropped_in_load_order(camvid_model):
    """With a Core per model, OpenVINO's CPU plugin left the thread's signal stack pointing at
    unmapped memory, and the next Python signal handler died of SIGSEGV (see `_core` in
    openvino_backend.py). Run in a child process: the failure kills the process it happens in."""
    other = models_dir() / 'bisenet_lite_camvid.onnx'
    run = subprocess.run([sys.executable, '-c', _SIGNALS_AFTER_MODELS, str(camvid_model),
                          str(other)], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.returncode == 0, f'rc {run.returncode}: {run.stdout[-2000:]}{run.stderr[-2000:]}'
    assert 'signal stack mapped: True' in run.stdout, run.stdout
    assert "caught: ['SIGCHLD', 'SIGINT']" in run.stdout, run.stdout
