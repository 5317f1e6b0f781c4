"""~/drivable_grid over real Fast DDS: the shipped CamVid model on a CamVid val frame, the
grid checked against GroundGrid applied offline to the node's own ~/drivable output."""

from __future__ import annotations

import subprocess
import sys
import time

from nav_msgs.msg import OccupancyGrid
import numpy as np
import pytest
from rcl_interfaces.msg import Parameter
from rcl_interfaces.srv import SetParameters

from seg_perception.core.ground_grid import (
    FREE,
    UNKNOWN,
    GroundGrid,
    GroundGridConfig,
    camera_homography,
)
from seg_perception.core.paths import models_dir
from test.ros.test_parameters import call, value_msg
from test.ros.test_segmenter_node import by_stamp, image_msg, labels_of

# CamVid's camera, roughly: 960 x 720 originals (the val frames are 480 x 360, so the node
# scales the intrinsics by half), 1.2 m above the road, tilted down 0.02 rad.
CAMERA = dict(fx=700.0, fy=700.0, cx=480.0, cy=360.0, height=1.2, pitch=0.02)
CAMERA_PARAMS = {'camera_image_width': 960, 'camera_image_height': 720,
                 **{f'camera_{k}': v for k, v in CAMERA.items()}}
# 24 m x 16 m at 0.2 m: 120 columns (x from -4 m, behind the camera) by 80 rows.
GRID_PARAMS = {'grid_frame': 'base_footprint', 'grid_resolution': 0.2, 'grid_x_min': -4.0,
               'grid_x_max': 20.0, 'grid_y_half_width': 8.0}


def offline_grid(resolution: float = 0.2, homography=None) -> GroundGrid:
    homography = camera_homography(**CAMERA) if homography is None else homography
    return GroundGrid(GroundGridConfig(
        tuple(np.ravel(homography)), resolution=resolution, x_min=-4.0, x_max=20.0,
        y_half_width=8.0, image_width=960, image_height=720))


def grid_array(msg: OccupancyGrid) -> np.ndarray:
    return np.frombuffer(msg.data, np.int8).reshape(msg.info.height, msg.info.width)


@pytest.fixture(scope='module')
def grid_node(start_node, ros_node):
    model = models_dir() / 'fcn_tiny_camvid.onnx'
    if not model.exists():
        pytest.skip(f'shipped model {model} not found')
    proc, probe = start_node('/t_grid', {'model': str(model), 'qos_reliability': 'reliable',
                                         'grid_enabled': True, **CAMERA_PARAMS, **GRID_PARAMS},
                             outputs=('labels', 'drivable'), connect=False)
    # FrameClient records Images; the grid gets its own subscription (closed with the probe).
    topic = f'{probe.prefix}/drivable_grid'
    probe.subs.append(ros_node.create_subscription(
        OccupancyGrid, topic, lambda msg: probe._record('drivable_grid', msg), 10))
    try:
        probe.wait_connected()
        deadline = time.monotonic() + 30.0
        while ros_node.count_publishers(topic) == 0:
            assert time.monotonic() < deadline, f'no publisher on {topic}'
            time.sleep(0.05)
        time.sleep(0.3)  # let the node match our subscription too
    except AssertionError as err:
        raise AssertionError(f'{err}\nnode output:\n{proc.output()}') from err

    def set_param(name, value):
        req = SetParameters.Request(parameters=[Parameter(name=name, value=value_msg(value))])
        return call(ros_node, SetParameters, f'{proc.fqn}/set_parameters', req).results[0]

    return proc, probe, set_param


def run_frame(probe, rgb: np.ndarray, stamp: int) -> tuple[OccupancyGrid, np.ndarray]:
    probe.image_pub.publish(image_msg(rgb, stamp))
    probe.wait_for(lambda p: by_stamp(p, 'drivable_grid', stamp) and by_stamp(p, 'drivable',
                                                                             stamp),
                   what=f'grid and drivable of frame {stamp}')
    return (by_stamp(probe, 'drivable_grid', stamp)[0],
            labels_of(by_stamp(probe, 'drivable', stamp)[0]))


