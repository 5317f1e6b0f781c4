"""Where the package's data files (config/, models/) live: source tree or installed share."""

from __future__ import annotations

import functools
from pathlib import Path

PACKAGE = 'seg_perception'
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=1)
def share_dir() -> Path:
    """Returns the folder holding `config/` and `models/`.

    A source checkout (or `pip install -e`) is used in place; otherwise the ament share
    directory that colcon installed.
    """
    if (_SOURCE_ROOT / 'config' / 'classes').is_dir():
        return _SOURCE_ROOT
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(PACKAGE))
    except Exception as err:  # ImportError or PackageNotFoundError
        raise FileNotFoundError(
            f'cannot find the {PACKAGE} data files: not a source checkout '
            f'({_SOURCE_ROOT}) and no ament share directory ({err})'
        ) from err


def config_dir() -> Path:
    return share_dir() / 'config'


def models_dir() -> Path:
    return share_dir() / 'models'


def resolve_model_path(model: str | Path) -> Path:
    """Resolves a `model` parameter: an existing path as given, else relative to `models/`."""
    path = Path(model).expanduser()
    if path.is_absolute() or path.exists():
        return path
    return models_dir() / path
