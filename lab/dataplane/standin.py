"""A stand-in for the Ciel image, for the lab's instances (the real image is not available here).

It honours the parts of the app's contract the deployment depends on, and nothing more:

APP_MODE=api (`--mode api`) listens on --bind:--port (HTTP/1.1, keep-alive):
    GET /health   200 {"status": "ok", "backend": NAME, "version": TAG, "secrets": {secret:
                  revision}} (the revisions the machine's ciel-secrets fetched before this
                  process started, from --secret-revisions); 503 while the
                  fault file exists (a test's way to make one backend sick) and once draining.
    GET <other>   200 after --service-ms of work (3 ms by default), body
                  "backend=NAME version=TAG path=<path>"; `?delay_ms=N` (at most 60 s) makes
                  this one request slow, so a test can hold a request in flight.
    /health also reports the app's dependencies, as the image's contract says
    (infra/contract.py HEALTH_CHECKS): "checks": {"database": "ok" | "failing: ...",
    "redis": ...}; a dependency is ok when its URL is in the machine's env file
    (--env-file) and no fault file of its name is in --dependency-faults (a test's way to
    cut it off). A failing dependency makes the status "degraded", still 200.
    Every answer carries `X-Ciel-Backend: NAME`.
    SIGTERM: /health fails, the listening socket closes (new connections are refused), idle
    keep-alive connections are closed, requests in flight finish (within --drain-seconds),
    then the process exits 0 (1 if the drain ran out of time).

APP_MODE=worker (`--mode worker`) takes jobs from --queue-dir:
    <queue>/<job>.job           waiting (its text may be JSON {"seconds": S} to set its length)
    <queue>/claimed/<job>.job.<NAME>  claimed by one worker, by an atomic rename
    <queue>/done/<job>.job      written when done: "backend=NAME version=TAG"
    A job takes --job-ms (50 ms by default). SIGTERM: the job in hand is finished, then the
    process exits 0.

APP_MODE=migrate (`--mode migrate`), as lab/dataplane/docker.py runs it for `ciel db migrate`:
    reads DATABASE_URL from --env-file; a role other than the migrator's is refused, as
    PostgreSQL refuses the app's role a CREATE TABLE. The database is a JSON list of the
    migrations applied, one file per database URL under <--lab-dir>/databases; each pending
    one of MIGRATIONS is applied in order and recorded, so a second run changes nothing.
    <--lab-dir>/faults/migration makes the next pending migration fail (its text is the
    error) and the process exit 1; <--lab-dir>/faults/migration-seconds holds how long each
    migration takes (a test's way to hold one under way).

Standard library only: the lab starts one per running server.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

MAX_DELAY_SECONDS = 60.0
DEPENDENCIES = {"database": "DATABASE_URL", "redis": "REDIS_URL"}  # /health's checks, by variable


def _say(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} standin: {message}", file=sys.stderr, flush=True)


# --- api ----------------------------------------------------------------------------------

class AppServer(ThreadingHTTPServer):
    daemon_threads = True  # the drain below, not interpreter exit, decides when requests are done
    request_queue_size = 128  # load tests open many connections at once

    def __init__(self, address: tuple[str, int], *, name: str, version: str, fault_file: Path | None,
                 service_seconds: float, secret_revisions: dict | None = None, settings: dict | None = None,
                 dependency_faults: Path | None = None) -> None:
        super().__init__(address, AppHandler)
        self.name, self.version = name, version
        self.settings = settings  # the env file's variables; None: no env file (a bare test stand-in)
        self.dependency_faults = dependency_faults
        self.secret_revisions = secret_revisions or {}
        self.fault_file = fault_file
        self.service_seconds = service_seconds
        self.draining = threading.Event()
        self.connections: set[socket.socket] = set()
        self.shut: set[socket.socket] = set()  # connections already told to stop reading
        self.connections_changed = threading.Condition()

    def dependencies(self) -> dict[str, str]:
        if self.settings is None:
            return {}
        found = {}
        for name, variable in DEPENDENCIES.items():
            if not self.settings.get(variable):
                found[name] = f"failing: {variable} is not set"
            elif self.dependency_faults is not None and (self.dependency_faults / name).exists():
                found[name] = f"failing: {name} unreachable (lab fault)"
            else:
                found[name] = "ok"
        return found

    def health(self) -> tuple[int, dict]:
        checks = self.dependencies()
        about = {"backend": self.name, "version": self.version, "secrets": self.secret_revisions, "checks": checks}
        if self.draining.is_set():
            return 503, {"status": "draining", **about}
        if self.fault_file is not None and self.fault_file.exists():
            return 503, {"status": "fault", **about}
        return 200, {"status": "ok" if all(value == "ok" for value in checks.values()) else "degraded", **about}

    def track(self, connection: socket.socket, open_: bool) -> None:
        with self.connections_changed:
            if open_:
                self.connections.add(connection)
            else:
                self.connections.discard(connection)
                self.shut.discard(connection)
            self.connections_changed.notify_all()

    def _stop_reading(self) -> None:
        """Shut the read side of every connection not yet shut: a handler waiting for the next
        request on a keep-alive connection sees end of file and closes; one that has read its
        request still writes the answer."""
        with self.connections_changed:
            for connection in self.connections - self.shut:
                try:
                    connection.shutdown(socket.SHUT_RD)
                except OSError:
                    pass  # the client closed it already
                self.shut.add(connection)

    def drain(self, timeout: float) -> bool:
        """Stop taking connections, let those open finish their request in hand; True if
        all of them did within `timeout`."""
        self.draining.set()
        self.shutdown()  # the accept loop (serve_forever, in another thread) ends
        self.server_close()  # the listening socket goes: new connections are refused
        deadline = time.monotonic() + timeout
        with self.connections_changed:
            while self.connections:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                # A connection accepted just before the listener closed registers a moment
                # later: sweep again until none is left.
                self._stop_reading()
                self.connections_changed.wait(min(left, 0.05))
        return True


class AppHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle's algorithm the second waits for the
    # client's delayed ACK (40 ms on Linux), capping a keep-alive connection at ~25 req/s.
    disable_nagle_algorithm = True
    server: AppServer

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection, True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, False)

    def log_message(self, format: str, *args) -> None:
        pass  # hundreds of requests a second would flood the lab's log

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/health":
            status, document = self.server.health()
            self._answer(status, json.dumps(document).encode(), "application/json")
            return
        try:
            delay = float(parse_qs(parts.query).get("delay_ms", ["0"])[0]) / 1000
        except ValueError:
            self._answer(400, b"delay_ms must be a number\n", "text/plain")
            return
        time.sleep(self.server.service_seconds + min(max(delay, 0.0), MAX_DELAY_SECONDS))
        body = f"backend={self.server.name} version={self.server.version} path={parts.path}\n"
        self._answer(200, body.encode(), "text/plain")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Ciel-Backend", self.server.name)
        if self.server.draining.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


def _env_file(path: str) -> dict[str, str]:
    lines = Path(path).read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def run_api(args: argparse.Namespace, stop: threading.Event) -> int:
    server = AppServer((args.bind, args.port), name=args.name, version=args.version,
                       fault_file=Path(args.fault_file) if args.fault_file else None,
                       service_seconds=args.service_ms / 1000,
                       secret_revisions=json.loads(Path(args.secret_revisions).read_text()) if args.secret_revisions
                       else None, settings=_env_file(args.env_file) if args.env_file else None,
                       dependency_faults=Path(args.dependency_faults) if args.dependency_faults else None)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="accept", daemon=True).start()
    _say(f"api {args.name} {args.version} listening on {args.bind}:{args.port}")
    while not stop.wait(0.5):
        pass
    _say(f"draining (up to {args.drain_seconds:g} s)")
    if server.drain(args.drain_seconds):
        _say("drained; exiting")
        return 0
    _say(f"{len(server.connections)} connection(s) still busy after {args.drain_seconds:g} s; exiting")
    return 1


# --- worker -------------------------------------------------------------------------------

def _job_seconds(job: Path, default: float) -> float:
    try:
        return min(float(json.loads(job.read_text() or "{}").get("seconds", default)), MAX_DELAY_SECONDS)
    except (ValueError, AttributeError, OSError):
        return default


def _claim(queue: Path, name: str) -> Path | None:
    """The next waiting job, renamed into claimed/ (only one worker's rename succeeds)."""
    for job in sorted(queue.glob("*.job")):
        claimed = queue / "claimed" / f"{job.name}.{name}"
        try:
            os.rename(job, claimed)
        except FileNotFoundError:
            continue  # another worker took it
        return claimed
    return None


def run_worker(args: argparse.Namespace, stop: threading.Event) -> int:
    queue = Path(args.queue_dir)
    for folder in (queue, queue / "claimed", queue / "done"):
        folder.mkdir(parents=True, exist_ok=True)
    _say(f"worker {args.name} {args.version} taking jobs from {queue}")
    while not stop.is_set():
        claimed = _claim(queue, args.name)
        if claimed is None:
            stop.wait(args.poll_ms / 1000)
            continue
        job_name = claimed.name[: -len(args.name) - 1]
        # A SIGTERM arriving now only sets `stop`: the sleep resumes and the job completes.
        time.sleep(_job_seconds(claimed, args.job_ms / 1000))
        marker = queue / "done" / job_name
        partial = marker.with_name(f".{job_name}.{args.name}.tmp")
        partial.write_text(f"backend={args.name} version={args.version}\n")
        os.replace(partial, marker)
        claimed.unlink()
    _say("stopping after the job in hand; exiting")
    return 0


# --- migrate ------------------------------------------------------------------------------

MIGRATIONS = ("0001_create_photos", "0002_create_albums", "0003_index_photos_by_album")
MIGRATOR_ROLE = "ciel_migrator"  # infra/constructs/database.py


def _lab_fault(lab_dir: Path, name: str) -> str | None:
    try:
        return (lab_dir / "faults" / name).read_text().strip()
    except OSError:
        return None


def run_migrate(args: argparse.Namespace) -> int:
    url = urlsplit(_env_file(args.env_file).get("DATABASE_URL", ""))
    if url.scheme not in ("postgres", "postgresql") or not url.hostname:
        print("ERROR: DATABASE_URL is not a PostgreSQL URL", flush=True)
        return 2
    if url.username != MIGRATOR_ROLE:
        print(f'ERROR: permission denied for schema public: role "{url.username}" may not create tables '
              "(migrations run with the migrator's URL)", flush=True)
        return 1
    lab_dir = Path(args.lab_dir)
    database = lab_dir / "databases" / f"{url.hostname}_{url.port or 5432}_{url.path.strip('/') or 'postgres'}.json"
    applied = json.loads(database.read_text()) if database.exists() else []
    pending = [name for name in MIGRATIONS if name not in applied]
    print(f"ciel {args.version}: schema at {applied[-1] if applied else 'nothing'}, {len(pending)} pending", flush=True)
    seconds = float(_lab_fault(lab_dir, "migration-seconds") or 0)
    for name in pending:
        print(f"applying {name}", flush=True)
        time.sleep(min(seconds, MAX_DELAY_SECONDS))
        error = _lab_fault(lab_dir, "migration")
        if error is not None:
            print(f"ERROR: {name}: {error or 'syntax error'}; rolled back, the schema stays at "
                  f"{applied[-1] if applied else 'nothing'}", flush=True)
            return 1
        applied.append(name)
        database.parent.mkdir(parents=True, exist_ok=True)
        partial = database.with_suffix(".tmp")
        partial.write_text(json.dumps(applied))
        os.replace(partial, database)
    print(f"schema is current: {applied[-1]} ({len(applied)} migrations)", flush=True)
    return 0


# --- entry point ----------------------------------------------------------------------------

def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lab.dataplane.standin", description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("api", "worker", "migrate"), required=True)
    parser.add_argument("--name", required=True, help="the backend's name (the server's)")
    parser.add_argument("--version", required=True, help="the image tag it stands for")
    parser.add_argument("--bind", default="127.0.0.1", help="api: the loopback address to listen on")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--fault-file", help="api: /health fails while this file exists")
    parser.add_argument("--service-ms", type=float, default=3.0, help="api: work per request")
    parser.add_argument("--drain-seconds", type=float, default=30.0, help="api: bound on finishing requests")
    parser.add_argument("--secret-revisions", help="api: JSON {secret: revision} the machine fetched, for /health")
    parser.add_argument("--env-file", help="api, migrate: the env file `docker run --env-file` would get")
    parser.add_argument("--dependency-faults", help="api: a folder where a file named database or redis cuts "
                                                    "that dependency off")
    parser.add_argument("--queue-dir", help="worker: the job queue's folder")
    parser.add_argument("--job-ms", type=float, default=50.0, help="worker: how long a job takes")
    parser.add_argument("--poll-ms", type=float, default=50.0, help="worker: wait between looks at an empty queue")
    parser.add_argument("--lab-dir", help="migrate: the lab's folder (its databases, its faults)")
    args = parser.parse_args(argv)
    if args.mode == "worker" and not args.queue_dir:
        parser.error("--queue-dir is required with --mode worker")
    if args.mode == "migrate" and not (args.env_file and args.lab_dir):
        parser.error("--env-file and --lab-dir are required with --mode migrate")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if args.mode == "migrate":
        return run_migrate(args)
    return run_api(args, stop) if args.mode == "api" else run_worker(args, stop)


if __name__ == "__main__":
    sys.exit(main())
