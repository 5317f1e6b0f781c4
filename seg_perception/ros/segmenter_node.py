"""The `segmenter` lifecycle node: camera images in, labels / colour / overlay / confidence /
drivable area (multi-class models) or a binary mask (2-class models) out, and optionally the
drivable area as a bird's-eye occupancy grid (`~/drivable_grid`, multi-class models).

Glue only: parameters -> SegmenterNodeConfig -> core objects; the numerics live in
seg_perception.core. Inference runs on a worker thread, off the subscription callback, on
the newest frame only: a frame that arrives while another waits replaces it and counts as
dropped, so a slow model never builds a queue.
"""

from __future__ import annotations

import array
from dataclasses import fields, replace
import sys
import threading
import time

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from nav_msgs.msg import OccupancyGrid
import numpy as np
from rcl_interfaces.msg import SetParametersResult
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from seg_perception.core.artifact import ModelLoadError
from seg_perception.core.backends import BackendUnavailable
from seg_perception.core.drivable import DrivableArea, DrivableConfig
from seg_perception.core.ground_grid import GroundGrid, GroundGridConfig
from seg_perception.core.image_codec import REJECTION_KINDS, ImageRejected
from seg_perception.core.outputs import OUTPUT_NAMES, render_outputs
from seg_perception.core.paths import resolve_model_path
from seg_perception.core.segmenter import Segmenter
from seg_perception.core.stats import FrameStats, LatestSlot
from seg_perception.ros.conversions import array_to_image_msg, image_msg_to_array
from seg_perception.ros.params import (
    GRID_PARAMETERS,
    LOAD_TIME,
    SegmenterNodeConfig,
    config_value,
    declare_parameters,
    ground_grid_config,
    read_config,
    validate,
)

_THROTTLE_S = 5.0
_CONFIG_FIELDS = frozenset(f.name for f in fields(SegmenterNodeConfig))


