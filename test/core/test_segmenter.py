"""Segmenter, artefacts and backends on real CamVid frames with small exported networks."""

import shutil

import numpy as np
import pytest
import yaml

from seg_perception.core.artifact import ModelLoadError, load_artifact
from seg_perception.core.backends import BackendUnavailable, create_backend
from seg_perception.core.segmenter import Segmenter, _argmax


def test_labels_at_input_size_match_network_argmax_resized_nearest(camvid_model, val_frames):
    seg = Segmenter.from_path(camvid_model, backend='onnxruntime')
    _, image, _ = val_frames[0]
    result = seg(image)
    assert result.labels.shape == image.shape[:2] and result.labels.dtype == np.uint8
    assert result.mask is None and result.confidence.shape == image.shape[:2]
    scores = seg.backend.infer(seg.preprocess(image))[0]
    net = np.argmax(scores, axis=0).astype(np.uint8)
    # 360x480 from 180x240 by nearest: every 2x2 block repeats one network pixel.
    np.testing.assert_array_equal(result.labels[::2, ::2], net)
    np.testing.assert_array_equal(result.labels[1::2, 1::2], net)
    assert len(np.unique(result.labels)) > 1, 'the test network should not be constant'


def test_confidence_is_max_softmax(camvid_model, val_frames):
    seg = Segmenter.from_path(camvid_model)
    scores = seg.backend.infer(seg.preprocess(val_frames[1][1]))[0]
    exp = np.exp(scores - scores.max(0))
    expected = np.round(255 * (exp / exp.sum(0)).max(0))
    _, conf = seg.postprocess(scores)
    assert np.abs(conf.astype(int) - expected).max() <= 1
    assert conf.min() >= 255 // 11  # never below 1 / num_classes


def test_bgr_input_gives_the_same_labels(camvid_model, val_frames):
    seg = Segmenter.from_path(camvid_model)
    image = val_frames[2][1]
    np.testing.assert_array_equal(seg(image).labels,
                                  seg(np.ascontiguousarray(image[:, :, ::-1]), bgr=True).labels)


def test_other_input_sizes_come_back_at_their_size(camvid_model):
    seg = Segmenter.from_path(camvid_model)
    for shape in ((720, 1280, 3), (97, 131, 3)):
        image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
        assert seg(image, confidence=False).labels.shape == shape[:2]


def test_binary_mask_follows_the_margin_threshold(binary_model, val_frames):
    seg = Segmenter.from_path(binary_model)
    image = val_frames[0][1]
    scores = seg.backend.infer(seg.preprocess(image))[0]
    margin = scores[1] - scores[0]
    for threshold in (0.0, float(np.median(margin))):
        seg.threshold = threshold
        result = seg(image)
        assert set(np.unique(result.mask)) <= {0, 255}
        np.testing.assert_array_equal(result.mask, result.labels * 255)
        np.testing.assert_array_equal(result.labels[::2, ::2], (margin > threshold))
    assert 0.3 < (result.mask > 0).mean() < 0.7  # median threshold splits about half


def test_torch_checkpoint_gives_the_same_labels_as_onnx(camvid_model, val_frames):
    torch_seg = Segmenter.from_path(camvid_model.with_suffix('.pt'), backend='torch')
    onnx_seg = Segmenter.from_path(camvid_model, backend='onnxruntime')
    assert torch_seg.backend.describe()['backend'] == 'torch'
    for _, image, _ in val_frames[:2]:
        a = torch_seg.backend.infer(torch_seg.preprocess(image))
        b = onnx_seg.backend.infer(onnx_seg.preprocess(image))
        assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max()


def test_auto_backend_picks_onnxruntime_for_onnx_and_torch_for_checkpoints(camvid_model):
    assert Segmenter.from_path(camvid_model).backend.name == 'onnxruntime'
    assert Segmenter.from_path(camvid_model.with_suffix('.pt')).backend.name == 'torch'


