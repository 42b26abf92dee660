"""One stand-in app process (lab/dataplane/standin.py) per running lab server.

What runs, and where, comes from the lab's own objects, as a real machine would find it:
- the address: the IPv4 IPAM address held by the server's private NIC (instance.NIC's
  `ip_ids` → ipam.COLLECTION), mapped to loopback by lab.addresses.loopback_for;
- the role, image tag, port and stop timeout: the server's user data, key "cloud-init",
  as infra/cloudinit/app.py renders it (APP_MODE and HTTP_ADDR in /etc/ciel/secrets.json,
  the image and `--stop-timeout` in the `docker run` of the systemd unit). A server
  whose user data is not a Ciel app's (the Redis machine, a test's bare server) runs
  nothing; the refusal is logged.
- its secrets, as the machine's unit gets them before every start: the files the user
  data writes (the reader key, secrets.json, the `ciel-secrets` fetcher itself) are laid
  out under machines/<server id>/, and that very fetcher runs against the lab's Secret
  Manager with --root there. If it fails, the app does not start (as ExecStartPre's
  failure stops the unit); the revisions it fetched are the stand-in's /health "secrets".

The Instance family calls `server_started` when a server settles into running (and when
a NIC is added to a running server: the provider creates NICs after powering on),
`server_stopping` when a poweroff, stop_in_place, reboot or terminate begins, and
`server_deleted` when it goes. Starting is immediate (the process binds in the
background); stopping sends SIGTERM and waits in a background thread, up to the stop
timeout from the user data, so the API answers at once while the app drains. Operations
on one server run in order: a start asked while that server still drains (a reboot)
waits for the drain to end.

Workers of one private network share a job queue folder, queues/<private network id>;
a test makes an API backend's /health fail by creating its fault file (`fault_file`).

An API machine whose user data installs `ciel-migrate` gets its timer: while its app
runs, the lab runs that very runner as the timer does, and at once on a new request
(--root: the machine's files, the lab's API for Secret Manager), with
lab/dataplane/docker.py in place of Docker (the Ciel image is the missing piece); what it prints is the journal of ciel-migrate.service
(`journal_file`), which the machine's Alloy ships.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import yaml

from lab.addresses import NotLoopbackable, loopback_for
from lab.processes import Supervisor

SECRETS_CONFIG = "/etc/ciel/secrets.json"  # infra/cloudinit/secrets.py
MIGRATION_RUNNER = "/usr/local/sbin/ciel-migrate"  # infra/cloudinit/app.py, on API machines
MIGRATION_UNIT = "ciel-migrate.service"
# ciel-migrate.timer starts the runner 10 s after its last run ended, and so does the lab.
# Between those runs the lab also starts it within a second of a new version of the
# request secret, so that a test waits for the migration, not for the timer; a run with
# no new request does nothing, so skipping it changes nothing but the CPU a load test shares.
MIGRATION_TIMER_SECONDS = 10.0
MIGRATION_LOOK_SECONDS = 1.0
MIGRATION_REQUEST_SECRET = "migration-request"  # infra/contract.py
MIGRATION_RUN_TIMEOUT = 600.0
FETCH_SECRETS = "/usr/local/sbin/ciel-secrets"
SECRET_REVISIONS = "/run/ciel/secret-revisions.json"
ENV_FILE = "/etc/ciel/app.env"  # infra/cloudinit/app.py
FETCH_TIMEOUT = 120.0  # its own retries end well before

REPOSITORY = Path(__file__).resolve().parents[2]  # where `python -m lab...` finds the lab
DEFAULT_STOP_TIMEOUT = 30.0
KILL_MARGIN = 5.0  # beyond the stop timeout, before SIGKILL (docker stop -t, then kill)


class NotAnApp(ValueError):
    """The server's user data does not describe a Ciel app machine."""


@dataclass(frozen=True)
class AppSpec:
    """What a server's cloud-init says it runs."""

    mode: str  # "api" or "worker"
    image: str  # rg.fr-par.scw.cloud/ciel-dev/ciel:1.4.2
    tag: str  # 1.4.2
    port: int  # api: the HTTP port (HTTP_ADDR); worker: unused
    stop_timeout: float  # seconds `docker stop` would wait
    boot_files: tuple[tuple[str, str, str], ...] = ()  # (path, permissions, content) the user data writes