class SegmenterNode(LifecycleNode):
    """Lifecycle node: the model loads on configure, the input subscription opens on activate."""

    def __init__(self, node_name: str = 'segmenter', **kwargs):
        super().__init__(node_name, **kwargs)
        declare_parameters(self)
        self.config: SegmenterNodeConfig = read_config(self)
        self.startup_error: str | None = None
        self.stats = FrameStats(rejection_kinds=REJECTION_KINDS)
        self._segmenter: Segmenter | None = None
        self._drivable: DrivableArea | None = None
        self._ground_grid: GroundGrid | None = None
        self._drivable_lock = threading.Lock()
        self._model_path = ''
        self._slot = LatestSlot()
        self._worker: threading.Thread | None = None
        self._stop = threading.Event()
        self._subscription = None
        self._pubs: dict = {}
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._diag_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._diag_timer = self.create_timer(self.config.diagnostics_period,
                                             self._publish_diagnostics)
        if self.config.autostart:
            if self.trigger_configure() != TransitionCallbackReturn.SUCCESS:
                self.startup_error = self.startup_error or 'configure failed'
            elif self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
                self.startup_error = 'activate failed'

    # ----------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.config = read_config(self)
        path = resolve_model_path(self.config.model)
        try:
            segmenter = Segmenter.from_path(path, backend=self.config.backend,
                                            threads=self.config.threads,
                                            spinning=self.config.intra_op_spinning,
                                            threshold=self.config.binary_threshold,
                                            precision=self.config.precision)
            drivable = None if segmenter.is_binary else self._make_drivable(segmenter)
            ground_grid = (GroundGrid(ground_grid_config(self.config))
                           if drivable is not None and self.config.grid_enabled else None)
        except (ModelLoadError, BackendUnavailable, KeyError, ValueError) as err:
            self.startup_error = str(err)
            self.get_logger().error(f'configure failed: {err}')
            return TransitionCallbackReturn.FAILURE
        self._segmenter, self._drivable, self._model_path = segmenter, drivable, str(path)
        self._ground_grid = ground_grid
        self.startup_error = None
        self._create_publishers(segmenter.is_binary)
        if self.config.grid_enabled and segmenter.is_binary:
            self.get_logger().warning('grid_enabled ignored: a 2-class model has no drivable '
                                      'area, so no ~/drivable_grid')
        for reason in getattr(segmenter.backend, 'skipped', ()):
            self.get_logger().info(f'backend auto: skipped {reason}')
        self.get_logger().info(
            f'loaded {path} ({segmenter.artifact.model}, {segmenter.artifact.class_set}, '
            f'input {segmenter.artifact.input_size[0]}x{segmenter.artifact.input_size[1]}) on '
            f'{segmenter.backend.describe()}')
        return super().on_configure(state)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = super().on_activate(state)
        self._stop.clear()
        self._worker = threading.Thread(target=self._work, name='segmenter-worker',
                                        daemon=True)
        self._worker.start()
        compressed = self.config.input_transport == 'compressed'
        self._subscription = self.create_subscription(
            CompressedImage if compressed else Image,
            'image/compressed' if compressed else 'image',
            self._on_image, self._input_qos())
        self.get_logger().info(f'listening on {self._subscription.topic_name}')
        return result

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop_input()
        self._release()
        return super().on_shutdown(state)

    def _stop_input(self) -> None:
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        self._stop.set()
        if self._worker is not None:
            self._worker.join()
            self._worker = None
        self._slot.clear()

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        self._segmenter = self._drivable = self._ground_grid = None

    def _create_publishers(self, binary: bool) -> None:
        names = [n for n in OUTPUT_NAMES if n != ('drivable' if binary else 'mask')]
        self._pubs = {name: self.create_lifecycle_publisher(Image, f'~/{name}', 5)
                      for name in names}
        if self._ground_grid is not None:
            self._pubs['drivable_grid'] = self.create_lifecycle_publisher(
                OccupancyGrid, '~/drivable_grid', 5)

    def _make_drivable(self, segmenter: Segmenter,
                       cfg: SegmenterNodeConfig | None = None) -> DrivableArea:
        cfg = cfg or self.config
        ids = tuple(segmenter.class_set.index(name) for name in cfg.drivable_classes)
        return DrivableArea(DrivableConfig(
            class_ids=ids, close_kernel=cfg.drivable_close_kernel,
            open_kernel=cfg.drivable_open_kernel, bottom_band=cfg.drivable_bottom_band,
            smoothing_frames=cfg.drivable_smoothing_frames))

    def _input_qos(self) -> QoSProfile:
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=self.config.qos_depth,
            reliability=ReliabilityPolicy.BEST_EFFORT
            if self.config.qos_reliability == 'best_effort' else ReliabilityPolicy.RELIABLE,
            durability=qos_profile_sensor_data.durability)
        return qos

    # ---------------------------------------------------------------- parameters
    def _on_set_parameters(self, params) -> SetParametersResult:
        """Validates a parameter update and applies the runtime-tunable ones at once.

        Ranges were already enforced by rclpy from the descriptors. On rejection nothing
        changes: rclpy keeps the old values and so does `self.config`.
        """
        segmenter = self._segmenter
        # Only our own parameters: rclpy's (use_sim_time) and a subclass's are not config.
        changes = {p.name: config_value(p.value) for p in params if p.name in _CONFIG_FIELDS}
        for name, value in changes.items():
            reason = validate(name, value)
            if reason is None and segmenter is not None and name in LOAD_TIME:
                reason = (f'{name} is read on configure: deactivate and clean up the node, '
                          'set it, then configure again')
            if reason is not None:
                return SetParametersResult(successful=False, reason=reason)
        config = replace(self.config, **changes)
        drivable = self._drivable
        if segmenter is not None and not segmenter.is_binary and any(
                name.startswith('drivable_') for name in changes):
            try:
                drivable = self._make_drivable(segmenter, config)
            except (KeyError, ValueError) as err:
                return SetParametersResult(successful=False, reason=str(err.args[0]))
        ground_grid = self._ground_grid
        if ground_grid is not None and GRID_PARAMETERS & changes.keys():
            try:
                ground_grid = GroundGrid(ground_grid_config(config))
            except ValueError as err:
                return SetParametersResult(successful=False, reason=str(err))
        with self._drivable_lock:
            self.config, self._drivable, self._ground_grid = config, drivable, ground_grid
        if segmenter is not None:
            segmenter.threshold = config.binary_threshold
        if 'diagnostics_period' in changes:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = self.create_timer(config.diagnostics_period,
                                                 self._publish_diagnostics)
        return SetParametersResult(successful=True)

    # -------------------------------------------------------------------- frames
    def _on_image(self, msg) -> None:
        replaced = self._slot.put((msg, time.monotonic()))
        self.stats.on_received(dropped_previous=replaced)

    def _work(self) -> None:
        while not self._stop.is_set():
            item = self._slot.take(timeout=0.1)
            if item is None:
                continue
            msg, received = item
            try:
                self._process(msg, received)
            except ImageRejected as err:
                self.stats.on_rejected(err.kind, err.reason)
                self.get_logger().warning(f'rejected frame: {err.reason}',
                                          throttle_duration_sec=_THROTTLE_S)
            except Exception as err:  # noqa: BLE001 - a bad frame must not kill the node
                self.stats.on_error(f'{type(err).__name__}: {err}')
                self.get_logger().error(f'inference failed: {type(err).__name__}: {err}',
                                        throttle_duration_sec=_THROTTLE_S)

    def _process(self, msg, received: float) -> None:
        started = time.monotonic()
        segmenter, pubs, cfg = self._segmenter, self._pubs, self.config
        if segmenter is None:
            return
        image = image_msg_to_array(msg)
        wanted = {name for name, pub in pubs.items() if pub.get_subscription_count() > 0}
        result = segmenter(image.pixels, bgr=image.bgr, confidence='confidence' in wanted)
        header = msg.header
        # Labels first, always: they are what downstream consumers wait for.
        pubs['labels'].publish(array_to_image_msg(result.labels, header))
        # The grid is made from the drivable mask (made once: it may smooth over frames).
        images = wanted - {'labels', 'drivable_grid'}
        grid_wanted = 'drivable_grid' in wanted
        with self._drivable_lock:
            outputs = render_outputs(result, image.rgb(),
                                     images | ({'drivable'} if grid_wanted else set()),
                                     segmenter.class_set, self._drivable, cfg.overlay_alpha)
            ground_grid, grid_frame = self._ground_grid, self.config.grid_frame
        for name, pixels in outputs.items():
            if name in images:
                pubs[name].publish(array_to_image_msg(pixels, header))
        if grid_wanted and ground_grid is not None and 'drivable' in outputs:
            pubs['drivable_grid'].publish(occupancy_grid_msg(
                ground_grid(outputs['drivable']), header, grid_frame, ground_grid.config))
        done = time.monotonic()
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        age_ms = (self.get_clock().now().nanoseconds - stamp_ns) / 1e6
        self.stats.on_processed(age_ms, (done - received) * 1e3, result.inference_ms,
                                (started - received) * 1e3)

    # --------------------------------------------------------------- diagnostics
    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        status = DiagnosticStatus()
        status.name = f'{self.get_fully_qualified_name()}: segmentation'
        status.hardware_id = self.get_fully_qualified_name()
        segmenter = self._segmenter
        backend = segmenter.backend.describe() if segmenter else {}
        snap['backend'] = backend.get('backend', 'none')
        snap['backend_detail'] = ', '.join(f'{k}={v}' for k, v in backend.items())
        snap['model'] = self._model_path or self.config.model
        snap['state'] = 'active' if self._subscription is not None else (
            'configured' if segmenter else 'unconfigured')
        if self.startup_error and segmenter is None:
            status.level, status.message = DiagnosticStatus.ERROR, self.startup_error
        elif snap['errors'] and snap['last_error']:
            status.level, status.message = DiagnosticStatus.WARN, 'inference errors'
        elif self._subscription is not None and snap['input_rate_hz'] == 0:
            status.level, status.message = DiagnosticStatus.WARN, 'no input images'
        else:
            status.level, status.message = DiagnosticStatus.OK, snap['state']
        status.values = [KeyValue(key=k, value=f'{v:.2f}' if isinstance(v, float) else str(v))
                         for k, v in snap.items()]
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        array.status = [status]
        self._diag_pub.publish(array)


def occupancy_grid_msg(grid: np.ndarray, header: Header, frame_id: str,
                       config: GroundGridConfig) -> OccupancyGrid:
    """(rows, cols) int8 grid -> OccupancyGrid in `frame_id`, stamped like the image."""
    msg = OccupancyGrid()
    msg.header.stamp = header.stamp
    msg.header.frame_id = frame_id
    msg.info.map_load_time = header.stamp
    msg.info.resolution = float(config.resolution)
    msg.info.height, msg.info.width = (int(n) for n in grid.shape)
    msg.info.origin.position.x, msg.info.origin.position.y = config.origin
    msg.info.origin.orientation.w = 1.0
    # int8[] takes an array.array('b') as is; built from bytes it is a single copy.
    msg.data = array.array('b', np.ascontiguousarray(grid, np.int8).tobytes())
    return msg


def main(args: list[str] | None = None, node_class: type[SegmenterNode] = SegmenterNode) -> int:
    """Entry point of `segmenter_node`; exits 1 when autostart cannot configure."""
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = node_class()
        if node.startup_error:
            node.get_logger().fatal(f'cannot start: {node.startup_error}')
            code = 1
        else:
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node._stop_input()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return code


if __name__ == '__main__':
    sys.exit(main(sys.argv))
