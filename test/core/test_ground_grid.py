"""Ground grid against hand-computed projections.

The reference camera: 100 x 80 image, fx = fy = 100, (cx, cy) = (50, 40), 1 m above the
ground, level (pitch 0). A ground point (x, y) then lands on
    u = 50 - 100 y / x,    v = 40 + 100 / x
(depth = x), so the image bottom (v = 79.5) is at x = 2.53 m, the horizon is v = 40 and at
x metres the image spans |y| <= x / 2.
"""

import math

import cv2
import numpy as np
import pytest

from seg_perception.core.ground_grid import (
    FREE,
    OCCUPIED,
    UNKNOWN,
    GroundGrid,
    GroundGridConfig,
    camera_homography,
)

CAMERA = dict(fx=100.0, fy=100.0, cx=50.0, cy=40.0, height=1.0, pitch=0.0)
EXTENT = dict(resolution=0.5, x_min=-12.0, x_max=24.0, y_half_width=6.0)


def grid_for(homography, **kw) -> GroundGrid:
    return GroundGrid(GroundGridConfig(tuple(np.ravel(homography)), **{**EXTENT, **kw}))


def cell(x: float, y: float, res: float = 0.5, x_min: float = -12.0,
         half: float = 6.0) -> tuple[int, int]:
    """(row, col) of the cell holding ground point (x, y)."""
    return int(math.floor((y + half) / res)), int(math.floor((x - x_min) / res))


def road_mask() -> np.ndarray:
    """Drivable: rows >= 50 (x <= 10 m straight ahead), columns 30..69."""
    mask = np.zeros((80, 100), np.uint8)
    mask[50:, 30:70] = 255
    return mask


def test_homography_matches_the_projection_by_hand():
    h = camera_homography(**CAMERA)
    for x, y in ((4.0, 0.0), (5.0, 1.0), (20.0, -2.0)):
        u, v, w = h @ (x, y, 1.0)
        assert w == pytest.approx(x)  # depth of a level camera = distance ahead
        assert (u / w, v / w) == pytest.approx((50 - 100 * y / x, 40 + 100 / x))
    # Pitched down by atan(1/4) from 1 m above x = 1: the optical axis meets the ground at
    # x = 1 + 4 = 5, which lands on the principal point; the horizon is cy - fy tan(pitch).
    pitched = camera_homography(**{**CAMERA, 'pitch': math.atan(0.25)}, x=1.0)
    u, v, w = pitched @ (5.0, 0.0, 1.0)
    assert (u / w, v / w) == pytest.approx((50.0, 40.0))
    assert w == pytest.approx(math.hypot(4.0, 1.0))
    u, v, w = pitched @ (1e7, 0.0, 1.0)
    assert v / w == pytest.approx(40.0 - 100.0 * 0.25, abs=1e-4)
    u, v, w = pitched @ (5.0, 0.5, 1.0)  # y left = u smaller
    assert u / w < 50.0


def test_cells_are_free_occupied_or_unknown_as_computed_by_hand():
    grid = grid_for(camera_homography(**CAMERA))(road_mask())
    assert grid.shape == (24, 72) and grid.dtype == np.int8
    expected = {
        (4.25, 0.25): FREE,        # u 44.1, v 63.5: on the road
        (4.25, 1.25): OCCUPIED,    # u 20.6: ground left of the road
        (20.25, 0.25): OCCUPIED,   # v 44.9: ground beyond the road's far end
        (4.25, 2.25): UNKNOWN,     # u -2.9: left of the image (lateral field of view)
        (4.25, -2.25): UNKNOWN,    # u 102.9: right of the image
        (2.25, 0.25): UNKNOWN,     # v 84.4: under the image bottom, too close to see
        (-10.25, 0.25): UNKNOWN,   # behind the camera
    }
    for (x, y), value in expected.items():
        assert grid[cell(x, y)] == value, (x, y)


def test_rows_are_y_to_the_left_and_columns_x_forward():
    mask = np.zeros((80, 100), np.uint8)
    mask[:, :50] = 255  # left half of the image drivable
    grid = grid_for(camera_homography(**CAMERA))(mask)
    # (4.25, +0.25) lands on u 44.1 (left), (4.25, -0.25) on u 55.9 (right).
    assert grid[cell(4.25, 0.25)] == FREE and grid[cell(4.25, -0.25)] == OCCUPIED
    assert cell(4.25, 0.25) == (12, 32) and cell(4.25, -0.25) == (11, 32)
    # Lateral field of view: at x = 4.25 the image spans y in (-2.10, 2.15), so cell centres
    # y = -1.75 ... 1.75 are seen and y = +-2.25 are not.
    seen_rows = np.flatnonzero(grid[:, cell(4.25, 0)[1]] != UNKNOWN)
    assert (seen_rows.min(), seen_rows.max()) == (cell(0, -1.75)[0], cell(0, 1.75)[0])


def test_cells_behind_the_camera_stay_unknown_even_when_the_sky_is_drivable():
    # Behind a level camera a ground point divides into the upper half of the image
    # ((-10, 0) -> u 50, v 30): only the depth sign tells it apart from sky.
    everything = np.full((80, 100), 255, np.uint8)
    grid = grid_for(camera_homography(**CAMERA))(everything)
    behind = grid[:, :cell(0.0, 0.0)[1]]
    assert (behind == UNKNOWN).all()
    assert grid[cell(4.25, 0.25)] == FREE and grid[cell(23.75, 5.75)] == FREE
    assert set(np.unique(grid)) == {UNKNOWN, FREE}


