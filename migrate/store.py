"""The cutover's record on disk: one JSON file per environment, written atomically, and a
lock so two runs cannot interleave. A killed process releases its lock with its file
descriptor, so a crash never leaves the environment locked."""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from foundation import paths
from foundation.errors import CielError
from migrate.model import Record, Status


class CutoverStore:
    def __init__(self, env: str, directory: Path | None = None) -> None:
        self.env = env
        self.directory = directory or paths.work_dir() / "cutover"
        self.path = self.directory / f"{env}.json"
        self.lock_path = self.directory / f"{env}.lock"

    @contextmanager
    def lock(self):
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.lock_path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise CielError(f"another cutover run of {self.env} holds the lock ({holder}); wait for it to finish") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%dT%H:%M:%S')}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()

    def load(self) -> Record | None:
        if not self.path.exists():
            return None
        return Record.from_dict(json.loads(self.path.read_text()))

    def save(self, record: Record) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        with open(tmp, "w") as handle:
            json.dump(record.to_dict(), handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


class MemoryStore:
    """For the dry run: the same interface, nothing written."""

    def __init__(self, env: str) -> None:
        self.env = env
        self.record: Record | None = None

    @contextmanager
    def lock(self):
        yield

    def load(self) -> Record | None:
        return self.record

    def save(self, record: Record) -> None:
        self.record = record

    def clear(self) -> None:
        self.record = None


def refuse_if_cutover_in_progress(env: str) -> None:
    """Deploys must not fight a cutover in flight (they would move the frontends back)."""
    record = CutoverStore(env).load()
    retiring = record is not None and record.current == "retire"  # retire itself applies the core stack
    if record and record.status in (Status.IN_PROGRESS.value, Status.ROLLING_BACK.value) and record.completed \
            and not retiring:
        raise CielError(f"a cutover of {env} is in progress (state {record.state}): finish it "
                        f"(`ciel migrate cutover --env {env}`) or roll it back (`ciel migrate rollback --env {env}`)")
