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

Phase 2 (`--on cluster`, the default once the instances are retired): a Kubernetes Job
(k8s/workloads.py `migration_job`) runs the image once with APP_MODE=migrate and the
namespace's `ciel-migrator` Secret alone; ciel prints its pod's log and ends with the
Job's result. The deploy workflow runs this before `deploy phase2`, so the Deployment
rolls only after the Job succeeded.

Why not SSH through the Public Gateway's bastion: that needs an SSH key on every
machine, the bastion switched on, an inbound path kept open for CI, and a key in GitHub
that opens a root shell on production. The request needs none of that: the machine only
reads what it may already read, and everything it says is in Cockpit, where the team
looks anyway.

One at a time (phase 1): a request whose run has not reported its end (no `exit` line) within
--timeout blocks the next one (kamal keeps its lock on the target; this lock is the
newest request, in the environment's own Secret Manager, where every operator sees it).
After writing, ciel reads the newest request back: if another `ciel db migrate` wrote
after it, this one stands down. On the machine a file lock and a marker per request make
a request run at most once, however often the timer fires. Requests older than the one
before are deleted when a new one is written. Phase 2: an unfinished migration Job
blocks the next one, and of two created at once the younger deletes itself.

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
from foundation.errors import CielError, UsageError
from foundation.http import http_call
from foundation.process import say
from infra.cloudinit.app import MIGRATION_LOG_LABEL
from infra.config import EnvironmentConfig
from infra.contract import MIGRATE_MODE, MIGRATION_REQUEST_SECRET, MIGRATOR_SECRET
from k8s.workloads import MIGRATOR_SECRETS, NAMESPACE, migration_job

TIMEOUT = 900.0  # for the run to report its end: the timer's 10 s, a pull, the migrations
# Request versions kept: this one and the one before. Older ones are deleted once this one
# is written (each enabled version is billed, and the history is in Cockpit's logs).
KEPT_REQUESTS = 2
POLL = 2.0
EXIT_PREFIX = "exit "
MIGRATION_JOBS = "app.kubernetes.io/component=migration"


class MigrationFailed(Exception):
    """The migration ran and failed, or never reported its end: the release must stop."""


class NoRunnerYet(CielError):
    """Nothing can run a migration yet: the environment was never deployed, or by a ciel
    from before `ciel db migrate`. The deploy installs the runner; migrate right after it."""

    exit_code = 4


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
        return f"{MIGRATION_LOG_LABEL} {self.id}: "


@dataclass
class MigrationOutcome:
    live: bool
    steps: list[str]
    request: MigrationRequest | None = None
    lines: list[str] | None = None
    exit_code: int | None = None


def log_selector(config: EnvironmentConfig) -> str:
    return f'{{environment="{config.name}", unit="{MIGRATION_LOG_LABEL}"}}'


PLACES = ("instances", "cluster")


def default_place(config: EnvironmentConfig) -> str:
    """Where a migration runs when not told: on the instances while they exist."""
    return "cluster" if config.instances_retired else "instances"


def steps(config: EnvironmentConfig, image: str, timeout: float, place: str) -> list[str]:
    """What a run does, in order: printed offline, and before a live run."""
    if place == "cluster":
        return [
            f"list the Jobs labelled {MIGRATION_JOBS} in namespace {NAMESPACE}; refuse if one has not finished and "
            f"is under {timeout:.0f} s old (one migration at a time)",
            f"create Job migrate-<id>: {image} once with APP_MODE={MIGRATE_MODE} and DATABASE_URL from the Secret "
            f"{MIGRATOR_SECRETS} (the migrator's, never the app's), no retry, stopped after {timeout:.0f} s",
            "print its pod's log as it runs (the Kubernetes API's pods/log)",
            "exit 0 if the Job completes; otherwise fail, so that the release stops before `deploy phase2` rolls "
            "the Deployments",
        ]
    secret = f"{config.name}'s Secret Manager secret /ciel/{config.name}/{MIGRATION_REQUEST_SECRET}"
    return [
        f"read the newest request of {secret}; refuse if its run has not reported its end and is under "
        f"{timeout:.0f} s old (one migration at a time)",
        "pick the first running API instance of the core stack's api_server_ids",
        f"add a version to that secret: {{id, image: {image}, server}}; read it back (another request written "
        f"since: stand down); delete its versions older than the {KEPT_REQUESTS} newest",
        f"the machine's ciel-migrate timer (every 10 s) runs {image} once with APP_MODE={MIGRATE_MODE} and "
        f"DATABASE_URL from /ciel/{config.name}/{MIGRATOR_SECRET} (the migrator's, never the app's)",
        f"follow Cockpit logs {log_selector(config)} with the query-only token and print the run's lines, "
        f"until its `exit N` (at most {timeout:.0f} s)",
        "exit 0 if N is 0; otherwise fail, so that the release stops before the new version serves",
    ]


def check_place(config: EnvironmentConfig, place: str | None) -> str:
    """Where the migration runs, refused before any call if it cannot run there."""
    place = place or default_place(config)
    if place not in PLACES:
        raise UsageError(f"--on {place!r}: choose instances or cluster")
    if place == "instances" and not config.ship_logs_to_cockpit:
        raise UsageError(f"{config.name} keeps its logs on the machines (ship_logs_to_cockpit: false): `ciel db "
                         "migrate` follows a run on the instances in Cockpit. Set ship_logs_to_cockpit: true and "
                         "deploy, or run it on the cluster (--on cluster)")
    return place


def migrate(config: EnvironmentConfig, *, found: creds.Credentials, outputs: dict | None,
            timeout: float = TIMEOUT, place: str | None = None, echo: Callable[[str], None] = say) -> MigrationOutcome:
    """Offline: the steps. Live: run them against `outputs` (the core stack's, sensitive
    ones included); MigrationFailed if the migration fails or never ends."""
    place = check_place(config, place)
    image = config.image((outputs or {}).get("registry_endpoint") or "<registry_endpoint>")
    outcome = MigrationOutcome(live=found.live, steps=steps(config, image, timeout, place))
    if not found.live:
        return outcome
    outputs = outputs or {}
    if not outputs.get("secret_manager_path"):
        raise NoRunnerYet(f"{config.name} was never deployed (its core stack has no outputs): there is no database "
                          f"to migrate yet. Run `ciel deploy phase1 --env {config.name}`, then `ciel db migrate`")
    runner = _ClusterRun(config, outputs) if place == "cluster" else _InstanceRun(config, found, outputs)
    runner.refuse_if_running(timeout)
    request = MigrationRequest(id=datetime.now(timezone.utc).strftime("%Y%m%dt%H%M%Sz-") + uuid.uuid4().hex[:8],
                               image=image, server=runner.target(), requested_at=datetime.now(timezone.utc).isoformat(),
                               requested_by=found.access_key_hint or "unknown")
    runner.start(request, timeout)
    echo(f"  requested migration {request.id} on {request.server}: {image}")
    outcome.request = request
    outcome.lines, outcome.exit_code = runner.follow(request, timeout, echo)
    if outcome.exit_code != 0:
        raise MigrationFailed(f"migration {request.id} failed (exit {outcome.exit_code}) on {request.server}: the "
                              "schema was not migrated, so do not deploy this version. Its output is above "
                              f"({runner.where_output})")
    return outcome


# --- phase 1: on an API instance ---------------------------------------------------------------

class _InstanceRun:
    def __init__(self, config: EnvironmentConfig, found: creds.Credentials, outputs: dict) -> None:
        self.config, self.outputs = config, outputs
        self.client = found.sdk_client(zone=config.zone, region=config.region)
        self.requests = _RequestSecret(self.client, config, found.project_id, outputs)
        self.logs = _RunnerLogs(config, outputs)
        self.where_output = f"and in Cockpit: {self.logs.selector}"

    def refuse_if_running(self, timeout: float) -> None:
        self.requests.refuse_if_running(self.logs, timeout)

    def target(self) -> str:
        return _first_running_api_server(self.client, self.config, self.outputs)

    def start(self, request: MigrationRequest, timeout: float) -> None:
        self.requests.add(request)

    def follow(self, request: MigrationRequest, timeout: float, echo: Callable[[str], None]) -> tuple[list[str], int]:
        return self.logs.follow(request, timeout, echo)


# --- the request, in Secret Manager ------------------------------------------------------------

class _RequestSecret:
    def __init__(self, client, config: EnvironmentConfig, project_id: str, outputs: dict) -> None:
        from scaleway.secret.v1beta1 import SecretV1Beta1API

        self.api, self.region = SecretV1Beta1API(client), config.region
        path = outputs["secret_manager_path"]  # migrate() checked that the core stack has outputs
        found = self.api.list_secrets_all(region=config.region, project_id=project_id, name=MIGRATION_REQUEST_SECRET,
                                          path=path, scheduled_for_deletion=False)
        if not found:
            raise NoRunnerYet(f"no secret {path}/{MIGRATION_REQUEST_SECRET} in {config.name}, so no machine runs "
                              "migrations yet: it comes with the core stack of this version of ciel. Run `ciel deploy "
                              f"phase1 --env {config.name}`, then `ciel db migrate` before the new version gets "
                              "traffic")
        self.secret_id = found[0].id

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
        self._prune()

    def _prune(self) -> None:
        """Delete the request versions older than the KEPT_REQUESTS newest ones. Only the newest
        is ever read (by the machine's runner and by the next command), so nothing waits on them."""
        from scaleway.secret.v1beta1 import SecretVersionStatus

        versions = sorted(self.api.list_secret_versions_all(secret_id=self.secret_id, region=self.region,
                                                            status=[SecretVersionStatus.ENABLED]),
                          key=lambda version: version.revision)
        for version in versions[:-KEPT_REQUESTS]:
            self.api.delete_secret_version(secret_id=self.secret_id, region=self.region,
                                           revision=str(version.revision))


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


# --- phase 2: a Kubernetes Job -----------------------------------------------------------------

class _ClusterRun:
    def __init__(self, config: EnvironmentConfig, outputs: dict) -> None:
        from kubernetes import client

        from ciel.outputs import kube_ca_file
        from migrate.cluster import api_client

        if not outputs.get("kube_host"):
            raise UsageError(f"{config.name} has no cluster (no kube_host among the core stack's outputs): deploy "
                             f"phase 2 first, or run the migration on the instances (--on instances)")
        self.config = config
        api = api_client(str(outputs["kube_host"]), str(outputs["kube_token"]), kube_ca_file(outputs))
        self.batch, self.core = client.BatchV1Api(api), client.CoreV1Api(api)
        self.job_name = ""
        if not any(secret.metadata.name == MIGRATOR_SECRETS
                   for secret in self.core.list_namespaced_secret(NAMESPACE).items):
            raise NoRunnerYet(f"namespace {NAMESPACE} has no Secret {MIGRATOR_SECRETS} (workloads deployed by a ciel "
                              f"from before `ciel db migrate`): run `ciel deploy phase2 --env {config.name}`, then "
                              "`ciel db migrate`")

    @property
    def where_output(self) -> str:
        return f"and in `kubectl -n {NAMESPACE} logs job/{self.job_name}`"

    def _unfinished(self) -> list:
        jobs = self.batch.list_namespaced_job(NAMESPACE, label_selector=MIGRATION_JOBS).items
        return sorted((job for job in jobs if _job_result(job) is None),
                      key=lambda job: (job.metadata.creation_timestamp, job.metadata.name))

    def refuse_if_running(self, timeout: float) -> None:
        for job in self._unfinished():
            age = time.time() - job.metadata.creation_timestamp.timestamp()
            if age < timeout:
                raise UsageError(f"migration Job {job.metadata.name} (created {age:.0f} s ago) has not finished: one "
                                 f"migration runs at a time. Wait for it (`kubectl -n {NAMESPACE} logs -f "
                                 f"job/{job.metadata.name}`); an unfinished one counts as abandoned after "
                                 f"{timeout:.0f} s")
            say(f"  migration Job {job.metadata.name} never finished ({age:.0f} s ago): abandoned; a new one starts")

    def target(self) -> str:
        return f"the cluster (namespace {NAMESPACE})"

    def start(self, request: MigrationRequest, timeout: float) -> None:
        manifest = migration_job(self.config, image=request.image, run_id=request.id, deadline_seconds=int(timeout))
        self.job_name = manifest["metadata"]["name"]
        created = self.batch.create_namespaced_job(NAMESPACE, manifest)
        mine = (created.metadata.creation_timestamp, created.metadata.name)
        earlier = [job.metadata.name for job in self._unfinished()
                   if (job.metadata.creation_timestamp, job.metadata.name) < mine
                   and time.time() - job.metadata.creation_timestamp.timestamp() < timeout]
        if earlier:
            self.batch.delete_namespaced_job(self.job_name, NAMESPACE, propagation_policy="Background")
            raise UsageError(f"another `ciel db migrate` created Job {earlier[0]} just before this one: that one "
                             "runs, this one stands down")

    def follow(self, request: MigrationRequest, timeout: float, echo: Callable[[str], None]) -> tuple[list[str], int]:
        deadline = time.monotonic() + timeout + 60  # the Job's own deadline ends it first
        printed: list[str] = []
        while True:
            job = self.batch.read_namespaced_job_status(self.job_name, NAMESPACE)
            result = _job_result(job)
            for line in self._log_lines()[len(printed):]:
                printed.append(line)
                echo(f"  │ {line}")
            if result is not None:
                return printed, self._exit_code(result)
            if time.monotonic() > deadline:
                raise MigrationFailed(f"migration Job {self.job_name} did not finish within {timeout:.0f} s "
                                      f"({len(printed)} line(s) seen): `kubectl -n {NAMESPACE} describe job/"
                                      f"{self.job_name}`")
            time.sleep(POLL)

    def _pod(self):
        pods = self.core.list_namespaced_pod(NAMESPACE, label_selector=f"job-name={self.job_name}").items
        return max(pods, key=lambda pod: pod.metadata.creation_timestamp) if pods else None

    def _log_lines(self) -> list[str]:
        from kubernetes.client.exceptions import ApiException

        pod = self._pod()
        if pod is None:
            return []
        try:
            text = self.core.read_namespaced_pod_log(pod.metadata.name, NAMESPACE, container="migrate")
        except ApiException:
            return []  # not started yet (pulling the image): the next round reads it
        return text.splitlines()

    def _exit_code(self, result: str) -> int:
        if result == "Complete":
            return 0
        pod = self._pod()
        for status in (pod.status.container_statuses or []) if pod else []:
            if status.state and status.state.terminated:
                return status.state.terminated.exit_code or 1
        return 1


def _job_result(job) -> str | None:
    """"Complete" or "Failed" once the Job has finished, else None."""
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition.type
    return None
