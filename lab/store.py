"""The lab's state: every emulated resource, in memory, persisted to one JSON file.

One lock for everything: the lab serves one user's engine, so simplicity beats
concurrency. Persisted after every change (atomically), so a restarted lab resumes
exactly where it stopped — `ciel lab up` after `ciel lab down` keeps the environment.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path


class Store:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.lock = threading.RLock()
        self.collections: dict[str, dict[str, dict]] = {}
        self.meta: dict[str, dict] = {}  # per object: transient polls left, hidden bookkeeping
        if path and path.exists():
            saved = json.loads(path.read_text())
            self.collections, self.meta = saved.get("collections", {}), saved.get("meta", {})

    def collection(self, name: str) -> dict[str, dict]:
        return self.collections.setdefault(name, {})

    def save(self) -> None:
        if not self.path:
            return
        with self.lock:
            text = json.dumps({"collections": self.collections, "meta": self.meta}, sort_keys=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.path)
