"""`ciel db migrate --env ENV --image-tag TAG`: the image's schema migrations, run once,
with the migrator's credentials, before the new version serves traffic.

Where it runs, phase 1: on an API machine, started by the machine itself. ciel adds a
request (a JSON {id, image, server}) as the newest version of the secret
`migration-request` in the environment's Secret Manager folder; the named machine's
`ciel-migrate` timer (infra/cloudinit/run_migration.py, every 10 s) reads it with the
reader key it already holds, fetches the migrator's URL, and runs the image once with
APP_MODE=migrate on the private network. Its output goes to the unit's journal, which
the machine's Alloy ships to Cockpit; ciel follows it there with the query-only token
and ends with the run's exit code.

Why not SSH through the Public Gateway's bastion: that needs an SSH key on every
machine, the bastion switched on, an inbound path kept open for CI, and a key in GitHub
that opens a root shell on production. The request needs none of that: the machine only
reads what it may already read, and everything it says is in Cockpit, where the team
looks anyway.

One at a time: a request whose run has not reported its end (no `exit` line) within
--timeout blocks the next one (kamal keeps its lock on the target; this lock is the
newest request, in the environment's own Secret Manager, where every operator sees it).
After writing, ciel reads the newest request back: if another `ciel db migrate` wrote
after it, this one stands down. On the machine a file lock and a marker per request make
a request run at most once, however often the timer fires.

Offline (no credentials), it prints these steps and calls nothing.
"""

from __future__ import annotations

import base64
import json
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from ciel import credentials as creds
from foundation.errors import UsageError
from foundation.http import http_call
from foundation.process import say
from infra.config import EnvironmentConfig
from infra.contract import MIGRATE_MODE, MIGRATION_REQUEST_SECRET, MIGRATOR_SECRET

TIMEOUT = 900.0  # for the run to report its end: the timer's 10 s, a pull, the migrations
POLL = 2.0
RUNNER_UNIT_LABEL = "ciel-migrate"  # the `unit` label of the runner's log stream (infra/cloudinit/app.py)
EXIT_PREFIX = "exit "


class MigrationFailed(Exception):
    """The migration ran and failed, or never reported its end: the release must stop."""


@dataclass(frozen=True)
class MigrationRequest:
    id: str
    image: str
    server: str
    requested_at: str
    requested_by: str

    def encoded(self) -> str:
        return base64.b64encode(json.dumps(vars(self), sort_keys=True).encode()).decode()

    @property
    def line_prefix(self) -> str:
        return f"{RUNNER_UNIT_LABEL} {self.id}: "


@dataclass
class MigrationOutcome:
    live: bool
    steps: list[str]
    request: MigrationRequest | None = None
    lines: list[str] | None = None
    exit_code: int | None = None


def image_reference(registry_endpoint: str, config: EnvironmentConfig) -> str:
    return f"{registry_endpoint}/{config.image_name}:{config.image_tag}"


def log_selector(config: EnvironmentConfig) -> str:
    return f'{{environment="{config.name}", unit="{RUNNER_UNIT_LABEL}"}}'


def steps(config: EnvironmentConfig, image: str, timeout: float) -> list[str]:
    """What a run does, in order: printed offline, and before a live run."""
    secret = f"{config.name}'s Secret Manager secret /ciel/{config.name}/{MIGRATION_REQUEST_SECRET}"
    return [
        f"read the newest request of {secret}; refuse if its run has not reported its end and is under "
        f"{timeout:.0f} s old (one migration at a time)",
        "pick the first running API instance of the core stack's api_server_ids",
        f"add a version to that secret: {{id, image: {image}, server}}; read it back (another request written "
        "since: stand down)",
        f"the machine's ciel-migrate timer (every 10 s) runs {image} once with APP_MODE={MIGRATE_MODE} and "
        f"DATABASE_URL from /ciel/{config.name}/{MIGRATOR_SECRET} (the migrator's, never the app's)",
        f"follow Cockpit logs {log_selector(config)} with the query-only token and print the run's lines, "
        f"until its `exit N` (at most {timeout:.0f} s)",
        "exit 0 if N is 0; otherwise fail, so that the release stops before the new version serves",
    ]


