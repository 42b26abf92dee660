"""The lab's child processes (HAProxy, stand-in apps, the Kubernetes API server): started
by name, stopped by name, and all stopped when the lab stops, so `ciel lab down` leaves
nothing behind. Each writes its output to logs/<name>.log in the lab's folder."""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
import subprocess
import threading
from pathlib import Path


class Supervisor:
    def __init__(self, directory: Path) -> None:
        self.logs = directory / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.processes: dict[str, subprocess.Popen] = {}
        self.lock = threading.RLock()

    def start(self, name: str, argv: list[str], *, env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen:
        """Start `argv` as `name` (stopping a previous `name` first, at once)."""
        with self.lock:
            self.stop(name, timeout=0)
            log = open(self.logs / f"{name.replace('/', '_')}.log", "ab")
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       env={**os.environ, **(env or {})}, cwd=str(cwd) if cwd else None)
            log.close()
            self.processes[name] = process
            return process

    def running(self, name: str) -> bool:
        with self.lock:
            process = self.processes.get(name)
            return process is not None and process.poll() is None

    def get(self, name: str) -> subprocess.Popen | None:
        with self.lock:
            return self.processes.get(name)

    def stop(self, name: str, *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        """Send `sig`, wait up to `timeout` for the process to end on its own, then kill it."""
        with self.lock:
            process = self.processes.pop(name, None)
        if process is None:
            return
        if process.poll() is None:
            try:
                process.send_signal(sig)
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            except ProcessLookupError:
                pass

    def names(self, prefix: str = "") -> list[str]:
        with self.lock:
            return [name for name in self.processes if name.startswith(prefix)]

    def stop_all(self, timeout: float = 10.0) -> None:
        for name in self.names():
            self.stop(name, timeout=timeout)


def socket_dir(directory: Path, name: str) -> Path:
    """A folder for unix sockets that belong under `directory`: a unix socket path holds at
    most 107 bytes, which a lab folder under a deep temporary path already exceeds. It sits
    in the system's temporary folder, named after `directory`, private to its owner."""
    tag = hashlib.sha1(str(directory.resolve()).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / f"ciel-lab-{tag}" / name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(folder.parent, 0o700)
    return folder
