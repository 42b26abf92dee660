"""A minimal Kubernetes API for the cutover's cluster side, driven through the official
`kubernetes` client: read a Deployment, patch its scale; new replicas turn ready shortly."""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.fakes import send_json


class KubeApi:
    def __init__(self, replicas: dict[str, int], ready_after: float = 0.1) -> None:
        self.lock = threading.Lock()
        self.replicas = dict(replicas)
        self.ready = dict(replicas)
        self.ready_after = ready_after
        self.calls: list[tuple[str, str]] = []
        self.broken: set[str] = set()  # deployments whose pods never turn ready
        api = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, payload: dict) -> None:
                send_json(self, status, payload)

            def do_GET(self):  # noqa: N802
                match = re.fullmatch(r"/apis/apps/v1/namespaces/ciel/deployments/([^/]+)", self.path)
                api.calls.append(("GET", self.path))
                if not match or match.group(1) not in api.replicas:
                    return self._send(404, {"kind": "Status", "code": 404})
                self._send(200, api.deployment(match.group(1)))

            def do_PATCH(self):  # noqa: N802
                match = re.fullmatch(r"/apis/apps/v1/namespaces/ciel/deployments/([^/]+)/scale", self.path)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                api.calls.append(("PATCH", self.path))
                name = match.group(1)
                with api.lock:
                    api.replicas[name] = body["spec"]["replicas"]
                threading.Timer(api.ready_after, api._settle, args=(name,)).start()
                self._send(200, {"apiVersion": "autoscaling/v1", "kind": "Scale", "metadata": {"name": name},
                                 "spec": {"replicas": api.replicas[name]}, "status": {"replicas": api.replicas[name]}})

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def _settle(self, name: str) -> None:
        with self.lock:
            if name not in self.broken:
                self.ready[name] = self.replicas[name]

    def deployment(self, name: str) -> dict:
        labels = {"app.kubernetes.io/name": "ciel", "app.kubernetes.io/component": name}
        with self.lock:
            return {"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": name, "namespace": "ciel", "labels": labels},
                    "spec": {"replicas": self.replicas[name], "selector": {"matchLabels": labels},
                             "template": {"metadata": {"labels": labels},
                                          "spec": {"containers": [{"name": name, "image": "ciel:test"}]}}},
                    "status": {"replicas": self.replicas[name], "readyReplicas": self.ready[name]}}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