@dataclass(frozen=True)
class App:
    """A stand-in as started for one server."""

    server_id: str
    name: str
    spec: AppSpec
    private_address: str
    bind: str
    argv: tuple[str, ...]

    @property
    def url(self) -> str | None:
        return f"http://{self.bind}:{self.spec.port}" if self.spec.mode == "api" else None


def image_tag(image: str) -> str:
    """The tag (or digest) an image reference names; `latest` when it names none."""
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return last.split("@", 1)[1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def parse_cloud_init(text: str | None) -> AppSpec:
    """The app a machine's cloud-init runs; NotAnApp if it runs none."""
    if not text:
        raise NotAnApp("no cloud-init user data")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise NotAnApp(f"cloud-init is not YAML ({error.__class__.__name__})") from None
    files = [entry for entry in (document.get("write_files") if isinstance(document, dict) else None) or []
             if isinstance(entry, dict)]
    contents = [str(entry.get("content") or "") for entry in files]
    secrets_config = next((entry for entry in files if entry.get("path") == SECRETS_CONFIG), None)
    settings: dict[str, str] = {}
    if secrets_config is not None:
        try:
            settings = dict(json.loads(secrets_config.get("content") or "{}").get("settings") or {})
        except (ValueError, AttributeError):
            raise NotAnApp(f"{SECRETS_CONFIG} is not a JSON object with settings") from None
    mode = settings.get("APP_MODE")
    if mode not in ("api", "worker"):
        raise NotAnApp("cloud-init sets no APP_MODE=api|worker" if mode is None else f"unknown APP_MODE={mode}")
    run = next((line for content in contents for line in content.splitlines()
                if "docker run" in line and line.startswith("ExecStart=")), None)
    if run is None:
        raise NotAnApp("cloud-init starts no container (no `docker run` in a unit)")
    words = shlex.split(run.split("=", 1)[1])
    image = words[-1]
    stop_timeout = DEFAULT_STOP_TIMEOUT
    if "--stop-timeout" in words[:-1]:
        stop_timeout = float(words[words.index("--stop-timeout") + 1])
    port = 8080
    if settings.get("HTTP_ADDR"):
        port = int(settings["HTTP_ADDR"].rsplit(":", 1)[1])
    boot_files = tuple((str(entry["path"]), str(entry.get("permissions") or "0644"), str(entry.get("content") or ""))
                       for entry in files if entry.get("path") and not str(entry["path"]).startswith("/etc/systemd/"))
    return AppSpec(mode=mode, image=image, tag=image_tag(image), port=port, stop_timeout=stop_timeout,
                   boot_files=boot_files)


def private_ipv4(lab, server: dict) -> tuple[str, str] | None:
    """(address, private network id) of the server's first private NIC holding an IPv4 address."""
    from lab.families import instance, ipam

    nics = sorted((nic for nic in lab.objects(instance.NIC).values() if nic["server_id"] == server["id"]),
                  key=lambda nic: nic["created_at"])
    for nic in nics:
        for ip_id in nic["ip_ids"]:
            ip = lab.objects(ipam.COLLECTION).get(ip_id)
            if ip is not None and not ip["is_ipv6"]:
                return ip["address"].split("/")[0], nic["private_network_id"]
    return None


def _say_to_stderr(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} apps: {message}", file=sys.stderr, flush=True)


class AppPlane:
    def __init__(self, supervisor: Supervisor, directory: Path, *, api_url: str | None = None,
                 log: Callable[[str], None] | None = None, proxy_url: str | None = None,
                 ca_file: Path | None = None) -> None:
        self.supervisor = supervisor
        self.directory = Path(directory)
        self.api_url = api_url  # the lab's API, where a machine's ciel-secrets asks
        self.log = log or _say_to_stderr
        # >>> log shipping hook (lab/dataplane/logs.py): the lab's proxy and CA, through which a
        # machine's Alloy reaches Cockpit; server id → the LogShipper of its running app.
        self.proxy_url, self.ca_file, self.shippers = proxy_url, ca_file, {}
        # <<< log shipping hook
        self.apps: dict[str, App] = {}  # server id → the stand-in running (or draining) for it
        self._lanes: dict[str, threading.Thread] = {}  # server id → its last background operation
        self._timers: dict[str, threading.Event] = {}  # server id → set to stop its migration timer
        self.lab = None  # the lab whose servers these are (known from the first server_started)
        self._lock = threading.RLock()

    # --- where things are -----------------------------------------------------------------

    def fault_file(self, server_id: str) -> Path:
        """While this file exists, the server's /health answers 503."""
        return self.directory / "faults" / server_id

    def queue_dir(self, private_network_id: str) -> Path:
        return self.directory / "queues" / private_network_id

    def dependency_faults(self) -> Path:
        """While a file named `database` or `redis` is in this folder, every API stand-in's
        /health reports that dependency failing."""
        return self.directory / "faults" / "dependencies"

    def machine_root(self, server_id: str) -> Path:
        """The machine's file system, as far as its boot writes it (its secrets included)."""
        return self.directory / "machines" / server_id

    def journal_file(self, server_id: str, unit: str) -> Path:
        """The lab's journal of one unit of the machine (the app's is its stand-in's log)."""
        return self.machine_root(server_id) / "journal" / f"{unit}.log"

    def other_journals(self, server_id: str) -> dict[str, Path]:
        """unit → journal file, for the machine's units other than the app's."""
        return {MIGRATION_UNIT: self.journal_file(server_id, MIGRATION_UNIT)}

    @staticmethod
    def process_name(server_id: str) -> str:
        return f"app/{server_id}"

    # --- what the Instance family calls ---------------------------------------------------

    def app_for(self, lab, server: dict) -> App:
        """The stand-in the server's objects describe; NotAnApp if they describe none."""
        from lab.families import instance

        spec = parse_cloud_init(lab.objects(instance.USER_DATA).get(server["id"], {}).get("cloud-init"))
        found = private_ipv4(lab, server)
        if found is None:
            raise NotAnApp("no private NIC with an IPv4 address (yet)")
        address, network_id = found
        try:
            bind = loopback_for(address)
        except NotLoopbackable as error:
            raise NotAnApp(str(error)) from None
        argv = [sys.executable, "-m", "lab.dataplane.standin", "--mode", spec.mode, "--name", server["name"],
                "--version", spec.tag]
        if spec.mode == "api":
            argv += ["--bind", bind, "--port", str(spec.port), "--fault-file", str(self.fault_file(server["id"])),
                     "--drain-seconds", f"{spec.stop_timeout:g}"]
            if self._fetches_secrets(spec):
                root = str(self.machine_root(server["id"]))
                argv += ["--secret-revisions", root + SECRET_REVISIONS, "--env-file", root + ENV_FILE,
                         "--dependency-faults", str(self.dependency_faults())]
        else:
            argv += ["--queue-dir", str(self.queue_dir(network_id))]
        return App(server_id=server["id"], name=server["name"], spec=spec, private_address=address, bind=bind,
                   argv=tuple(argv))

    def server_started(self, lab, server: dict) -> App | None:
        """Make the server's stand-in run as its objects now describe it: started (at once, or
        after a drain still under way), restarted if they changed, stopped if they no longer
        describe one. Returns the app, or None."""
        self.lab = lab
        with lab.store.lock:
            try:
                app = self.app_for(lab, server)
            except NotAnApp as reason:
                self.log(f"server {server['name']} ({server['id']}) runs no stand-in: {reason}")
                # One that ran lost what it stood on (its NIC went): it stops, as the app would
                # on a machine without its network.
                self.server_stopping(lab, server)
                return None
        with self._lock:
            current = self.apps.get(app.server_id)
            if current == app and self.supervisor.running(self.process_name(app.server_id)):
                return app  # already running as described (a NIC read, a second call)
            if current is not None:
                self._in_lane(app.server_id, lambda: self._stop(current, graceful=True))
            self.apps[app.server_id] = app
            # Fetching secrets calls the lab's own API: never in the caller's thread, which
            # may hold the lab's lock.
            self._in_lane(app.server_id, lambda: self._start(app), now_if_idle=not self._fetches_secrets(app.spec))
        return app

    def server_stopping(self, lab, server: dict, graceful: bool = True) -> None:
        """SIGTERM the server's stand-in and let it drain in the background (graceful=False: kill it)."""
        with self._lock:
            app = self.apps.pop(server["id"], None)
            if app is not None:
                self._in_lane(server["id"], lambda: self._stop(app, graceful=graceful))

    def server_deleted(self, lab, server: dict) -> None:
        self.server_stopping(lab, server)
        self.fault_file(server["id"]).unlink(missing_ok=True)

    def draining(self, server_id: str) -> bool:
        """True while an operation on the server's stand-in is under way (a drain, mostly)."""
        with self._lock:
            lane = self._lanes.get(server_id)
            return lane is not None and lane.is_alive()

    def resume(self, lab) -> None:
        """Start the stand-ins of the servers a restarted lab finds running."""
        from lab.families import instance

        with lab.store.lock:
            running = [server for server in lab.objects(instance.SERVER).values() if server["state"] == "running"]
        for server in running:
            self.server_started(lab, server)

    def stop(self, timeout: float | None = None) -> None:
        """Drain every stand-in (in parallel), waiting up to each one's stop timeout."""
        with self._lock:
            apps, self.apps = list(self.apps.values()), {}
            for app in apps:
                self._in_lane(app.server_id, lambda app=app: self._stop(app, graceful=True))
            lanes = list(self._lanes.values())
        bound = timeout if timeout is not None else max(
            [app.spec.stop_timeout + KILL_MARGIN for app in apps] + [DEFAULT_STOP_TIMEOUT + KILL_MARGIN])
        deadline = time.monotonic() + bound
        for lane in lanes:
            lane.join(max(0.0, deadline - time.monotonic()))

    # --- how ------------------------------------------------------------------------------

    def _in_lane(self, server_id: str, work: Callable[[], None], *, now_if_idle: bool = False) -> None:
        """Run `work` after the server's previous operation; in this thread if none is under way
        and `now_if_idle`, else in a thread of its own."""
        previous = self._lanes.get(server_id)
        if now_if_idle and (previous is None or not previous.is_alive()):
            work()
            return

        def after_previous() -> None:
            if previous is not None:
                previous.join()
            try:
                work()
            except Exception as error:  # a failed stand-in must not take the lab down
                self.log(f"server {server_id}: {error!r}")

        lane = threading.Thread(target=after_previous, name=f"app-{server_id[:8]}", daemon=True)
        self._lanes[server_id] = lane
        lane.start()

    @staticmethod
    def _fetches_secrets(spec: AppSpec) -> bool:
        return any(path == SECRETS_CONFIG for path, _, _ in spec.boot_files)

    def _fetch_secrets(self, app: App) -> bool:
        """What ExecStartPre does: lay out the boot files, run the machine's own fetcher."""
        if not self.api_url:  # the user data's own URL is Scaleway's: never asked from the lab
            self.log(f"server {app.name} ({app.server_id}): no lab API to fetch secrets from; the app does not start")
            return False
        root = self.machine_root(app.server_id)
        for path, permissions, content in app.spec.boot_files:
            target = Path(str(root) + path)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
            os.chmod(target, int(permissions, 8))
        argv = [sys.executable, str(root) + FETCH_SECRETS, "--root", str(root), "--api-url", self.api_url]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=FETCH_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.log(f"server {app.name} ({app.server_id}): ciel-secrets timed out; the app does not start")
            return False
        for line in (done.stdout + done.stderr).splitlines():
            self.log(f"server {app.name} ({app.server_id}): {line}")
        if done.returncode != 0:
            self.log(f"server {app.name} ({app.server_id}): ciel-secrets failed; the app does not start")
        return done.returncode == 0

    def _start(self, app: App) -> None:
        if self._fetches_secrets(app.spec) and not self._fetch_secrets(app):
            return
        self.supervisor.start(self.process_name(app.server_id), list(app.argv), cwd=REPOSITORY,
                              env={"PYTHONPATH": str(REPOSITORY), "PYTHONUNBUFFERED": "1"})
        where = f"on {app.bind}:{app.spec.port} (for {app.private_address})" if app.spec.mode == "api" else \
            f"on queue {app.argv[app.argv.index('--queue-dir') + 1]}"
        self.log(f"server {app.name} ({app.server_id}): {app.spec.mode} {app.spec.tag} {where}")
        from lab.dataplane.logs import ship_app_log  # >>> log shipping hook: Alloy, if the user data has one
        self.shippers[app.server_id] = ship_app_log(self, app, self.shippers.get(app.server_id))  # <<<
        if any(path == MIGRATION_RUNNER for path, _, _ in app.spec.boot_files) and self.api_url:
            self._start_migration_timer(app)

    def _start_migration_timer(self, app: App) -> None:
        stop = threading.Event()
        previous, self._timers[app.server_id] = self._timers.get(app.server_id), stop
        if previous is not None:
            previous.set()
        root = self.machine_root(app.server_id)
        docker = Path(str(root) + "/usr/bin/docker")
        docker.parent.mkdir(parents=True, exist_ok=True)
        docker.write_text(f"#!/bin/sh\nexec {shlex.quote(sys.executable)} -m lab.dataplane.docker \"$@\"\n")
        docker.chmod(0o755)
        argv = [sys.executable, str(root) + MIGRATION_RUNNER, "--root", str(root), "--api-url", str(self.api_url),
                "--server-name", app.name, "--docker", str(docker)]
        environment = {**os.environ, "PYTHONPATH": str(REPOSITORY), "PYTHONUNBUFFERED": "1",
                       "CIEL_LAB_DIR": str(self.directory)}
        journal = self.journal_file(app.server_id, MIGRATION_UNIT)
        journal.parent.mkdir(parents=True, exist_ok=True)

        def tick() -> None:
            seen, last_run = self._migration_requests(), time.monotonic()
            while not stop.wait(MIGRATION_LOOK_SECONDS):
                requests = self._migration_requests()
                if requests == seen and time.monotonic() - last_run < MIGRATION_TIMER_SECONDS:
                    continue
                with open(journal, "ab") as output:
                    try:
                        subprocess.run(argv, stdout=output, stderr=subprocess.STDOUT, env=environment, cwd=REPOSITORY,
                                       timeout=MIGRATION_RUN_TIMEOUT)
                    except subprocess.TimeoutExpired:
                        self.log(f"server {app.name} ({app.server_id}): ciel-migrate ran out of time")
                seen, last_run = requests, time.monotonic()

        threading.Thread(target=tick, name=f"migrate-{app.server_id[:8]}", daemon=True).start()

    def _migration_requests(self) -> tuple:
        """(secret id, revision) of every version of the request secrets the lab holds."""
        if self.lab is None:
            return ()
        with self.lab.store.lock:
            secrets = {secret["id"] for secret in self.lab.objects("secret").values()
                       if secret["name"] == MIGRATION_REQUEST_SECRET}
            return tuple(sorted((version["secret_id"], version["revision"])
                                for version in self.lab.objects("secret_version").values()
                                if version["secret_id"] in secrets))

    def _stop(self, app: App, *, graceful: bool) -> None:
        if (timer := self._timers.pop(app.server_id, None)) is not None:
            timer.set()  # a run under way finishes, as systemd lets a oneshot finish
        name = self.process_name(app.server_id)
        process = self.supervisor.get(name)
        if process is None:
            return
        timeout = app.spec.stop_timeout + KILL_MARGIN if graceful else 0
        started = time.monotonic()
        self.supervisor.stop(name, timeout=timeout)
        if (shipper := self.shippers.pop(app.server_id, None)) is not None:  # >>> log shipping hook
            shipper.stop()  # after the exit: the app's last lines are shipped too  <<<
        self.log(f"server {app.name} ({app.server_id}): stand-in exited {process.returncode} after "
                 f"{time.monotonic() - started:.2f} s")

    def process(self, server_id: str) -> subprocess.Popen | None:
        return self.supervisor.get(self.process_name(server_id))
