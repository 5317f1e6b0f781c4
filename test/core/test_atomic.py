"""atomic_write: readers see the old file or the whole new one, also after SIGKILL."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import pytest

from seg_perception.core.atomic import atomic_write


def test_atomic_write_creates_dirs_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / 'engines' / 'm.engine'
    atomic_write(path, lambda f: f.write(b'new engine'))
    assert path.read_bytes() == b'new engine'
    assert os.listdir(path.parent) == ['m.engine']


def test_new_file_gets_plain_open_permissions_not_mkstemps_0600(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / 'a.yaml', lambda f: f.write(b'x'))
        (tmp_path / 'plain').write_bytes(b'x')
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / 'a.yaml').stat().st_mode)
    assert mode == stat.S_IMODE((tmp_path / 'plain').stat().st_mode) == 0o640


def test_crash_mid_write_keeps_the_old_file(tmp_path):
    path = tmp_path / 'm.engine'
    path.write_bytes(b'old engine')

    def crash(f):
        f.write(b'half of a new en')
        raise KeyboardInterrupt  # BaseException: a Ctrl-C mid-build must not leave debris

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, crash)
    assert path.read_bytes() == b'old engine'
    assert os.listdir(tmp_path) == ['m.engine']


# A writer that takes ~0.5 s per file (100 chunks of 10 KB), rewriting the file forever.
WRITER = '''
import sys, time
from pathlib import Path
from seg_perception.core.atomic import atomic_write
path = Path(sys.argv[1])
def write(f, n):
    for _ in range(100):
        f.write(bytes([n % 256]) * 10_000)
        f.flush()
        time.sleep(0.005)
n = 1
while True:
    atomic_write(path, lambda f: write(f, n))
    n += 1
'''


@pytest.mark.parametrize('kill_after_s', [0.0, 0.3, 0.8])
def test_sigkill_at_any_point_leaves_a_whole_file(tmp_path, kill_after_s):
    path = tmp_path / 'state.bin'
    path.write_bytes(b'\x00' * 1_000_000)
    proc = subprocess.Popen([sys.executable, '-c', WRITER, str(path)])
    try:
        deadline = time.monotonic() + 30
        while not any(p.suffix == '.tmp' for p in tmp_path.iterdir()):  # first write under way
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.005)
        time.sleep(kill_after_s)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    data = path.read_bytes()
    assert len(data) == 1_000_000 and data == bytes([data[0]]) * 1_000_000
    # A temp file may be left behind by the kill; it never has the final name.
    assert all(p.name == 'state.bin' or p.name.startswith('.state.bin.') and
               p.name.endswith('.tmp') for p in tmp_path.iterdir())
