"""Runs `segmenter_node` in a child process with a given namespace and parameters."""

from __future__ import annotations

from pathlib import Path
import subprocess
import sys


class NodeProcess:
    """The node in a subprocess; its output goes to `log` (read it with `output()`)."""

    def __init__(self, namespace: str, params: dict[str, object], log: Path,
                 name: str = 'segmenter', env: dict[str, str] | None = None,
                 module: str = 'seg_perception.ros.segmenter_node',
                 ros_args: list[str] | None = None):
        self.namespace = namespace
        self.name = name
        self.fqn = f'{namespace.rstrip("/")}/{name}'
        args = [sys.executable, '-m', module, '--ros-args',
                '-r', f'__ns:={namespace}', '-r', f'__node:={name}']
        for key, value in params.items():
            if isinstance(value, list | tuple):
                value = '[' + ','.join(str(v) for v in value) + ']'
            args += ['-p', f'{key}:={value}']
        args += ros_args or []
        self.log = Path(log)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open('w')
        self.proc = subprocess.Popen(args, stdout=self._log_file, stderr=subprocess.STDOUT,
                                     env=env)

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text()

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then SIGKILL after `timeout` s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        return self.proc.returncode

    def __enter__(self) -> NodeProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
