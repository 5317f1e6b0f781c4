"""Evaluation bags: image folders -> rosbag2, and rosbag2 -> frames with ground truth.

Written and read with `rosbags` (pure Python, no ROS install needed), in the standard rosbag2
layout (a folder with metadata.yaml and one sqlite3 or mcap file) that `ros2 bag play` /
`ros2 bag info` accept. Topics of a bag made here:

    /camera/image_raw              sensor_msgs/Image rgb8 (or .../compressed: CompressedImage)
    /camera/labels_gt              sensor_msgs/Image mono8, class index per pixel, same stamp
    /camera/camera_info            sensor_msgs/CameraInfo (optional), same stamp

Frames of one sequence (CamVid: the file-name prefix before the first '_') are 1/rate s
apart; sequences follow each other after a one-second gap, so a player and the evaluation see
where a sequence ends. Message (bag) timestamps equal the header stamps.

Humble cannot read the metadata Jazzy-era writers produce (rosbag2 format 8/9: QoS as a YAML
list, type hashes). `humble=True` rewrites metadata.yaml as format 5 (QoS as a string, no
type_description_hash / custom_data / ros_distro), which Humble through Jazzy all read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
import warnings

import cv2
import numpy as np
import yaml

from seg_perception.core.image_codec import ImageRejected, decode_compressed, decode_raw

IMAGE_TOPIC = '/camera/image_raw'
COMPRESSED_TOPIC = '/camera/image_raw/compressed'
LABELS_TOPIC = '/camera/labels_gt'
INFO_TOPIC = '/camera/camera_info'
FRAME_ID = 'camera'
STORAGES = ('sqlite3', 'mcap')
SEQUENCE_GAP_NS = 1_000_000_000
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')

IMAGE = 'sensor_msgs/msg/Image'
COMPRESSED = 'sensor_msgs/msg/CompressedImage'
CAMERA_INFO = 'sensor_msgs/msg/CameraInfo'


class BagError(ValueError):
    """A bag or an input folder that cannot be used, with the reason."""


def typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)  # message definitions identical through Jazzy


def sequence_of(name: str) -> str:
    """CamVid-style sequence prefix: '0016E5_07959.png' -> '0016E5' (no '_': '')."""
    stem = Path(name).stem
    return stem.split('_', 1)[0] if '_' in stem else ''


@dataclass(frozen=True)
class FramePlan:
    """One frame to write: its files and its stamp (ns)."""

    image: Path
    label: Path | None
    stamp_ns: int
    sequence: str


def plan_frames(images: Path, labels: Path | None = None, *, rate: float = 10.0,
                limit: int | None = None, start_ns: int = 1_000_000_000) -> list[FramePlan]:
    """Sorted image files of `images` (with the same-named file of `labels`) and their stamps.

    Raises:
        BagError: no images, a missing label file, or a rate <= 0.
    """
    if rate <= 0:
        raise BagError(f'rate must be > 0 Hz, got {rate}')
    if not images.is_dir():
        raise BagError(f'image folder {images} does not exist')
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BagError(f'no images ({", ".join(IMAGE_SUFFIXES)}) in {images}')
    if labels is not None and not labels.is_dir():
        raise BagError(f'label folder {labels} does not exist')
    files = files[:limit] if limit else files
    period = round(1e9 / rate)
    plans, stamp, previous = [], start_ns, None
    for path in files:
        sequence = sequence_of(path.name)
        if previous is not None:
            stamp += period + (SEQUENCE_GAP_NS if sequence != previous else 0)
        previous = sequence
        label = None
        if labels is not None:
            label = labels / path.name
            if not label.is_file():
                raise BagError(f'no label {label} for image {path}')
        plans.append(FramePlan(path, label, stamp, sequence))
    return plans


def _header(ts, stamp_ns: int, frame_id: str = FRAME_ID):
    types = ts.types
    stamp = types['builtin_interfaces/msg/Time'](sec=stamp_ns // 1_000_000_000,
                                                 nanosec=stamp_ns % 1_000_000_000)
    return types['std_msgs/msg/Header'](stamp=stamp, frame_id=frame_id)


def image_message(ts, array: np.ndarray, encoding: str, stamp_ns: int):
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    return ts.types[IMAGE](header=_header(ts, stamp_ns), height=height, width=width,
                           encoding=encoding, is_bigendian=0,
                           step=width * (array.shape[2] if array.ndim == 3 else 1),
                           data=array.reshape(-1).view(np.uint8))


def camera_info_message(ts, stamp_ns: int, width: int, height: int, fx: float, fy: float,
                        cx: float, cy: float):
    k = np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], np.float64)
    p = np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], np.float64)
    roi = ts.types['sensor_msgs/msg/RegionOfInterest'](x_offset=0, y_offset=0, height=0,
                                                        width=0, do_rectify=False)
    return ts.types[CAMERA_INFO](
        header=_header(ts, stamp_ns), height=height, width=width, distortion_model='plumb_bob',
        d=np.zeros(5), k=k, r=np.eye(3).reshape(-1), p=p, binning_x=0, binning_y=0, roi=roi)


def write_bag(plans: list[FramePlan], out: Path, *, storage: str = 'sqlite3',
              compressed: bool = False, camera_info: dict | None = None, humble: bool = False,
              jpeg_quality: int = 95, progress: bool = False) -> dict:
    """Writes the planned frames to a new rosbag2 folder `out`; returns a summary.

    Args:
        plans: From plan_frames.
        out: Bag folder to create (must not exist).
        storage: 'sqlite3' or 'mcap'.
        compressed: Images as CompressedImage (JPEG) on COMPRESSED_TOPIC instead of Image.
        camera_info: {'fx', 'fy', 'cx', 'cy'} for a CameraInfo per frame, or None.
        humble: Rewrite metadata.yaml in the format Humble reads (see the module doc).
        jpeg_quality: JPEG quality of compressed images.
        progress: Show a progress bar.
    """
    from rosbags.rosbag2 import StoragePlugin, Writer
    from tqdm import tqdm

    if storage not in STORAGES:
        raise BagError(f'storage must be one of {", ".join(STORAGES)}, got {storage!r}')
    if out.exists():
        raise BagError(f'{out} exists already; remove it or choose another --out')
    ts = typestore()
    plugin = StoragePlugin.SQLITE3 if storage == 'sqlite3' else StoragePlugin.MCAP
    counts = {'images': 0, 'labels': 0, 'camera_info': 0}
    with Writer(out, version=8, storage_plugin=plugin) as writer:
        image_conn = writer.add_connection(COMPRESSED_TOPIC if compressed else IMAGE_TOPIC,
                                           COMPRESSED if compressed else IMAGE, typestore=ts)
        label_conn = (writer.add_connection(LABELS_TOPIC, IMAGE, typestore=ts)
                      if any(p.label for p in plans) else None)
        info_conn = (writer.add_connection(INFO_TOPIC, CAMERA_INFO, typestore=ts)
                     if camera_info else None)
        for plan in tqdm(plans, desc=f'writing {out.name}', unit='frame', disable=not progress):
            bgr = cv2.imread(str(plan.image), cv2.IMREAD_COLOR)
            if bgr is None:
                raise BagError(f'{plan.image} is not a readable image')
            if compressed:
                ok, buf = cv2.imencode('.jpg', bgr, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
                msg = ts.types[COMPRESSED](header=_header(ts, plan.stamp_ns),
                                           format='rgb8; jpeg compressed bgr8',
                                           data=buf.reshape(-1))
                writer.write(image_conn, plan.stamp_ns, ts.serialize_cdr(msg, COMPRESSED))
            else:
                msg = image_message(ts, bgr[:, :, ::-1], 'rgb8', plan.stamp_ns)
                writer.write(image_conn, plan.stamp_ns, ts.serialize_cdr(msg, IMAGE))
            counts['images'] += 1
            if label_conn is not None and plan.label is not None:
                label = cv2.imread(str(plan.label), cv2.IMREAD_UNCHANGED)
                if label is None or label.ndim != 2 or label.dtype != np.uint8:
                    raise BagError(f'{plan.label} is not a single-channel 8-bit label image')
                if label.shape != bgr.shape[:2]:
                    raise BagError(f'{plan.label} is {label.shape[1]}x{label.shape[0]}, its '
                                   f'image {bgr.shape[1]}x{bgr.shape[0]}')
                writer.write(label_conn, plan.stamp_ns,
                             ts.serialize_cdr(image_message(ts, label, 'mono8', plan.stamp_ns),
                                              IMAGE))
                counts['labels'] += 1
            if info_conn is not None:
                height, width = bgr.shape[:2]
                info = camera_info_message(ts, plan.stamp_ns, width, height, **camera_info)
                writer.write(info_conn, plan.stamp_ns, ts.serialize_cdr(info, CAMERA_INFO))
                counts['camera_info'] += 1
    if humble:
        make_humble_metadata(out / 'metadata.yaml')
    sequences = sorted({p.sequence for p in plans})
    return {'bag': str(out), 'storage': storage, 'frames': len(plans), **counts,
            'sequences': sequences,
            'duration_s': (plans[-1].stamp_ns - plans[0].stamp_ns) / 1e9 if plans else 0.0}


def make_humble_metadata(path: Path) -> None:
    """Rewrites a format-8/9 metadata.yaml as format 5 (readable from Humble on)."""
    data = yaml.safe_load(path.read_text())
    info = data['rosbag2_bagfile_information']
    info['version'] = 5
    for key in ('custom_data', 'ros_distro'):
        info.pop(key, None)
    for entry in info['topics_with_message_count']:
        meta = entry['topic_metadata']
        meta.pop('type_description_hash', None)
        qos = meta.get('offered_qos_profiles', '')
        if not isinstance(qos, str):  # format 9 writes a list; Humble wants a YAML string
            meta['offered_qos_profiles'] = yaml.safe_dump(qos) if qos else ''
    path.write_text(yaml.safe_dump(data, sort_keys=False))


@dataclass
class BagFrame:
    """One camera frame of a bag: the serialised image message (CDR, to replay it exactly),
    the decoded RGB image, the ground truth (or None) and the stamp."""

    stamp_ns: int
    topic: str
    msgtype: str
    raw: bytes
    rgb: np.ndarray
    label: np.ndarray | None = None
    index: int = 0


@dataclass
class BagContents:
    frames: list[BagFrame]
    image_topic: str
    warnings: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def read_bag(path: Path, *, image_topic: str | None = None, labels_topic: str = LABELS_TOPIC,
             limit: int | None = None) -> BagContents:
    """The camera frames of a bag in stamp order, each with its ground truth (by header stamp).

    Out-of-order stamps are sorted, duplicates keep the first message, gaps longer than three
    median frame periods and frames without ground truth are reported in `warnings` (and as
    Python warnings); images that do not decode are listed in `rejected` with the reason.

    Raises:
        BagError: not a rosbag2 folder, or no image topic.
    """
    from rosbags.rosbag2 import Reader

    if not (path / 'metadata.yaml').is_file():
        raise BagError(f'{path} is not a rosbag2 folder (no metadata.yaml)')
    ts = typestore()
    notes: list[str] = []
    rejected: list[str] = []
    with Reader(path) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
        if image_topic is None:
            image_topic = next((t for t in (IMAGE_TOPIC, COMPRESSED_TOPIC) if t in topics),
                               None) or next((t for t, m in topics.items()
                                              if m in (IMAGE, COMPRESSED) and t != labels_topic),
                                             None)
        if image_topic not in topics:
            raise BagError(f'{path} has no image topic {image_topic or ""} (topics: '
                           f'{", ".join(sorted(topics)) or "none"})')
        wanted = [c for c in reader.connections if c.topic in (image_topic, labels_topic)]
        images: dict[int, BagFrame] = {}
        labels: dict[int, np.ndarray] = {}
        order: list[int] = []
        for conn, _, raw in reader.messages(connections=wanted):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            stamp = stamp_of(msg)
            if conn.topic == labels_topic:
                labels.setdefault(stamp, _decode(msg, conn.msgtype, mono=True))
                continue
            if stamp in images:
                notes.append(f'duplicate stamp {stamp / 1e9:.3f} s on {image_topic}: '
                             'kept the first message')
                continue
            try:
                rgb = _decode(msg, conn.msgtype)
            except ImageRejected as err:
                rejected.append(f'{stamp / 1e9:.3f} s: {err}')
                continue
            images[stamp] = BagFrame(stamp, conn.topic, conn.msgtype, bytes(raw), rgb)
            order.append(stamp)
    if any(b < a for a, b in zip(order, order[1:], strict=False)):
        notes.append(f'{image_topic}: stamps out of order in the bag; frames sorted by stamp')
    stamps = sorted(images)
    if limit:
        stamps = stamps[:limit]
    if len(stamps) > 2:
        periods = np.diff(stamps)
        median = float(np.median(periods))
        for i in np.flatnonzero(periods > 3 * median):
            notes.append(f'gap of {periods[i] / 1e9:.2f} s after {stamps[i] / 1e9:.3f} s '
                         f'(median frame period {median / 1e9:.3f} s)')
    frames = []
    missing = 0
    for index, stamp in enumerate(stamps):
        frame = images[stamp]
        frame.index = index
        frame.label = labels.get(stamp)
        if frame.label is None:
            missing += 1
        elif frame.label.shape != frame.rgb.shape[:2]:
            raise BagError(f'ground truth at {stamp / 1e9:.3f} s is '
                           f'{frame.label.shape[1]}x{frame.label.shape[0]}, the image '
                           f'{frame.rgb.shape[1]}x{frame.rgb.shape[0]}')
        frames.append(frame)
    if missing and labels:
        notes.append(f'{missing} of {len(frames)} frames have no ground truth on '
                     f'{labels_topic}; they are played but not scored')
    for note in notes:
        warnings.warn(f'{path.name}: {note}', stacklevel=2)
    return BagContents(frames, image_topic, notes, rejected)


def _decode(msg, msgtype: str, mono: bool = False) -> np.ndarray:
    if mono:
        if msgtype != IMAGE or msg.encoding not in ('mono8', '8UC1'):
            raise BagError(f'ground truth must be a mono8 Image, got {msgtype} '
                           f'{getattr(msg, "encoding", "")!r}')
        rows = np.frombuffer(msg.data, np.uint8)
        if msg.step < msg.width or rows.size < msg.step * msg.height:
            raise BagError(f'ground truth {msg.width}x{msg.height} with step {msg.step} has '
                           f'only {rows.size} bytes')
        return rows[:msg.step * msg.height].reshape(msg.height, msg.step)[:, :msg.width].copy()
    if msgtype == COMPRESSED:
        decoded = decode_compressed(msg.format, msg.data)
    else:
        decoded = decode_raw(msg.height, msg.width, msg.encoding, msg.step, msg.data)
    return np.ascontiguousarray(decoded.rgb())


def write_messages(out: Path, messages: Iterable[tuple[str, str, int, bytes]], *,
                   storage: str = 'sqlite3') -> int:
    """Writes (topic, msgtype, timestamp ns, CDR bytes) to a new bag; returns the count."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    ts = typestore()
    plugin = StoragePlugin.SQLITE3 if storage == 'sqlite3' else StoragePlugin.MCAP
    conns = {}
    count = 0
    with Writer(out, version=8, storage_plugin=plugin) as writer:
        for topic, msgtype, stamp, raw in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=ts)
            writer.write(conns[topic], stamp, raw)
            count += 1
    return count


def iter_messages(path: Path) -> Iterator[tuple[str, int, object]]:
    """(topic, bag timestamp, deserialised message) of every message (tests, tools)."""
    from rosbags.rosbag2 import Reader

    ts = typestore()
    with Reader(path) as reader:
        for conn, stamp, raw in reader.messages():
            yield conn.topic, stamp, ts.deserialize_cdr(raw, conn.msgtype)