def test_intra_op_spinning_is_set_on_the_session_and_changes_no_score(camvid_model,
                                                                     val_frames):
    """`spinning` reaches ONNX Runtime's session config (off unless asked: the node's
    default) and is a speed setting only: the scores are the same bits either way."""
    quiet = Segmenter.from_path(camvid_model, backend='onnxruntime', threads=2)
    busy = Segmenter.from_path(camvid_model, backend='onnxruntime', threads=2, spinning=True)
    for seg, want in ((quiet, '0'), (busy, '1')):
        options = seg.backend._session.get_session_options()
        assert options.get_session_config_entry('session.intra_op.allow_spinning') == want
    assert quiet.backend.describe()['intra_op_spinning'] == 'off'
    assert busy.backend.describe()['intra_op_spinning'] == 'on'
    # Backends without such a setting take the argument and ignore it.
    assert Segmenter.from_path(camvid_model.with_suffix('.pt'), spinning=True).backend.name == \
        'torch'
    batch = quiet.preprocess(val_frames[0][1])
    np.testing.assert_array_equal(quiet.backend.infer(batch), busy.backend.infer(batch))


def test_fast_argmax_equals_numpy_including_ties():
    scores = np.random.default_rng(0).normal(size=(11, 30, 40)).astype(np.float32)
    scores[4, :5] = scores[7, :5]  # ties go to the lower id
    scores[:, 10] = 0.0
    labels, best = _argmax(scores)
    np.testing.assert_array_equal(labels, np.argmax(scores, axis=0))
    np.testing.assert_array_equal(best, scores.max(0))


def test_rejects_non_images(camvid_model):
    seg = Segmenter.from_path(camvid_model)
    with pytest.raises(ValueError, match='HxWx3'):
        seg(np.zeros((10, 10), np.uint8))
    with pytest.raises(ValueError, match='uint8'):
        seg(np.zeros((10, 10, 3), np.float32))


# ---------------------------------------------------------------- artefact errors
def copy_model(src, dst_dir, name='m'):
    dst = dst_dir / f'{name}.onnx'
    shutil.copy(src, dst)
    shutil.copy(src.with_suffix('.yaml'), dst.with_suffix('.yaml'))
    return dst


def edit_sidecar(path, **changes):
    side = path.with_suffix('.yaml')
    meta = yaml.safe_load(side.read_text())
    meta.update(changes)
    side.write_text(yaml.safe_dump(meta))


def test_missing_model_names_the_file(tmp_path):
    with pytest.raises(ModelLoadError, match=r'nope\.onnx: file not found'):
        load_artifact(tmp_path / 'nope.onnx')


def test_missing_sidecar_is_named(camvid_model, tmp_path):
    path = copy_model(camvid_model, tmp_path)
    path.with_suffix('.yaml').unlink()
    with pytest.raises(ModelLoadError, match=r'sidecar .*m\.yaml not found'):
        load_artifact(path)


def test_truncated_and_non_model_files_fail_clearly(camvid_model, tmp_path):
    path = copy_model(camvid_model, tmp_path)
    path.write_bytes(path.read_bytes()[:500])
    with pytest.raises(ModelLoadError, match='not a loadable ONNX model'):
        Segmenter.from_path(path, backend='onnxruntime')
    path.write_text('hello')
    with pytest.raises(ModelLoadError, match='not a loadable ONNX model'):
        Segmenter.from_path(path)


@pytest.mark.parametrize('changes,match', [
    ({'num_classes': 19}, 'does not match class set'),
    ({'class_set': 'cityscapes19', 'num_classes': 19},
     'outputs 11 classes but the sidecar says 19'),
    ({'input_size': [360, 480]}, 'does not match the sidecar input_size'),
    ({'output_kind': 'boxes'}, "output_kind 'boxes'"),
    ({'class_set': 'nope'}, 'unknown class set'),
])
def test_sidecar_inconsistent_with_network(camvid_model, tmp_path, changes, match):
    path = copy_model(camvid_model, tmp_path)
    edit_sidecar(path, **changes)
    with pytest.raises(ModelLoadError, match=match):
        Segmenter.from_path(path)


def test_unknown_backend_and_wrong_format(camvid_model):
    artifact = load_artifact(camvid_model)
    with pytest.raises(ValueError, match='unknown backend'):
        create_backend('cuda', artifact)
    with pytest.raises(ModelLoadError, match="backend 'torch' cannot run a onnx file"):
        create_backend('torch', artifact)


def test_backend_unavailable_message():
    err = BackendUnavailable('tensorrt', 'cannot import tensorrt')
    assert str(err) == 'backend unavailable: tensorrt: cannot import tensorrt'
