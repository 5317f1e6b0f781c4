"""Environment for ROS 2 processes that exchange camera images on one machine.

The shipped Fast DDS profile (SHM + loopback UDP), localhost-only discovery, a domain id and
a log folder: what the tests, the demo and the benchmarks start nodes with.
"""

from __future__ import annotations

import os
from pathlib import Path

from seg_perception.core.paths import config_dir

PROFILE_NAME = 'fastdds_localhost_shm.xml'


def profile_path() -> Path:
    return config_dir() / PROFILE_NAME


def ros_environment(domain_id: int, log_dir: Path | str,
                    base: dict[str, str] | None = None) -> dict[str, str]:
    """Returns `base` (default: os.environ) with the variables set for local image traffic."""
    env = dict(os.environ if base is None else base)
    profile = str(profile_path())
    env.update({
        'FASTDDS_DEFAULT_PROFILES_FILE': profile,
        'FASTRTPS_DEFAULT_PROFILES_FILE': profile,  # Humble's Fast DDS 2.6 reads this name
        'RMW_IMPLEMENTATION': 'rmw_fastrtps_cpp',
        'ROS_AUTOMATIC_DISCOVERY_RANGE': 'LOCALHOST',
        'ROS_DOMAIN_ID': str(domain_id),
        'ROS_LOG_DIR': str(log_dir),
        'PYTHONUNBUFFERED': '1',
    })
    return env


def apply_ros_environment(domain_id: int, log_dir: Path | str) -> None:
    """Sets the variables in this process; call before rclpy.init()."""
    Path(log_dir).mkdir(parents=True, exist_ok=True)
    os.environ.update(ros_environment(domain_id, log_dir, base={}))