def migrate(config: EnvironmentConfig, *, found: creds.Credentials, outputs: dict | None,
            timeout: float = TIMEOUT, echo: Callable[[str], None] = say) -> MigrationOutcome:
    """Offline: the steps. Live: run them against `outputs` (the core stack's, sensitive
    ones included); MigrationFailed if the migration fails or never ends."""
    image = image_reference((outputs or {}).get("registry_endpoint") or "<registry_endpoint>", config)
    outcome = MigrationOutcome(live=found.live, steps=steps(config, image, timeout))
    if not found.live:
        return outcome
    if not config.ship_logs_to_cockpit:
        raise UsageError(f"{config.name} keeps its logs on the machines (ship_logs_to_cockpit: false): "
                         "`ciel db migrate` follows the run in Cockpit. Set ship_logs_to_cockpit: true and deploy")
    outputs = outputs or {}
    client = found.sdk_client(zone=config.zone, region=config.region)
    requests = _RequestSecret(client, config, found.project_id, outputs)
    logs = _RunnerLogs(config, outputs)
    requests.refuse_if_running(logs, timeout)
    server = _first_running_api_server(client, config, outputs)
    request = MigrationRequest(id=datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8],
                               image=image, server=server, requested_at=datetime.now(timezone.utc).isoformat(),
                               requested_by=found.access_key_hint or "unknown")
    requests.add(request)
    echo(f"  requested migration {request.id} on {server}: {image}")
    outcome.request = request
    outcome.lines, outcome.exit_code = logs.follow(request, timeout, echo)
    if outcome.exit_code != 0:
        raise MigrationFailed(f"migration {request.id} failed (exit {outcome.exit_code}) on {server}: the schema "
                              "was not migrated, so do not deploy this version. Its output is above and in Cockpit "
                              f"({log_selector(config)})")
    return outcome


# --- the request, in Secret Manager ------------------------------------------------------------

class _RequestSecret:
    def __init__(self, client, config: EnvironmentConfig, project_id: str, outputs: dict) -> None:
        from scaleway.secret.v1beta1 import SecretV1Beta1API

        self.api, self.region = SecretV1Beta1API(client), config.region
        path = outputs.get("secret_manager_path") or f"/ciel/{config.name}"
        found = self.api.list_secrets_all(region=config.region, project_id=project_id, name=MIGRATION_REQUEST_SECRET,
                                          path=path, scheduled_for_deletion=False)
        if not found:
            raise UsageError(f"no secret {path}/{MIGRATION_REQUEST_SECRET} in {config.name}: it comes with the core "
                             f"stack of this version of ciel; run `ciel deploy phase1 --env {config.name}` first")
        self.secret_id, self.path = found[0].id, path

    def newest(self) -> tuple[MigrationRequest | None, float]:
        """The newest request and when it was written (epoch seconds), or (None, 0)."""
        from scaleway.secret.v1beta1 import SecretVersionStatus

        versions = self.api.list_secret_versions_all(secret_id=self.secret_id, region=self.region,
                                                     status=[SecretVersionStatus.ENABLED])
        if not versions:
            return None, 0.0
        newest = max(versions, key=lambda version: version.revision)
        data = self.api.access_secret_version(secret_id=self.secret_id, region=self.region,
                                              revision=str(newest.revision)).data
        try:
            request = MigrationRequest(**json.loads(base64.b64decode(data)))
        except (ValueError, TypeError):
            return None, 0.0
        written = newest.created_at.timestamp() if newest.created_at else 0.0
        return request, written

    def refuse_if_running(self, logs: "_RunnerLogs", timeout: float) -> None:
        previous, written = self.newest()
        if previous is None:
            return
        age = time.time() - written
        if logs.exit_code(previous, since=written - 60) is None:
            if age < timeout:
                raise UsageError(
                    f"migration {previous.id} ({previous.image} on {previous.server}, requested {age:.0f} s ago by "
                    f"{previous.requested_by}) has not reported its end: one migration runs at a time. Wait for it "
                    f"(its lines: Cockpit {logs.selector}); a run that says nothing for {timeout:.0f} s counts as "
                    "abandoned")
            say(f"  migration {previous.id} never reported its end ({age:.0f} s ago): abandoned; a new one starts")

    def add(self, request: MigrationRequest) -> None:
        self.api.create_secret_version(secret_id=self.secret_id, region=self.region, data=request.encoded(),
                                       description=f"ciel db migrate {request.id}")
        newest, _ = self.newest()
        if newest is None or newest.id != request.id:
            raise UsageError(f"another `ciel db migrate` wrote request {newest.id if newest else '?'} right after this "
                             f"one ({request.id}): that one runs, this one stands down")


