"""The lab's HTTP front: the Scaleway API on 127.0.0.1 (what SCW_API_URL points at)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from lab.api import Lab

MAX_BODY = 8 * 1024 * 1024


def api_handler(lab: Lab) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, MAX_BODY)) if length else b""
            body: object = None
            if raw:
                text = raw.decode("utf-8", errors="replace")
                try:
                    body = json.loads(text) if "json" in (self.headers.get("Content-Type") or "json") else text
                except ValueError:
                    body = text
            if url.path == "/lab/v1/shapes" and self.command == "GET":
                status, payload = 200, {f"{m} {t}": b for (m, t), b in lab.shapes.items()}
            elif url.path == "/lab/v1/faults" and self.command in ("POST", "DELETE"):
                status, payload = _faults(lab, self.command, body)
            else:
                status, payload = lab.handle(self.command, url.path, parse_qs(url.query), body,
                                             token=self.headers.get("X-Auth-Token"))
            data = b"" if payload is None else (payload.encode() if isinstance(payload, str)
                                                else json.dumps(payload).encode())
            self.send_response(status)
            if data:
                self.send_header("Content-Type", "text/plain" if isinstance(payload, str) else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if data:
                self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

        def log_message(self, *args) -> None:  # the lab's own log says what matters
            return None

    return Handler


def _faults(lab: Lab, method: str, body: object) -> tuple[int, object]:
    """POST adds an API fault ({"path": regex, "methods": [...], "statuses": [...],
    "seconds": n}); DELETE clears them all."""
    from lab.api import ApiError, ApiFault

    with lab.store.lock:
        if method == "DELETE":
            lab.faults.clear()
            return 204, None
        try:
            lab.faults.append(ApiFault.from_request(body if isinstance(body, dict) else {}))
        except ApiError as error:
            return error.status, error.body
        return 200, {"faults": len(lab.faults)}


def serve_api(lab: Lab, port: int) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", port), api_handler(lab))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="lab-api", daemon=True).start()
    return server