def test_grid_is_the_drivable_mask_on_the_ground(grid_node, val_frames):
    _, probe, _ = grid_node
    rgb = val_frames[0][1]
    msg, drivable = run_frame(probe, rgb, 7000)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (7000, 123_456_789)
    assert msg.header.frame_id == 'base_footprint'
    info = msg.info
    assert info.resolution == pytest.approx(0.2)
    assert (info.width, info.height) == (120, 80)
    origin = info.origin
    assert (origin.position.x, origin.position.y, origin.position.z) == (-4.0, -8.0, 0.0)
    assert (origin.orientation.x, origin.orientation.y, origin.orientation.z,
            origin.orientation.w) == (0.0, 0.0, 0.0, 1.0)
    assert len(msg.data) == 120 * 80

    grid = grid_array(msg)
    expected = offline_grid()(drivable)
    np.testing.assert_array_equal(grid, expected)

    xs = -4.0 + (np.arange(120) + 0.5) * 0.2  # cell centres along a row
    ys = -8.0 + (np.arange(80) + 0.5) * 0.2   # and along a column
    ahead = grid[np.abs(ys) < 1.0][:, (xs > 4.0) & (xs < 8.0)]
    assert (ahead == FREE).mean() > 0.75, 'the road ahead of the car should be free'
    # Behind the camera (x < 0) ground points would fold into the sky above the horizon;
    # closer than 2.23 m the road is under the image bottom (v ~ 360 + 840 / x at 960 x 720).
    assert (grid[:, xs < 2.2] == UNKNOWN).all()
    # Lateral field of view: at x = 3.1 m the 960-pixel-wide image spans |y| < 2.14 m.
    column = grid[:, np.argmin(np.abs(xs - 3.1))]
    assert (column[np.abs(ys) > 2.3] == UNKNOWN).all()
    assert (column[np.abs(ys) < 1.8] != UNKNOWN).all()
    assert {int(v) for v in np.unique(grid)} == {UNKNOWN, FREE, 100}


def test_grid_parameters_apply_at_run_time_and_bad_ones_are_rejected(grid_node, val_frames):
    _, probe, set_param = grid_node
    rgb = val_frames[1][1]
    before, drivable = run_frame(probe, rgb, 7100)

    # The same camera given as a matrix (cv2-style normalisation: H[2, 2] = 1) gives the
    # same grid.
    homography = camera_homography(**CAMERA)
    homography = homography / homography[2, 2]
    assert set_param('grid_homography', [float(v) for v in homography.ravel()]).successful
    same, drivable_same = run_frame(probe, rgb, 7101)
    np.testing.assert_array_equal(drivable_same, drivable)
    np.testing.assert_array_equal(grid_array(same), grid_array(before))

    assert set_param('grid_resolution', 0.4).successful
    coarse, drivable = run_frame(probe, rgb, 7102)
    assert (coarse.info.width, coarse.info.height) == (60, 40)
    assert coarse.info.resolution == pytest.approx(0.4)
    np.testing.assert_array_equal(grid_array(coarse), offline_grid(0.4)(drivable))

    for name, value, reason in (
            ('grid_x_max', -10.0, 'drivable grid: x_max must be greater than x_min'),
            ('grid_homography', [1.0, 2.0, 3.0, 4.0], 'grid_homography must have 9 values'),
            ('grid_frame', '/odom', 'grid_frame must name a TF frame'),
            ('grid_enabled', False, 'grid_enabled is read on configure'),
            ('grid_resolution', 0.0, 'grid_resolution')):
        result = set_param(name, value)
        assert not result.successful and reason in result.reason, (name, result.reason)
    still, _ = run_frame(probe, rgb, 7103)
    assert (still.info.width, still.info.height) == (60, 40)

    assert set_param('grid_homography', [0.0] * 9).successful  # back to the intrinsics
    assert set_param('grid_resolution', 0.2).successful


def test_grid_without_camera_model_fails_to_start_naming_the_parameters():
    model = models_dir() / 'fcn_tiny_camvid.onnx'
    if not model.exists():
        pytest.skip(f'shipped model {model} not found')
    proc = subprocess.run(
        [sys.executable, '-m', 'seg_perception.ros.segmenter_node', '--ros-args',
         '-r', '__ns:=/t_grid_bad', '-p', f'model:={model}', '-p', 'grid_enabled:=true'],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert ('drivable grid: camera focal lengths must be > 0 pixels, got fx=0.0 fy=0.0'
            in proc.stdout + proc.stderr)
    assert 'grid_* and camera_* parameters' in proc.stdout + proc.stderr


def test_rviz_map_display_matches_the_grid_publisher():
    import yaml

    from seg_perception.launch_config import rviz_config

    config = yaml.safe_load(rviz_config().read_text())
    (grid,) = [d for d in config['Visualization Manager']['Displays']
               if d['Class'] == 'rviz_default_plugins/Map']
    assert grid['Topic']['Value'] == '/segmenter/drivable_grid'
    # The node publishes volatile: a transient-local subscriber would never match.
    assert grid['Topic']['Durability Policy'] == 'Volatile'
    assert config['Visualization Manager']['Global Options']['Fixed Frame'] == 'base_footprint'
