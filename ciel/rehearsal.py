"""`ciel lab rehearse`: the three commands, end to end, on a fresh local Scaleway, under traffic.

Scenarios, each on a lab of its own (fresh state, free ports, its own copy of the
environment file, so the checkout's infra/environments/ is never touched):
- **cutover**: deploy phase1 → deploy phase2 → migrate cutover through retire (the real
  retire apply deletes the instances) → re-plan of every stack (must be empty);
- **rollback**: deploy phase1 → deploy phase2 → cutover stopped after the switch →
  rollback → cutover stopped after the bake → rollback → re-plan;
- **rollout** (on request): deploy phase1, then again with a new image tag — the
  instances replaced one at a time behind the LB — and its re-plan;
- **rotate-secret** (on request): deploy phase1 (with two API instances), then
  `ciel secrets rotate` of the PASETO access key: every app process must read the new
  version, no instance be replaced, and the re-plan be empty.
Faults (FAULTS) are injected into the cutover scenario on request.
Each command runs as a user runs it: the `ciel` console script in a subprocess, with the
lab's variables. From the moment the load balancer first serves until the scenario ends,
one bounded vegeta attack (lab/traffic.py) sends requests through the LB's address (on
loopback, as every lab address); each answer names the backend that served it (an
instance or a cluster pod), so the report can say when traffic moved.

The rehearsal shortens only the bake (`--bake-seconds`; the file's value is shown beside
it), and gives rotate-secret a second API instance: everything else is the environment's
own configuration.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from foundation import paths
from foundation.errors import CielError, UsageError

CIEL = str(Path(sys.executable).with_name("ciel"))
STEP_TIMEOUT = 1800.0  # no single command of a rehearsal may take longer
SERVE_TIMEOUT = 240.0  # from the phase-1 apply to the LB's first 200
TRAFFIC_MAX_SECONDS = 1800.0  # the attack stops by itself after this, even if this process is killed
REQUEST_PATH = "/rehearsal"
MAX_RPS = 1000
CLUSTER_PREFIX = "cluster-"  # lab/kubernetes/nodes.py names every pod's stand-in so
PLAN_COUNTS = re.compile(r"(\d+) to add, (\d+) to change, (\d+) to destroy")
ROTATED_SECRET = "paseto-access-key"
SCENARIOS = ("cutover", "rollback")  # what a rehearsal runs unless told otherwise
EXTRA_SCENARIOS = ("rollout", "rotate-secret")  # rotate-secret: `ciel secrets rotate ROTATED_SECRET` under traffic  # deploy phase1, then again with --image-tag ROLLOUT_TAG, under traffic
ROLLOUT_TAG = "2"  # as `ciel deploy phase1 --env prod --image-tag 2`
# Faults a rehearsal can inject into its cutover scenario, one at a time.
FAULTS = {
    "cluster-health": "the cluster's /health fails from the start of the bake: the watch must roll back by itself; "
                      "failed requests only inside the documented worst-case window",
    "lb-api-errors": "the LB API answers 409, 429 and 500 to every change for LB_FAULT_SECONDS from the switch: "
                     "the cutover retries and goes on",
    "kill-after-switch": "the ciel process is killed once the switch is done; `ciel migrate unlock` and a second "
                         "`ciel migrate cutover` resume it to the end",
}
LB_FAULT_SECONDS = 6


def _is_app_server(name: str, role: str | None = None) -> bool:
    """A phase-1 app instance (ciel-<env>-api-<n>, ciel-<env>-worker-<n>): what retire deletes.
    Self-managed Redis (the mvp tier's) is a data layer and stays."""
    return any(f"-{kind}-" in name for kind in ((role,) if role else ("api", "worker")))


def backend_side(name: str) -> str:
    return "cluster" if name.startswith(CLUSTER_PREFIX) else "instances"


@dataclass
class StepReport:
    scenario: str
    step: str
    seconds: float
    ok: bool
    requests: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    p50_ms: float | None = None
    p99_ms: float | None = None
    note: str = ""


@dataclass
class ScenarioReport:
    name: str
    steps: list[StepReport] = field(default_factory=list)
    requests: int = 0
    failed: int = 0
    failures: dict[str, int] = field(default_factory=dict)
    switch_seconds: float | None = None
    rollback_seconds: list[float] = field(default_factory=list)
    replan_changes: int = 0
    final_backend: str = ""
    servers_left: int | None = None
    faults: tuple[str, ...] = ()
    fault_window: tuple[float, float] | None = None  # (fault start, + documented worst case), wall clock
    failed_outside_window: int | None = None
    error: str = ""


@dataclass
class CommandRun:
    argv: list[str]
    returncode: int
    started: float
    ended: float
    lines: list[tuple[float, str]]  # (wall-clock time, line) of stdout and stderr together

    def first(self, text: str, after: float = 0.0) -> float | None:
        return next((at for at, line in self.lines if text in line and at >= after), None)

    def planned_changes(self) -> int:
        """Adds, changes and destroys of every plan summary the command printed."""
        return sum(sum(int(n) for n in found.groups()) for _, line in self.lines
                   if (found := PLAN_COUNTS.search(line)))

    def tail(self, count: int = 25) -> str:
        return "\n".join(line for _, line in self.lines[-count:])


def run_command(argv: list[str], env: dict[str, str], log: Callable[[str], None], timeout: float = STEP_TIMEOUT,
                on_line: Callable[[str, subprocess.Popen], None] | None = None) -> CommandRun:
    """Run `argv`, time-stamping each output line as it comes (the cutover's log lines say
    when it called the LB), and stop it if it outlives `timeout`. `on_line` sees each line
    and the process (a fault may kill it there)."""
    started = time.time()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, text=True, bufsize=1, cwd=str(paths.REPO_ROOT))
    lines: list[tuple[float, str]] = []
    timer = threading.Timer(timeout, process.kill)
    timer.start()
    try:
        for line in process.stdout:
            lines.append((time.time(), line.rstrip("\n")))
            log(f"    | {line.rstrip()}")
            if on_line:
                on_line(line, process)
        process.wait()
    finally:
        timer.cancel()
    return CommandRun(argv, process.returncode, started, time.time(), lines)


