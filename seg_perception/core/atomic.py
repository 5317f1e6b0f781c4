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
    The new file gets the permissions a plain open() would give it (0666 less the umask),
    not mkstemp's 0600: a sidecar or engine written by one user is read by nodes run as
    another.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f'.{path.name}.', suffix='.tmp')
    try:
        os.fchmod(fd, 0o666 & ~_umask())
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


def _umask() -> int:
    """The process umask: from /proc on Linux (no side effect), else by setting it and
    setting it straight back (os.umask is the only portable way to read it)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path('/proc/self/status').read_text().splitlines():
            if line.startswith('Umask:'):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