def _first_running_api_server(client, config: EnvironmentConfig, outputs: dict) -> str:
    from scaleway.instance.v1 import InstanceV1API, ServerState

    api = InstanceV1API(client)
    names = []
    for zoned_id in outputs.get("api_server_ids") or []:
        zone, _, server_id = str(zoned_id).rpartition("/")
        server = api.get_server(zone=zone or config.zone, server_id=server_id).server
        if server.state == ServerState.RUNNING:
            names.append(server.name)
    if not names:
        raise UsageError(f"{config.name} has no running API instance to run the migration on (api_server_ids: "
                         f"{outputs.get('api_server_ids') or 'none'}); deploy phase 1 first")
    return sorted(names)[0]


# --- the run's output, in Cockpit --------------------------------------------------------------

class _RunnerLogs:
    def __init__(self, config: EnvironmentConfig, outputs: dict) -> None:
        self.selector = log_selector(config)
        self.url = f"{outputs.get('cockpit_logs_url')}/loki/api/v1/query_range"
        self.headers = {"Authorization": f"Bearer {outputs.get('cockpit_query_token', '')}"}

    def lines(self, request: MigrationRequest, since: float) -> list[tuple[int, str]]:
        """(timestamp ns, line without its prefix) of the request's run, oldest first."""
        query = urllib.parse.urlencode({"query": self.selector, "start": str(int(since * 1e9)),
                                        "end": str(time.time_ns()), "limit": "5000", "direction": "forward"})
        status, body = http_call("GET", f"{self.url}?{query}", headers=self.headers)
        if status != 200:
            raise MigrationFailed(f"Cockpit answered {status} to the query of the migration's logs: "
                                  f"{body[:200].decode(errors='replace')}. Check the query token (core stack output "
                                  "cockpit_query_token)")
        found = []
        for stream in json.loads(body).get("data", {}).get("result", []):
            for stamp, line in stream.get("values", []):
                if line.startswith(request.line_prefix):
                    found.append((int(stamp), line[len(request.line_prefix):]))
        return sorted(set(found))

    def exit_code(self, request: MigrationRequest, since: float) -> int | None:
        ends = [line for _, line in self.lines(request, since) if line.startswith(EXIT_PREFIX)]
        return int(ends[-1][len(EXIT_PREFIX):]) if ends else None

    def follow(self, request: MigrationRequest, timeout: float,
               echo: Callable[[str], None]) -> tuple[list[str], int]:
        """Print the run's lines as they arrive; (its lines, its exit code)."""
        since = time.time() - 60  # clocks differ a little; the prefix names this request alone
        deadline = time.monotonic() + timeout
        shown: set[tuple[int, str]] = set()
        printed: list[str] = []
        while True:
            for entry in self.lines(request, since):
                if entry in shown:
                    continue
                shown.add(entry)
                line = entry[1]
                if line.startswith(EXIT_PREFIX):
                    return printed, int(line[len(EXIT_PREFIX):])
                printed.append(line)
                echo(f"  │ {line}")
            if time.monotonic() > deadline:
                raise MigrationFailed(
                    f"migration {request.id} on {request.server} did not report its end within {timeout:.0f} s "
                    f"({len(printed)} line(s) seen). Check on the machine: `systemctl status ciel-migrate.timer "
                    f"ciel-migrate.service`, and its logs in Cockpit ({self.selector})")
            time.sleep(POLL)
