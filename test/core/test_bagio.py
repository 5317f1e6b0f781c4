"""make_bag -> rosbag2 -> read back, with rosbags (both storages), and the reader's checks."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from seg_perception.core import bagio
from seg_perception.core.bagio import BagError, plan_frames, read_bag, write_bag
from seg_perception.tools import make_bag


@pytest.fixture(scope='module')
def frame_dirs(camvid_root, tmp_path_factory) -> tuple[Path, Path, list[str]]:
    """Three train frames of sequence 0001TP, three val frames of 0016E5 (links into the
    dataset, nothing copied)."""
    picked = {split: sorted(p.name for p in (camvid_root / split).glob('*.png'))[:3]
              for split in ('train', 'val')}
    assert {bagio.sequence_of(n) for n in picked['train']} == {'0001TP'}
    assert {bagio.sequence_of(n) for n in picked['val']} == {'0016E5'}
    root = tmp_path_factory.mktemp('frames')
    (root / 'images').mkdir()
    (root / 'labels').mkdir()
    for split, names in picked.items():
        for name in names:
            (root / 'images' / name).symlink_to(camvid_root / split / name)
            (root / 'labels' / name).symlink_to(camvid_root / f'{split}annot' / name)
    return root / 'images', root / 'labels', picked['train'] + picked['val']


@pytest.mark.parametrize('storage', bagio.STORAGES)
def test_bag_reads_back_identically(frame_dirs, tmp_path, storage):
    images, labels, names = frame_dirs
    out = tmp_path / 'bag'
    code = make_bag.main(['--images', str(images), '--labels', str(labels), '--out', str(out),
                          '--storage', storage, '--rate', '5', '--quiet'])
    assert code == 0
    meta = yaml.safe_load((out / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['storage_identifier'] == storage
    assert meta['message_count'] == 12
    with pytest.warns(UserWarning, match='gap of 1.20 s'):  # the sequence change
        contents = read_bag(out)
    assert contents.image_topic == bagio.IMAGE_TOPIC and len(contents.warnings) == 1
    assert len(contents.frames) == 6
    stamps = [f.stamp_ns for f in contents.frames]
    # 5 Hz inside a sequence, plus the one-second gap where the sequence changes.
    assert np.diff(stamps).tolist() == [200_000_000] * 2 + [1_200_000_000] + [200_000_000] * 2
    for frame, name in zip(contents.frames, names, strict=True):
        bgr = cv2.imread(str(images / name), cv2.IMREAD_COLOR)
        assert np.array_equal(frame.rgb, bgr[:, :, ::-1])
        assert np.array_equal(frame.label, cv2.imread(str(labels / name), cv2.IMREAD_UNCHANGED))
    # Every message's bag timestamp equals its header stamp; labels share the image stamps.
    seen = {}
    for topic, stamp, msg in bagio.iter_messages(out):
        assert stamp == bagio.stamp_of(msg)
        seen.setdefault(topic, []).append(stamp)
    assert seen[bagio.IMAGE_TOPIC] == seen[bagio.LABELS_TOPIC] == stamps


def test_compressed_camera_info_and_humble_metadata(frame_dirs, tmp_path):
    images, labels, names = frame_dirs
    out = tmp_path / 'bag'
    summary = write_bag(plan_frames(images, labels, rate=10, limit=2), out, storage='mcap',
                        compressed=True, humble=True,
                        camera_info={'fx': 400.0, 'fy': 410.0, 'cx': 240.0, 'cy': 180.0})
    assert summary['frames'] == 2 and summary['camera_info'] == 2
    meta = yaml.safe_load((out / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
    assert meta['version'] == 5
    assert 'ros_distro' not in meta and 'custom_data' not in meta
    for entry in meta['topics_with_message_count']:
        assert 'type_description_hash' not in entry['topic_metadata']
        assert isinstance(entry['topic_metadata']['offered_qos_profiles'], str)
    contents = read_bag(out)  # rosbags reads format 5 as ros2 bag does
    assert contents.image_topic == bagio.COMPRESSED_TOPIC
    bgr = cv2.imread(str(images / names[0]), cv2.IMREAD_COLOR)
    # JPEG at quality 95: close to the PNG, not equal.
    assert np.abs(contents.frames[0].rgb.astype(int) - bgr[:, :, ::-1]).mean() < 3.0
    infos = [m for t, _, m in bagio.iter_messages(out) if t == bagio.INFO_TOPIC]
    assert infos[0].k.tolist() == [400.0, 0, 240.0, 0, 410.0, 180.0, 0, 0, 1]
    assert (infos[0].width, infos[0].height) == (480, 360)


def test_gap_out_of_order_and_duplicates_warn(frame_dirs, tmp_path):
    images, labels, names = frame_dirs
    ts = bagio.typestore()
    rgb = cv2.imread(str(images / names[0]), cv2.IMREAD_COLOR)[:, :, ::-1]
    label = cv2.imread(str(labels / names[0]), cv2.IMREAD_UNCHANGED)
    # Header stamps in 1/10 s: out of order, a gap, a duplicate; the bag (receive) timestamps
    # increase, as a recorder writes them.
    stamps = [10, 11, 13, 12, 30, 31, 31]
    messages = []
    for i, stamp in enumerate(stamps):
        ns = stamp * 100_000_000
        messages.append((bagio.IMAGE_TOPIC, bagio.IMAGE, 10**10 + i, bytes(ts.serialize_cdr(
            bagio.image_message(ts, rgb, 'rgb8', ns), bagio.IMAGE))))
    for stamp in stamps[:3]:  # ground truth for three frames only
        ns = stamp * 100_000_000
        messages.append((bagio.LABELS_TOPIC, bagio.IMAGE, ns, bytes(ts.serialize_cdr(
            bagio.image_message(ts, label, 'mono8', ns), bagio.IMAGE))))
    bagio.write_messages(tmp_path / 'bag', messages)
    with pytest.warns(UserWarning) as caught:
        contents = read_bag(tmp_path / 'bag')
    assert [f.stamp_ns // 100_000_000 for f in contents.frames] == [10, 11, 12, 13, 30, 31]
    text = ' | '.join(contents.warnings)
    assert 'out of order' in text and 'gap of 1.70 s' in text and 'duplicate' in text
    assert '3 of 6 frames have no ground truth' in text
    assert len(caught) == len(contents.warnings)
    labelled = [f.label is not None for f in contents.frames]
    assert labelled == [True, True, False, True, False, False]


def test_bad_inputs_are_refused_with_the_reason(frame_dirs, tmp_path):
    images, labels, _ = frame_dirs
    with pytest.raises(BagError, match='does not exist'):
        plan_frames(tmp_path / 'nothing')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BagError, match='no images'):
        plan_frames(tmp_path / 'empty')
    with pytest.raises(BagError, match='no label'):
        plan_frames(images, tmp_path / 'empty')
    with pytest.raises(BagError, match='rate must be > 0'):
        plan_frames(images, rate=0)
    (tmp_path / 'exists').mkdir()
    assert make_bag.main(['--images', str(images), '--out', str(tmp_path / 'exists'),
                          '--quiet']) == 2
    with pytest.raises(BagError, match='not a rosbag2 folder'):
        read_bag(tmp_path / 'empty')
    bag = tmp_path / 'nolabels'
    write_bag(plan_frames(images, limit=1), bag)
    with pytest.raises(BagError, match='no image topic /x'):
        read_bag(bag, image_topic='/x')