def test_grid_equals_a_cell_by_cell_projection_with_pitch_and_offset():
    h = camera_homography(fx=90.0, fy=95.0, cx=48.0, cy=35.0, height=1.3, pitch=0.15,
                          x=0.8, y=-0.2)
    rng = np.random.default_rng(0)
    mask = (rng.random((80, 100)) > 0.5).astype(np.uint8) * 255
    grid = grid_for(h)(mask)
    config = GroundGridConfig(tuple(h.ravel()), **EXTENT)
    xs, ys = config.cell_centres()
    expected = np.full(grid.shape, UNKNOWN, np.int8)
    for r in range(grid.shape[0]):
        for c in range(grid.shape[1]):
            u, v, w = h @ (xs[r, c], ys[r, c], 1.0)
            col, row = math.floor(u / w + 0.5), math.floor(v / w + 0.5)
            if w > 0 and 0 <= col < 100 and 0 <= row < 80:
                expected[r, c] = FREE if mask[row, col] else OCCUPIED
    np.testing.assert_array_equal(grid, expected)
    assert (grid == FREE).sum() > 50 and (grid == OCCUPIED).sum() > 50


def test_a_given_matrix_gives_the_same_grid_as_the_intrinsics():
    h = camera_homography(**CAMERA)
    # The matrix as someone would measure it: four ground marks and their pixels
    # (by hand with the formula above), solved by cv2 (normalised to H[2, 2] = 1).
    ground = np.float32([[4, 0], [5, 1], [10, -2], [20, 3]])
    pixels = np.float32([[50, 65], [30, 60], [70, 50], [35, 45]])
    measured, _ = cv2.findHomography(ground, pixels)
    mask = road_mask()
    expected = grid_for(h)(mask)
    np.testing.assert_array_equal(grid_for(measured)(mask), expected)
    # A homography is defined up to scale, sign included.
    np.testing.assert_array_equal(grid_for(-3.0 * h)(mask), expected)


def test_masks_of_other_sizes_scale_the_reference_homography():
    h = camera_homography(**CAMERA)
    small = road_mask()[::2, ::2]          # 50 x 40, same scene
    large = np.repeat(np.repeat(small, 2, 0), 2, 1)  # 100 x 80, pixels doubled
    reference = grid_for(h, image_width=100, image_height=80)
    np.testing.assert_array_equal(reference(small), reference(large))
    # Same as intrinsics written for the small image (pixel edges at -0.5 map onto each
    # other: cx' = (cx + 0.5) / 2 - 0.5).
    halved = camera_homography(fx=50.0, fy=50.0, cx=24.75, cy=19.75, height=1.0, pitch=0.0)
    np.testing.assert_array_equal(grid_for(halved)(small), reference(small))
    assert reference(small)[cell(4.25, 0.25)] == FREE
    # The lookup is rebuilt on a size change only.
    cells, _ = reference.lookup(40, 50)
    assert reference.lookup(40, 50)[0] is cells
    assert reference.lookup(80, 100)[0] is not cells


def test_bool_mask_and_int8_occupancy_values():
    grid = grid_for(camera_homography(**CAMERA))
    np.testing.assert_array_equal(grid(road_mask() > 0), grid(road_mask()))
    with pytest.raises(ValueError, match='expected a non-empty'):
        grid(np.zeros((80, 100, 3), np.uint8))


def test_extent_gives_grid_shape_and_origin():
    config = GroundGridConfig(tuple(camera_homography(**CAMERA).ravel()), resolution=0.1,
                              x_min=0.0, x_max=20.0, y_half_width=10.0)
    assert config.shape == (200, 200)  # 20 / 0.1 is 200 cells, not 201
    assert config.origin == (0.0, -10.0)
    xs, ys = config.cell_centres()
    assert (xs[0, 0], ys[0, 0]) == pytest.approx((0.05, -9.95))
    assert (xs[0, 1], ys[1, 0]) == pytest.approx((0.15, -9.85))


H = tuple(camera_homography(**CAMERA).ravel())


@pytest.mark.parametrize('make,reason', [
    (lambda: GroundGridConfig(H[:8]), 'homography must have 9 values'),
    (lambda: GroundGridConfig((0.0,) * 9), 'homography is singular'),
    (lambda: GroundGridConfig(H[:8] + (math.nan,)), 'must be finite'),
    (lambda: GroundGridConfig((1, 0, 0, 0, 1, 0, 0, 0, 1)), 'H[2, 0] must not be 0'),
    (lambda: GroundGridConfig(H, resolution=0.0), 'resolution must be > 0'),
    (lambda: GroundGridConfig(H, x_min=5.0, x_max=5.0), 'x_max must be greater than x_min'),
    (lambda: GroundGridConfig(H, y_half_width=-1.0), 'y_half_width must be > 0'),
    (lambda: GroundGridConfig(H, image_width=640), 'image_width and image_height'),
    (lambda: GroundGridConfig(H, resolution=0.001, x_max=100.0), 'exceeds'),
    (lambda: camera_homography(**{**CAMERA, 'fx': 0.0}), 'focal lengths must be > 0'),
    (lambda: camera_homography(**{**CAMERA, 'height': 0.0}), 'height above the ground'),
    (lambda: camera_homography(**{**CAMERA, 'pitch': 1.6}), 'pitch must be within'),
])
def test_bad_configs_raise_with_reasons(make, reason):
    with pytest.raises(ValueError, match=reason.replace('[', r'\[').replace(']', r'\]')):
        make()
