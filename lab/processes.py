"""The lab's child processes (HAProxy, stand-in apps, the Kubernetes API server): started
by name, stopped by name, and all stopped when the lab stops, so `ciel lab down` leaves
nothing behind. Each writes its output to logs/<name>.log in the lab's folder."""

from __future__ import annotations

import os
import signal
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