class Scenario:
    """One scenario on a lab of its own."""

    def __init__(self, name: str, env: str, root: Path, *, rps: int, bake_seconds: int | None,
                 log: Callable[[str], None], faults: tuple[str, ...] = (), source: Path | None = None) -> None:
        self.name, self.env, self.rps, self.log = name, env, rps, log
        self.faults = faults if name == "cutover" else ()
        self.source = source or paths.environments_dir() / f"{env}.yaml"  # the user's file, read only
        self.root = root / name
        shutil.rmtree(self.root, ignore_errors=True)
        (self.root / "environments").mkdir(parents=True)
        self.bake_seconds = bake_seconds
        self.report = ScenarioReport(name, faults=self.faults)
        self.traffic = None
        self.lab_env: dict[str, str] = {}
        self.windows: list[tuple[StepReport, float, float]] = []  # each step's traffic, read at the end
        # (what, call time, end of its command, side every answer must come from)
        self.moves: list[tuple[str, float, float, str]] = []

    # --- set-up -----------------------------------------------------------------------------

    def _copy_environment(self) -> None:
        data = yaml.safe_load(self.source.read_text()) or {}
        if self.name == "rotate-secret" and int(data.get("api_instance_count") or 1) < 2:
            # One API instance cannot restart without an outage: the command refuses it.
            data["api_instance_count"] = 2
        if self.bake_seconds is not None:
            data["cutover_bake_seconds"] = self.bake_seconds
        (self.root / "environments" / f"{self.env}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    def _start_lab(self) -> None:
        from lab import runner

        # This process reads the scenario's copy too (load_environment), as its commands do.
        os.environ["CIEL_ENVIRONMENTS_DIR"] = str(self.root / "environments")
        os.environ["CIEL_WORK_DIR"] = str(self.root / "work")
        ports, _ = runner.up(runner.free_ports())
        self.lab_env = runner.environment(ports)

    def _stop_lab(self) -> None:
        from lab import runner

        os.environ["CIEL_WORK_DIR"] = str(self.root / "work")
        runner.down()

    def command_env(self) -> dict[str, str]:
        return {**os.environ, **self.lab_env, "CIEL_WORK_DIR": str(self.root / "work"),
                "CIEL_ENVIRONMENTS_DIR": str(self.root / "environments"), "COLUMNS": "200"}

    def _zone(self) -> str:
        from infra.config import load_environment

        return load_environment(self.env).zone

    def _lab_api(self, path: str) -> dict:
        request = urllib.request.Request(self.lab_env["SCW_API_URL"] + path,
                                         headers={"X-Auth-Token": self.lab_env["SCW_SECRET_KEY"]})
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return json.loads(answer.read())
        except OSError as error:  # HTTPError included: the rehearsal reports it, it does not crash
            raise CielError(f"rehearsal {self.name}: the lab's API answered GET {path} with {error}") from None

    # --- steps ---------------------------------------------------------------------------------

    def ciel(self, step: str, *args: str, expect: int = 0, on_line=None, note: str = "") -> CommandRun:
        self.log(f"  [{self.name}] {step}: ciel {' '.join(args)}")
        run = run_command([CIEL, *args], self.command_env(), self.log, on_line=on_line)
        report = StepReport(self.name, step, round(run.ended - run.started, 1), run.returncode == expect, note=note)
        self.windows.append((report, run.started, run.ended))
        self.report.steps.append(report)
        if run.returncode != expect:
            raise CielError(f"rehearsal {self.name}: `ciel {' '.join(args)}` exited {run.returncode} (expected "
                            f"{expect}):\n{run.tail()}")
        return run

    def _load_balancer_address(self, zone: str) -> str:
        lbs = self._lab_api(f"/lb/v1/zones/{zone}/lbs").get("lbs") or []
        addresses = [ip["ip_address"] for lb in lbs for ip in lb.get("ip") or [] if ":" not in ip["ip_address"]]
        if not addresses:
            raise CielError("rehearsal: the phase-1 apply left no load balancer with an IPv4 address")
        return addresses[0]

    def _start_traffic(self) -> None:
        from infra.config import load_environment
        from lab.addresses import require_loopback
        from lab.processes import Supervisor
        from lab.traffic import Traffic
        from toolchain.gotools import ensure_tool

        config = load_environment(self.env)
        address = require_loopback(self._load_balancer_address(config.zone))
        host = config.api_hostname if config.enable_https else None
        self._wait_served(address, host)
        if host:  # TLS to the API's name (SNI, certificate, Host), connections to the LB's address
            url, connect_to, ca_file = f"https://{host}{REQUEST_PATH}", f"{address}:443", self.lab_env["SSL_CERT_FILE"]
        else:
            url, connect_to, ca_file = f"http://{address}{REQUEST_PATH}", None, None
        directory = self.root / "traffic"
        self.traffic = Traffic(Supervisor(directory), directory, ensure_tool("vegeta"))
        self.traffic.start(url, rps=self.rps, max_seconds=TRAFFIC_MAX_SECONDS, connect_to=connect_to, ca_file=ca_file)
        self.log(f"  [{self.name}] traffic: {self.rps} req/s to {url}" + (f" via {address}" if connect_to else ""))

    def _wait_served(self, address: str, tls_host: str | None) -> None:
        """Until the LB answers 200 (instances booted, health checks passed): bounded."""
        from migrate.probes import HttpProber

        prober = HttpProber(address, tls_server_name=tls_host, ca_file=self.lab_env["SSL_CERT_FILE"], path=REQUEST_PATH,
                            timeout=2.0)
        deadline = time.monotonic() + SERVE_TIMEOUT
        started = time.time()
        while prober.probe(tls_host, 1).succeeded == 0:
            if time.monotonic() > deadline:
                raise CielError(f"rehearsal {self.name}: the load balancer at {address} did not answer 200 within "
                                f"{SERVE_TIMEOUT:.0f}s of the phase-1 apply")
            time.sleep(0.5)
        self.report.steps.append(StepReport(self.name, "LB serves (instances healthy)",
                                            round(time.time() - started, 1), True))

    def _replan(self) -> None:
        changes = 0
        for step, args in (("re-plan core", ("plan", "--env", self.env)),
                           ("re-plan phase 2", ("deploy", "phase2", "--env", self.env))):
            changes += self.ciel(step, *args).planned_changes()
        self.report.replan_changes = changes

    def _moved(self, what: str, run: CommandRun, after_text: str, side: str, until_text: str | None = None) -> None:
        """Note the cutover's first frontend change after `after_text` (the switch, a
        rollback): the report gives the seconds from it until every answer comes from `side`
        (looking no further than `until_text`'s line, or the command's end)."""
        begun = run.first(after_text) or run.started
        called = run.first("PUT frontend", begun)
        until = (run.first(until_text, begun) if until_text else None) or run.ended
        if called is not None:
            self.moves.append((what, called, until, side))

    # --- the scenarios ----------------------------------------------------------------------------

    def run(self) -> ScenarioReport:
        self._copy_environment()
        started = time.time()
        try:
            self._start_lab()
            self.ciel("state bootstrap", "state", "bootstrap", "--env", self.env)
            self.ciel("deploy phase1", "deploy", "phase1", "--env", self.env, "--yes")
            self._start_traffic()
            if self.name == "rollout":
                self._rollout()
                return self.report
            if self.name == "rotate-secret":
                self._rotate_secret()
                return self.report
            self.ciel("deploy phase2", "deploy", "phase2", "--env", self.env, "--yes")
            if self.name == "cutover":
                self._cutover_through_retire()
            else:
                self._cutover_and_roll_back("switch")
                self._cutover_and_roll_back("bake")
            self._replan()
        except CielError as error:
            self.report.error = str(error)
        except Exception as error:  # a fault of the rehearsal itself: reported with the rest, exit 1
            self.report.error = f"rehearsal {self.name} failed: {type(error).__name__}: {error}"
        finally:
            self._finish(started)
        return self.report

    def _cutover_through_retire(self) -> None:
        args = ("migrate", "cutover", "--env", self.env, "--yes")
        if "cluster-health" in self.faults:
            self._cutover_with_failing_cluster(args)
            return
        kill = "kill-after-switch" in self.faults

        def on_line(line: str, process) -> None:
            if "lb-api-errors" in self.faults:
                self._lb_api_errors(line)
            if kill and "switch: done" in line:
                process.kill()

        title = "migrate cutover " + ("(killed after the switch)" if kill else "(→ retire)")
        run = self.ciel(title, *args, expect=-9 if kill else 0, on_line=on_line)
        self._moved("switch", run, "switch: started", "cluster")
        if "lb-api-errors" in self.faults:
            self.report.steps[-1].note = f"{sum('retry' in line for _, line in run.lines)} LB calls retried"
        if kill:
            self.ciel("migrate unlock (the killed run's lock)", "migrate", "unlock", "--env", self.env, "--yes")
            self.ciel("migrate cutover (resumed → retire)", *args)
        servers = self._lab_api(f"/instance/v1/zones/{self._zone()}/servers").get("servers") or []
        self.report.servers_left = sum(1 for server in servers if _is_app_server(server["name"]))

    def _lb_api_errors(self, line: str) -> None:
        if "switch: started" not in line:
            return
        body = json.dumps({"path": "^/lb/v1/", "methods": ["POST", "PUT", "DELETE"], "statuses": [409, 429, 500],
                           "seconds": LB_FAULT_SECONDS}).encode()
        request = urllib.request.Request(self.lab_env["SCW_API_URL"] + "/lab/v1/faults", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).close()
        self.log(f"  [{self.name}] fault: LB API answers 409/429/500 to changes for {LB_FAULT_SECONDS}s")

    def _cutover_with_failing_cluster(self, args: tuple[str, ...]) -> None:
        """The cluster's /health fails once the bake starts; the cutover must roll back by
        itself (exit 1), and every failed request must fall inside the worst-case window."""
        from lab.kubernetes.nodes import CLUSTER_FAULT_FILE

        fault_file = self.root / "work" / "lab" / CLUSTER_FAULT_FILE
        began: list[float] = []

        def fail_cluster(line: str, process) -> None:
            if "bake: started" in line and not began:
                fault_file.parent.mkdir(parents=True, exist_ok=True)
                fault_file.touch()
                began.append(time.time())
                self.log(f"  [{self.name}] fault: the cluster's /health answers 503 from now")

        run = self.ciel("migrate cutover (cluster fails in the bake)", *args, expect=1, on_line=fail_cluster)
        fault_file.unlink(missing_ok=True)
        self._moved("switch", run, "switch: started", "cluster", until_text="rolling back")
        self._moved("rollback", run, "rolling back", "instances")
        if not began or run.first("rolled back:") is None:
            raise CielError(f"rehearsal {self.name}: the cutover did not roll back by itself:\n{run.tail()}")
        self.report.fault_window = (began[0], began[0] + self.worst_case_seconds())

    def worst_case_seconds(self) -> float:
        """The documented worst case (`ciel migrate plan` prints it) with this environment's
        numbers and the lab LB's apply time: one poll of the cutover (LB_POLL_SECONDS)."""
        from ciel.migration import LB_POLL_SECONDS, bake_worst_case_seconds, thresholds_for
        from infra.config import load_environment

        config = load_environment(self.env)
        return bake_worst_case_seconds(thresholds_for(config), 2 if config.enable_https else 1, LB_POLL_SECONDS)

    def _rollout(self) -> None:
        """A new image on phase 1: the instances are replaced one at a time behind the LB;
        every answer afterwards comes from the new version, each new server sits at its
        reserved private address, and the re-plan without --image-tag is empty (the deploy
        recorded the tag in the environment file)."""
        tag = ("--image-tag", ROLLOUT_TAG)
        self.ciel(f"deploy phase1 --image-tag {ROLLOUT_TAG}", "deploy", "phase1", "--env", self.env, "--yes", *tag)
        self.report.replan_changes = self.ciel("re-plan phase 1 (no --image-tag)", "deploy", "phase1", "--env",
                                               self.env).planned_changes()
        time.sleep(2)
        recent = [sample for sample in self.traffic.results()[-100:] if sample.backend]
        versions = {sample.version for sample in recent}
        if versions != {ROLLOUT_TAG}:
            raise CielError(f"rehearsal {self.name}: after the rollout the LB still answers with versions {versions}")
        self.report.steps[-1].note = f"answers now from version {ROLLOUT_TAG}; " + self._addresses_kept()

    def _app_servers(self) -> dict[str, str]:
        zone = self._zone()
        return {s["id"]: s["name"] for s in self._lab_api(f"/instance/v1/zones/{zone}/servers").get("servers") or []
                if _is_app_server(s["name"])}

    def _rotate_secret(self) -> None:
        """`ciel secrets rotate` under traffic: every app machine restarts with the new
        version (as its own ciel-secrets fetched it), none is replaced, the re-plan is empty."""
        before = self._app_servers()
        self.ciel(f"secrets rotate {ROTATED_SECRET}", "secrets", "rotate", "--env", self.env, ROTATED_SECRET, "--yes")
        self.report.replan_changes = self.ciel("re-plan phase 1", "deploy", "phase1", "--env",
                                               self.env).planned_changes()
        after = self._app_servers()
        if set(after) != set(before):
            raise CielError(f"rehearsal {self.name}: instances were replaced ({sorted(before.values())} → "
                            f"{sorted(after.values())})")
        region = self._zone().rsplit("-", 1)[0]
        secrets = self._lab_api(f"/secret-manager/v1beta1/regions/{region}/secrets?name={ROTATED_SECRET}")["secrets"]
        newest = max(secret["version_count"] for secret in secrets)
        read = {}
        for server_id, name in sorted(after.items(), key=lambda item: item[1]):
            found = list((self.root / "work").glob(f"**/machines/{server_id}/run/ciel/secret-revisions.json"))
            read[name] = json.loads(found[0].read_text()).get(ROTATED_SECRET) if found else None
        if any(revision != newest for revision in read.values()):
            raise CielError(f"rehearsal {self.name}: not every app process read revision {newest} of "
                            f"{ROTATED_SECRET}: {read}")
        self.report.steps[-2].note = (f"{len(after)} app instances restarted, 0 replaced; each read "
                                      f"{ROTATED_SECRET} revision {newest}")

    def _addresses_kept(self) -> str:
        """Each API server's private NIC holds an address the LB's instance backend targets."""
        from infra.config import load_environment

        zone = load_environment(self.env).zone
        servers = [s for s in self._lab_api(f"/instance/v1/zones/{zone}/servers").get("servers") or []
                   if _is_app_server(s["name"], role="api")]
        pools = [set(backend["pool"]) for lb in self._lab_api(f"/lb/v1/zones/{zone}/lbs").get("lbs") or []
                 for backend in self._lab_api(f"/lb/v1/zones/{zone}/lbs/{lb['id']}/backends").get("backends") or []]
        region = zone.rsplit("-", 1)[0]
        placed = []
        for server in servers:
            ips = self._lab_api(f"/ipam/v1/regions/{region}/ips?resource_id={server['private_nics'][0]['id']}")
            address = next(ip["address"].split("/")[0] for ip in ips["ips"] if ":" not in ip["address"])
            if not any(address in pool for pool in pools):
                raise CielError(f"rehearsal {self.name}: {server['name']} came back at {address}, which no LB "
                                "backend targets")
            placed.append(f"{server['name']} at {address}")
        return "; ".join(placed)

    def _cutover_and_roll_back(self, step: str) -> None:
        self.ciel(f"cutover to {step}", "migrate", "cutover", "--env", self.env, "--stop-after", step)
        run = self.ciel(f"rollback after {step}", "migrate", "rollback", "--env", self.env, "--yes")
        self._moved("rollback", run, "rolling back", "instances")

    def _finish(self, started: float) -> None:
        from lab import traffic

        if self.traffic is not None:
            time.sleep(2)  # answers to requests sent before the last step ended
            self.traffic.stop()
            samples = self.traffic.results()
            for report, start, end in self.windows:
                found = traffic.window_stats(samples, start, end)
                report.requests, report.failed, report.failures = found.requests, found.failed, dict(found.failures)
                report.p50_ms, report.p99_ms = found.p50_ms, found.p99_ms
            for what, called, ended, side in self.moves:
                seconds = traffic.seconds_until_all(samples, called, lambda backend: backend_side(backend) == side,
                                                    until=ended)
                if what == "switch":
                    self.report.switch_seconds = seconds
                else:
                    self.report.rollback_seconds.append(seconds)
            stats = traffic.window_stats(samples, started, time.time())
            self.report.requests, self.report.failed = stats.requests, stats.failed
            self.report.failures = dict(stats.failures)
            if self.report.fault_window:
                start, end = self.report.fault_window
                inside = traffic.window_stats(samples, start, end).failed
                self.report.failed_outside_window = stats.failed - inside
            last = [s.backend for s in samples[-50:] if s.backend]
            self.report.final_backend = backend_side(last[-1]) if last else "none"
        try:
            self._stop_lab()
        except CielError as error:
            self.report.error = self.report.error or f"lab down: {error}"


@dataclass
class RehearsalReport:
    env: str
    rps: int
    bake_seconds: int | None
    scenarios: list[ScenarioReport]

    def as_json(self) -> dict:
        cutover = next((s for s in self.scenarios if s.name == "cutover"), None)
        rollbacks = [seconds for s in self.scenarios for seconds in s.rollback_seconds]
        return {
            "env": self.env,
            "rps": self.rps,
            "bake_seconds": self.bake_seconds,
            "requests": sum(s.requests for s in self.scenarios),
            "failed": sum(s.failed for s in self.scenarios),
            "failures": _merged(s.failures for s in self.scenarios),
            "switch_seconds": cutover.switch_seconds if cutover else None,
            "rollback_seconds": max(rollbacks) if rollbacks else None,
            "replan_changes": sum(s.replan_changes for s in self.scenarios),
            "final_backend": cutover.final_backend if cutover else None,
            "faults": sorted({fault for s in self.scenarios for fault in s.faults}),
            "instances_left_after_retire": cutover.servers_left if cutover else None,
            "ok": self.ok,
            "scenarios": [_scenario_json(s) for s in self.scenarios],
        }

    @property
    def ok(self) -> bool:
        return all(scenario_ok(s) for s in self.scenarios)


def scenario_ok(report: ScenarioReport) -> bool:
    """No error, empty re-plans, and no failed request — or, with the cluster failing on
    purpose, none outside the documented worst-case window."""
    if report.error or report.replan_changes:
        return False
    if "cluster-health" in report.faults:
        return report.failed_outside_window == 0
    return report.failed == 0


def _merged(dicts) -> dict[str, int]:
    total: dict[str, int] = {}
    for found in dicts:
        for kind, count in found.items():
            total[kind] = total.get(kind, 0) + count
    return total


def _scenario_json(report: ScenarioReport) -> dict:
    return {"name": report.name, "requests": report.requests, "failed": report.failed, "failures": report.failures,
            "switch_seconds": report.switch_seconds, "rollback_seconds": report.rollback_seconds,
            "replan_changes": report.replan_changes, "final_backend": report.final_backend,
            "servers_left": report.servers_left, "error": report.error, "ok": scenario_ok(report),
            "faults": {fault: FAULTS[fault] for fault in report.faults},
            "fault_window": list(report.fault_window) if report.fault_window else None,
            "failed_outside_window": report.failed_outside_window,
            "steps": [vars(step) for step in report.steps]}


def rehearse(env: str, *, rps: int, bake_seconds: int | None, scenarios: tuple[str, ...] = SCENARIOS,
             log: Callable[[str], None], faults: tuple[str, ...] = ()) -> RehearsalReport:
    from infra.config import load_environment

    if not 1 <= rps <= MAX_RPS:
        raise UsageError(f"--rps {rps}: choose 1 to {MAX_RPS} requests per second")
    for fault in faults:
        if fault not in FAULTS:
            raise UsageError(f"--fault {fault!r}: choose from {', '.join(FAULTS)}")
    if "cluster-health" in faults and len(faults) > 1:
        raise UsageError("--fault cluster-health ends the cutover with a rollback: run it alone")
    load_environment(env)  # a wrong name or a broken file stops here, before any lab starts
    from lab import runner

    if runner.running_ports() is not None:
        # Labs share the loopback addresses their data planes serve (the first LB of each is
        # 127.203.113.1): the rehearsal's would clash with this one's.
        raise UsageError(f"a lab is running for this checkout ({runner.lab_dir()}): its load balancers and apps "
                         "would clash with the rehearsal's on loopback. Stop it first: `ciel lab down`")
    root = paths.work_dir() / "rehearsal" / env
    source = paths.environments_dir() / f"{env}.yaml"  # before any scenario points CIEL_ENVIRONMENTS_DIR at its copy
    previous = {name: os.environ.get(name) for name in ("CIEL_WORK_DIR", "CIEL_ENVIRONMENTS_DIR")}
    reports = []
    try:
        for name in scenarios:
            log(f"rehearsal of {env}: scenario {name}")
            reports.append(Scenario(name, env, root, rps=rps, bake_seconds=bake_seconds, log=log, faults=faults,
                                    source=source).run())
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return RehearsalReport(env, rps, bake_seconds, reports)
