"""Bird's-eye occupancy grid of the drivable area: image mask -> ground-plane grid.

Conventions (all lengths in metres, angles in radians):

* Ground frame = the grid's frame (e.g. `base_footprint`): x forward, y left, z up; the
  ground is the plane z = 0.
* Camera optical frame: z forward (optical axis), x right, y down.
* Image pixels: u = column, v = row, OpenCV style: pixel (row i, column j) is centred on
  (u, v) = (j, i) and covers [j - 0.5, j + 0.5) x [i - 0.5, i + 0.5).
* Homography H (3x3, row-major): **ground -> image**, [u w, v w, w] = H [x, y, 1], for an
  image of the reference size (`image_width` x `image_height`); other image sizes are
  scaled from it. H is defined up to scale; its sign is fixed so that H[2, 0] > 0, i.e.
  w > 0 for ground points in front of the camera: the camera faces +x (|pitch| < 90 deg).
  For a pinhole camera H = K [r1 r2 t] (see `camera_homography`).
* Grid: the nav_msgs/OccupancyGrid layout. Array shape (rows, cols); the row is the y index
  and the column the x index. Cell (r, c) covers x in [x_min + c res, x_min + (c + 1) res)
  and y in [-y_half_width + r res, -y_half_width + (r + 1) res); the grid origin (corner of
  cell (0, 0)) is (x_min, -y_half_width) with no rotation. Flattened row-major, the array is
  OccupancyGrid.data.
* Values: 0 = free (the cell centre's pixel is drivable), 100 = occupied (ground seen, not
  drivable), -1 = unknown (behind the camera, i.e. its ray would leave the image above the
  horizon, or projecting outside the image).
"""

from __future__ import annotations

from dataclasses import dataclass
import math

import numpy as np

FREE, OCCUPIED, UNKNOWN = 0, 100, -1
MAX_CELLS = 4_000_000  # a typo in resolution or extent must not allocate gigabytes


def camera_homography(*, fx: float, fy: float, cx: float, cy: float, height: float,
                      pitch: float, x: float = 0.0, y: float = 0.0) -> np.ndarray:
    """Ground -> image homography of a pinhole camera facing +x, without roll or yaw.

    Args:
        fx, fy, cx, cy: Intrinsics in pixels, for the reference image size.
        height: Height of the optical centre above the ground, m.
        pitch: Downward tilt of the optical axis, rad (positive = looking down).
        x, y: The ground point under the optical centre, in the grid frame, m.

    Returns:
        (3, 3) float64 H with [u w, v w, w] = H [x, y, 1] and w = depth along the optical axis.
    """
    if not (fx > 0 and fy > 0):
        raise ValueError(f'camera focal lengths must be > 0 pixels, got fx={fx} fy={fy}: '
                         'set the camera intrinsics (or give the homography)')
    if not height > 0:
        raise ValueError(f'camera height above the ground must be > 0 m, got {height}')
    if not abs(pitch) < math.pi / 2:
        raise ValueError(f'camera pitch must be within (-pi/2, pi/2) rad, got {pitch}')
    if not all(math.isfinite(v) for v in (cx, cy, x, y)):
        raise ValueError(f'camera cx, cy, x, y must be finite, got {cx}, {cy}, {x}, {y}')
    s, c = math.sin(pitch), math.cos(pitch)
    # Camera axes in ground coordinates: x_c = (0, -1, 0), y_c = (-s, 0, -c),
    # z_c = (c, 0, -s). A ground point relative to the optical centre is
    # (X - x, Y - y, -height); its camera coordinates, as a matrix acting on (X, Y, 1):
    extrinsic = np.array([[0.0, -1.0, y],
                          [-s, 0.0, s * x + c * height],
                          [c, 0.0, -c * x + s * height]])
    intrinsic = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    return intrinsic @ extrinsic


