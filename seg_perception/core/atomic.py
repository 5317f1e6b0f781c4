"""Files that readers see whole or not at all: checkpoints, sidecars, engine caches."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
import tempfile
from typing import BinaryIO, Callable


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Writes `path` through `write(file)` so readers see the old file or the whole new one.

    A temp file in the same directory (so os.replace is a rename on one file system) is
    fsynced and renamed over `path`, then the directory is fsynced so that the rename
    survives a power cut. If `write` raises, or the process is killed, `path` keeps its old
    content; a kill leaves at most a `.<name>.*.tmp` file beside it, which nothing reads.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
