"""make_bag: an image folder (+ ground-truth labels) -> a rosbag2 for replay evaluation.

    make_bag --images DIR [--labels DIR] --out BAG [--storage sqlite3|mcap] [--rate HZ]
             [--compressed] [--limit N] [--camera-info FX,FY,CX,CY] [--humble]

Example (CamVid val with its annotations, 10 Hz):
    make_bag --images ../shared/datasets/camvid/val --labels ../shared/datasets/camvid/valannot \
             --out camvid_val_bag

Topics and stamps: see seg_perception/core/bagio.py. Play it with `ros2 bag play BAG`, or
score a model on it with `bag_eval --bag BAG --model MODEL --report DIR`.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import sys

from seg_perception.core.bagio import STORAGES, BagError, plan_frames, write_bag


def _camera_info(text: str) -> dict:
    try:
        fx, fy, cx, cy = (float(v) for v in text.split(','))
    except ValueError:
        raise argparse.ArgumentTypeError(f'expected FX,FY,CX,CY, got {text!r}') from None
    return {'fx': fx, 'fy': fy, 'cx': cx, 'cy': cy}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog='\n'.join(__doc__.splitlines()[2:]))
    parser.add_argument('--images', type=Path, required=True, help='folder of images')
    parser.add_argument('--labels', type=Path,
                        help='folder of same-named class-index PNGs (e.g. CamVid valannot)')
    parser.add_argument('--out', type=Path, required=True, help='bag folder to create')
    parser.add_argument('--storage', choices=STORAGES, default='sqlite3')
    parser.add_argument('--rate', type=float, default=10.0, help='frames per second (10)')
    parser.add_argument('--compressed', action='store_true',
                        help='JPEG CompressedImage on /camera/image_raw/compressed')
    parser.add_argument('--limit', type=int, help='first N images only')
    parser.add_argument('--camera-info', type=_camera_info, metavar='FX,FY,CX,CY',
                        help='also write /camera/camera_info with these intrinsics')
    parser.add_argument('--humble', action='store_true',
                        help='metadata.yaml in the format ROS 2 Humble reads (version 5)')
    parser.add_argument('--quiet', action='store_true', help='no progress bar')
    args = parser.parse_args(argv)
    try:
        plans = plan_frames(args.images, args.labels, rate=args.rate, limit=args.limit)
        summary = write_bag(plans, args.out, storage=args.storage, compressed=args.compressed,
                            camera_info=args.camera_info, humble=args.humble,
                            progress=not args.quiet)
    except BagError as err:
        print(f'make_bag: {err}', file=sys.stderr)
        return 2
    print(f'{summary["bag"]}: {summary["frames"]} frames ({summary["labels"]} with ground '
          f'truth), {len(summary["sequences"])} sequence(s), {summary["duration_s"]:.1f} s, '
          f'{summary["storage"]}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