@dataclass(frozen=True)
class GroundGridConfig:
    """Where the grid lies and how it maps into the image.

    Attributes:
        homography: Ground -> image H, 9 values row-major, for the reference image size
            (module docstring).
        resolution: Cell side, m.
        x_min, x_max: Forward extent in the grid frame, m. The last column may reach up to one
            cell beyond x_max when the extent is not a whole number of cells.
        y_half_width: Lateral extent: y in [-y_half_width, y_half_width], m.
        image_width, image_height: Image size H is given for; 0, 0 = the size of the masks.
    """

    homography: tuple[float, ...]
    resolution: float = 0.1
    x_min: float = 0.0
    x_max: float = 20.0
    y_half_width: float = 10.0
    image_width: int = 0
    image_height: int = 0

    def __post_init__(self):
        values = tuple(np.asarray(self.homography, dtype=float).ravel().tolist())
        object.__setattr__(self, 'homography', values)
        if len(values) != 9:
            raise ValueError(f'homography must have 9 values (3x3 row-major), got {len(values)}')
        if not all(math.isfinite(v) for v in values):
            raise ValueError('homography values must be finite')
        matrix = np.array(values).reshape(3, 3)
        if abs(np.linalg.det(matrix)) <= 1e-12 * np.linalg.norm(matrix) ** 3:
            raise ValueError('homography is singular (a camera seeing the ground has an '
                             'invertible one)')
        if abs(matrix[2, 0]) <= 1e-12 * np.linalg.norm(matrix[2]):
            raise ValueError('homography H[2, 0] must not be 0: depth must grow along +x '
                             '(the camera faces forward, |pitch| < 90 deg)')
        if not (math.isfinite(self.resolution) and self.resolution > 0):
            raise ValueError(f'resolution must be > 0 m, got {self.resolution}')
        if not (math.isfinite(self.x_min) and math.isfinite(self.x_max)
                and self.x_max > self.x_min):
            raise ValueError(f'x_max must be greater than x_min, got x_min={self.x_min} '
                             f'x_max={self.x_max}')
        if not (math.isfinite(self.y_half_width) and self.y_half_width > 0):
            raise ValueError(f'y_half_width must be > 0 m, got {self.y_half_width}')
        if (self.image_width > 0) != (self.image_height > 0) or min(
                self.image_width, self.image_height) < 0:
            raise ValueError('image_width and image_height must both be > 0 (the size the '
                             'homography is for) or both 0 (the size of the masks), got '
                             f'{self.image_width} x {self.image_height}')
        rows, cols = self.shape
        if rows * cols > MAX_CELLS:
            raise ValueError(f'grid of {rows} x {cols} cells exceeds {MAX_CELLS}: increase '
                             'resolution or reduce the extent')

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) = (cells along y, cells along x)."""
        # The small tolerance keeps (20 - 0) / 0.1 at 200 cells, not 201.
        cols = math.ceil((self.x_max - self.x_min) / self.resolution - 1e-9)
        rows = math.ceil(2 * self.y_half_width / self.resolution - 1e-9)
        return rows, cols

    @property
    def origin(self) -> tuple[float, float]:
        """Ground (x, y) of the outer corner of cell (0, 0)."""
        return self.x_min, -self.y_half_width

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of every cell centre, each (rows, cols) float64."""
        rows, cols = self.shape
        xs = self.x_min + (np.arange(cols) + 0.5) * self.resolution
        ys = -self.y_half_width + (np.arange(rows) + 0.5) * self.resolution
        return np.meshgrid(xs, ys)

    def homography_for(self, height: int, width: int) -> np.ndarray:
        """H for an image of `height` x `width` pixels, sign-normalised (H[2, 0] > 0)."""
        matrix = np.array(self.homography).reshape(3, 3)
        if matrix[2, 0] < 0:
            matrix = -matrix
        if self.image_width > 0:
            # Pixel edges map onto pixel edges: u' + 0.5 = (u + 0.5) * sx.
            sx, sy = width / self.image_width, height / self.image_height
            scale = np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2],
                              [0.0, 0.0, 1.0]])
            matrix = scale @ matrix
        return matrix


class GroundGrid:
    """Maps drivable masks to occupancy grids through a fixed ground-plane homography.

    The cell -> pixel lookup is computed once per image size; a call is then one gather.
    """

    def __init__(self, config: GroundGridConfig):
        self.config = config
        self._size: tuple[int, int] | None = None
        self._cells = np.empty(0, np.intp)   # flat indices of cells that see the image
        self._pixels = np.empty(0, np.intp)  # flat index of the pixel each of them reads

    @property
    def shape(self) -> tuple[int, int]:
        return self.config.shape

    def lookup(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        """(cells, pixels): flat grid indices of the cells seen in a `height` x `width` image
        and the flat index of the (nearest) pixel each one reads."""
        if self._size != (height, width):
            self._cells, self._pixels = self._build_lookup(height, width)
            self._size = (height, width)
        return self._cells, self._pixels

    def _build_lookup(self, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = self.config.cell_centres()
        matrix = self.config.homography_for(height, width)
        ground = np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
        projected = matrix @ ground
        w = projected[2]
        # Behind the camera (w <= 0) the division would fold the point into the sky.
        ahead = w > 1e-9 * np.abs(matrix[2]).sum()
        with np.errstate(divide='ignore', invalid='ignore'):
            u = np.where(ahead, projected[0] / np.where(ahead, w, 1.0), -1.0)
            v = np.where(ahead, projected[1] / np.where(ahead, w, 1.0), -1.0)
        inside = ahead & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
        cells = np.flatnonzero(inside)
        cols = np.floor(u[cells] + 0.5).astype(np.intp)
        rows = np.floor(v[cells] + 0.5).astype(np.intp)
        return cells, rows * width + cols

    def __call__(self, mask: np.ndarray) -> np.ndarray:
        """(H, W) drivable mask (bool, or uint8 with nonzero = drivable) of any size ->
        (rows, cols) int8 grid of FREE / OCCUPIED / UNKNOWN."""
        if mask.ndim != 2 or mask.size == 0:
            raise ValueError(f'expected a non-empty (H, W) mask, got shape {mask.shape}')
        cells, pixels = self.lookup(*mask.shape)
        grid = np.full(self.shape, UNKNOWN, np.int8)
        grid.reshape(-1)[cells] = np.where(mask.reshape(-1)[pixels], FREE, OCCUPIED)
        return grid
