"""The cutover against a local fake of the Scaleway LB and Instance APIs (through the real
SDK) and of the Kubernetes API (through the real client), with real HTTP traffic through
a real proxy that routes like the load balancer, and faults injected.

Checked everywhere: every public frontend routes to a backend with a passing server (the
fake watches it on every API call and every health change), and on the happy path not
one request fails.
"""

from __future__ import annotations

import pytest
from scaleway import Client
from scaleway_core.api import ScalewayException

from foundation.errors import CielError
from infra.config import load_environment
from migrate.cluster import ClusterSide
from migrate.engine import Cutover
from migrate.instances import Instances
from migrate.loadbalancer import LoadBalancer
from migrate.model import FORWARD, Status, Target, Thresholds
from migrate.probes import HttpProber
from migrate.resilience import RetryPolicy
from migrate.steps import StepFailed
from migrate.store import CutoverStore
from tests.conftest import of_type, run_ciel, synth_core
from tests.fakes.kube_api import KubeApi
from tests.fakes.scaleway_world import ZONE, Traffic, World

ENV = "qa"
API_HOST = "api.qa.test"
PREVIEW_HOST = "preview.qa.test"


class SimulatedCrash(BaseException):
    """Like a kill: nothing catches it, nothing after it runs in that process."""


@pytest.fixture
def world():
    world = World(api_ips=["10.0.0.11", "10.0.0.12"], cluster_ip="10.0.0.200", worker_count=1)
    yield world
    world.close()


@pytest.fixture
def kube():
    kube = KubeApi({"api": 2, "worker": 1})
    yield kube
    kube.close()


@pytest.fixture
def qa_env(environments_dir):
    (environments_dir / f"{ENV}.yaml").write_text(
        "# QA: an environment in phase 2\ntier: mvp\nprivate_network_cidr: 10.0.0.0/24\nphase: 2\n"
        'api_instance_count: 2\nimage_tag: "1.0.0"\n')
    return environments_dir / f"{ENV}.yaml"


def target_of(world: World) -> Target:
    frontends = sorted(world.frontends.values(), key=lambda f: f["name"] != "https")
    return Target(
        zone=ZONE, lb_id=world.lb_id, lb_address=world.proxy_address, public_host=API_HOST,
        preview_host=PREVIEW_HOST, frontend_ids=[f["id"] for f in frontends],
        instance_backend_id=world.backends["instances"]["id"], cluster_backend_id=world.backends["cluster"]["id"],
        instance_ips=list(world.backends["instances"]["pool"]),
        api_server_ids=[s.id for s in world.instances.values() if s.role == "api"],
        worker_server_ids=[s.id for s in world.instances.values() if s.role == "worker"])


THRESHOLDS = Thresholds(probe_requests=20, min_success_ratio=0.99, max_p95_ms=500, bake_seconds=0.6,
                        bake_check_interval=0.2, in_flight_seconds=0.2, worker_stop_seconds=0.5, worker_replicas=2,
                        wait_timeout=5.0)


LB_POLL_SECONDS = 0.02  # how often the tool reads the LB's status while a change is applied


def make_cutover(world: World, kube: KubeApi, store_dir, *, after_step=None, confirm=True, log=None) -> Cutover:
    from infra.config.loader import record_settings

    client = Client(access_key="SCWABCDEFGHIJKLMNOPQ", secret_key="11111111-2222-4333-8444-555555555555",
                    default_project_id="66666666-7777-4888-8999-000000000000", default_zone=ZONE,
                    default_region="fr-par", api_url=world.api_url)
    policy = RetryPolicy(attempts=5, first_delay=0.01, max_delay=0.05, timeout=5)
    lines = log if log is not None else []
    return Cutover(
        CutoverStore(ENV, store_dir),
        lb=LoadBalancer(client, ZONE, world.lb_id, log=lines.append, policy=policy, poll_seconds=LB_POLL_SECONDS,
                        wait_timeout=10),
        instances=Instances(client, ZONE, log=lines.append, policy=policy, poll_seconds=0.02),
        cluster=ClusterSide.connect(kube.url, "test-token", None, log=lines.append),
        prober=HttpProber(world.proxy_address),
        log=lines.append,
        confirm_retire=lambda question: confirm,
        retire=lambda: record_settings(ENV, traffic="cluster", instances_retired=True),
        after_step=after_step)


def assert_on_cluster(world: World, kube: KubeApi) -> None:
    assert world.frontend_backend_name() == {"cluster"}
    assert world.backends["instances"]["pool"] == []
    assert {s.state for s in world.instances.values()} == {"stopped"}
    assert kube.replicas["worker"] >= THRESHOLDS.worker_replicas and kube.ready["worker"] >= THRESHOLDS.worker_replicas
    assert world.routes == {}


def assert_on_instances(world: World) -> None:
    assert world.frontend_backend_name() == {"instances"}
    assert sorted(world.backends["instances"]["pool"]) == ["10.0.0.11", "10.0.0.12"]
    assert {s.state for s in world.instances.values() if s.role == "api"} <= {"running", "starting"}
    assert world.routes == {}


def assert_configuration_matches(world: World) -> None:
    """No drift: the recorded environment declares the backend the LB really uses."""
    config = load_environment(ENV)
    assert config.phase == 2
    stack = synth_core(ENV)
    names = {name: body["name"] for name, body in stack["resource"]["scaleway_lb_backend"].items()}
    declared = {names[f["backend_id"].split(".")[1]] for f in of_type(stack, "scaleway_lb_frontend")}
    assert declared == world.frontend_backend_name() == {config.traffic}


def test_happy_path_moves_traffic_with_zero_failed_requests_and_records_it(world, kube, qa_env, tmp_path):
    with Traffic(world.proxy_address, API_HOST) as traffic:
        record = make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS)
    assert record.status == Status.DONE.value and record.completed == [s.value for s in FORWARD]
    assert_on_cluster(world, kube)
    assert world.violations == []
    assert traffic.failed == [] and traffic.ok > 50
    assert traffic.served_by.get("instance") and traffic.served_by.get("cluster")
    # The preview route existed before production moved, and is gone after.
    assert ("POST", f"/lb/v1/zones/{ZONE}/routes") in world.calls
    config = load_environment(ENV)
    assert (config.traffic, config.instances_retired) == ("cluster", True)
    assert_configuration_matches(world)


def test_after_the_cutover_the_configuration_matches_the_load_balancer(world, kube, qa_env, tmp_path):
    """No drift: what the recorded configuration declares is what the LB now does."""
    make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS)
    assert_configuration_matches(world)
    stack = synth_core(ENV)
    servers = [s["name"] for s in of_type(stack, "scaleway_instance_server")]
    assert servers == [f"ciel-{ENV}-redis"]  # instances retired, the data layer kept


@pytest.mark.parametrize("stop_after", [None] + [s.value for s in FORWARD if s.value != "retire"])
def test_rollback_from_every_state_puts_everything_back_on_the_instances(world, kube, qa_env, tmp_path, stop_after):
    cutover = make_cutover(world, kube, tmp_path)
    if stop_after is None:
        cutover.plan(ENV, target_of(world), THRESHOLDS)
    else:
        cutover.run(ENV, target_of(world), THRESHOLDS, stop_after=stop_after)
    with Traffic(world.proxy_address, API_HOST) as traffic:
        record = cutover.rollback("test")
        world.wait_for_health()
    assert record.status == Status.ROLLED_BACK.value
    assert_on_instances(world)
    assert world.violations == []
    assert traffic.failed == []
    assert_configuration_matches(world)


@pytest.mark.parametrize("crash_after", [s.value for s in FORWARD])
def test_a_crash_after_any_step_resumes_to_the_same_final_state(world, kube, qa_env, tmp_path, crash_after):
    def crash(step: str) -> None:
        if step == crash_after:
            raise SimulatedCrash(step)

    with pytest.raises(SimulatedCrash):
        make_cutover(world, kube, tmp_path, after_step=crash).run(ENV, target_of(world), THRESHOLDS)
    assert CutoverStore(ENV, tmp_path).load().completed[-1] == crash_after
    record = make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS)  # a new process, resuming
    assert record.status == Status.DONE.value and record.completed == [s.value for s in FORWARD]
    assert_on_cluster(world, kube)
    assert world.violations == []
    starts = [e["event"] for e in record.history if e["event"].endswith(": started")]
    assert len(starts) == len(FORWARD)  # nothing done twice


@pytest.mark.parametrize("crash_after", ["preview", "switch", "bake"])
def test_a_crash_then_a_rollback_ends_on_the_instances(world, kube, qa_env, tmp_path, crash_after):
    def crash(step: str) -> None:
        if step == crash_after:
            raise SimulatedCrash(step)

    with pytest.raises(SimulatedCrash):
        make_cutover(world, kube, tmp_path, after_step=crash).run(ENV, target_of(world), THRESHOLDS)
    make_cutover(world, kube, tmp_path).rollback("after a crash")
    world.wait_for_health()
    assert_on_instances(world)
    assert world.violations == []


def test_api_errors_and_throttling_are_retried(world, kube, qa_env, tmp_path):
    world.inject("PUT", r"/frontends/", 429, count=2)
    world.inject("GET", r"/lbs/[^/]+$", 503, count=2)
    world.inject("POST", r"/routes$", 502, count=1)
    world.inject("GET", r"/backend-stats$", 500, count=1)
    log: list[str] = []
    with Traffic(world.proxy_address, API_HOST) as traffic:
        record = make_cutover(world, kube, tmp_path, log=log).run(ENV, target_of(world), THRESHOLDS)
    assert record.status == Status.DONE.value
    assert sum("retry" in line for line in log) >= 6
    assert all(fault["left"] == 0 for fault in world.faults)
    assert world.violations == [] and traffic.failed == []


def test_a_change_while_the_lb_is_pending_is_refused_by_the_fake(world):
    """The fake enforces what the engine must respect: wait, change, wait."""
    client = Client(access_key="SCWABCDEFGHIJKLMNOPQ", secret_key="11111111-2222-4333-8444-555555555555",
                    default_zone=ZONE, api_url=world.api_url)
    lb = LoadBalancer(client, ZONE, world.lb_id, log=lambda line: None,
                      policy=RetryPolicy(attempts=1, first_delay=0.01, timeout=5))
    lb.set_backend_servers(world.backends["cluster"]["id"], ["10.0.0.200", "10.0.0.11"])  # waits: fine
    world.status, world.pending_left = "pending", 5
    with pytest.raises(ScalewayException) as refused:
        lb.api.set_backend_servers(zone=ZONE, backend_id=world.backends["cluster"]["id"], server_ip=["10.0.0.200"])
    assert refused.value.status_code == 409


def test_a_change_waits_for_the_lbs_instances_when_only_they_are_pending(kube, qa_env, tmp_path):
    """As the provider's recordings show, the real LB object stays `ready` while its
    instances reload a change: the cutover waits on the instances too, and moves traffic
    with no failed request."""
    world = World(api_ips=["10.0.0.11", "10.0.0.12"], cluster_ip="10.0.0.200", worker_count=1,
                  pending_on_instances=True)
    try:
        lines: list[str] = []
        lb = LoadBalancer(sdk_client(world), ZONE, world.lb_id, log=lines.append,
                          policy=RetryPolicy(attempts=3, first_delay=0.01, timeout=5), poll_seconds=0.01)
        world.status, world.pending_left = "pending", 3  # an instance still reloading
        assert lb.status() == "pending"
        lb.wait_settled()
        assert world.pending_left == 0 and lb.status() == "ready"
        with Traffic(world.proxy_address, API_HOST) as traffic:
            record = make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS)
        assert record.status == Status.DONE.value and world.violations == [] and traffic.failed == []
    finally:
        world.close()


def test_a_non_retryable_error_fails_at_once(world, kube, qa_env, tmp_path):
    world.inject("GET", r"/lbs/[^/]+$", 403, count=10)
    with pytest.raises(CielError, match="HTTP 403"):
        make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS)
    assert sum(1 for method, path in world.calls if path.endswith(world.lb_id)) == 1


def test_cluster_backend_turning_unhealthy_during_bake_rolls_back_by_itself(world, kube, qa_env, tmp_path):
    def break_cluster(step: str) -> None:
        if step == "switch":
            world.cluster_app.up = False  # the cluster starts failing /health

    with pytest.raises(CielError, match="rolled back during bake"):
        make_cutover(world, kube, tmp_path, after_step=break_cluster).run(ENV, target_of(world), THRESHOLDS)
    record = CutoverStore(ENV, tmp_path).load()
    assert record.status == Status.ROLLED_BACK.value
    assert "cluster backend" in record.rollback_reason or "probes failed" in record.rollback_reason
    assert_on_instances(world)
    assert load_environment(ENV).traffic == "instances"


def test_an_instance_that_never_drains_stops_the_run_and_can_be_rolled_back(world, kube, qa_env, tmp_path):
    for server in world.instances.values():
        if server.role == "worker":
            server.stop_seconds = None  # hangs in "stopping"
    cutover = make_cutover(world, kube, tmp_path)
    with pytest.raises(StepFailed, match="never drained"):
        cutover.run(ENV, target_of(world), THRESHOLDS)
    record = CutoverStore(ENV, tmp_path).load()
    assert record.current == "drain" and "drain" not in record.completed
    assert world.frontend_backend_name() == {"cluster"}  # production stays where it was healthy
    assert world.violations == []
    cutover.rollback("worker stuck")
    world.wait_for_health()
    assert_on_instances(world)


def test_preflight_refuses_when_the_cluster_is_not_healthy_and_changes_nothing(world, kube, qa_env, tmp_path):
    world.cluster_app.up = False
    world.wait_for_health()
    import time

    time.sleep(0.3)
    calls_before = [c for c in world.calls if c[0] != "GET"]
    with pytest.raises(StepFailed, match="cluster backend is failed"):
        make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS)
    assert [c for c in world.calls if c[0] != "GET"] == calls_before  # not one change
    assert world.frontend_backend_name() == {"instances"}


def test_preflight_refuses_when_a_deployment_is_not_ready(world, kube, qa_env, tmp_path):
    kube.ready["api"] = 1
    with pytest.raises(StepFailed, match="deployment api is not ready"):
        make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS)
    assert world.frontend_backend_name() == {"instances"}


def test_two_runs_cannot_interleave(world, kube, qa_env, tmp_path):
    store = CutoverStore(ENV, tmp_path)
    with store.lock():
        with pytest.raises(CielError, match="holds the lock"):
            make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS)


def test_retire_asks_first_and_a_no_keeps_the_instances(world, kube, qa_env, tmp_path):
    with pytest.raises(CielError, match="retire not confirmed"):
        make_cutover(world, kube, tmp_path, confirm=False).run(ENV, target_of(world), THRESHOLDS)
    record = CutoverStore(ENV, tmp_path).load()
    assert record.completed[-1] == "drain" and record.status == Status.IN_PROGRESS.value
    assert load_environment(ENV).instances_retired is False
    assert make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS).status == Status.DONE.value


def test_deploys_refuse_to_run_while_a_cutover_is_half_way(world, kube, qa_env, tmp_path, monkeypatch):
    from ciel import deploy
    from foundation import paths

    monkeypatch.setenv("CIEL_WORK_DIR", str(tmp_path))
    make_cutover(world, kube, paths.work_dir() / "cutover").run(ENV, target_of(world), THRESHOLDS,
                                                                  stop_after="switch")
    with pytest.raises(CielError, match="a cutover of qa is in progress"):
        deploy.deploy_phase1(ENV)


def test_migrate_plan_prints_the_ordered_calls_and_thresholds_without_credentials():
    result = run_ciel("migrate", "plan", "--env", "prod")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    order = [text.index(marker) for marker in ("preflight: started", "POST route", "PUT frontend <https frontend>",
                                               "bake: started", "action=poweroff", "ASK: Retire", "done:")]
    assert order == sorted(order)
    for threshold in ("success ≥ 99.5%", "p95 ≤ 500 ms", "bake 600s", "'No data' never promotes"):
        assert threshold in text
    assert "Rollback" in text


@pytest.mark.parametrize("kill_after", ["switch", "drain"])
def test_a_killed_process_leaves_a_resumable_record_and_no_lock(world, kube, qa_env, tmp_path, kill_after):
    import json
    import subprocess
    import sys
    from dataclasses import asdict

    from tests.conftest import REPO_ROOT

    args = {"env": ENV, "store": str(tmp_path), "api_url": world.api_url, "kube_url": kube.url,
            "kill_after": kill_after, "target": asdict(target_of(world)), "thresholds": asdict(THRESHOLDS)}
    with Traffic(world.proxy_address, API_HOST) as traffic:
        killed = subprocess.run([sys.executable, "-m", "tests.fakes.cutover_driver", json.dumps(args)],
                                cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert CutoverStore(ENV, tmp_path).load().completed[-1] == kill_after
        record = make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS)  # lock is free
    assert record.status == Status.DONE.value
    assert_on_cluster(world, kube)
    assert world.violations == [] and traffic.failed == []


def test_https_probes_check_the_api_certificate_and_route_by_host_header(tmp_path):
    """A TLS endpoint with a certificate for the API host: the probe connects to the IP,
    checks the certificate against the API host (SNI), and sends the preview Host header."""
    import ssl
    import subprocess
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from migrate.probes import HttpProber

    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={API_HOST}",
                    "-addext", f"subjectAltName=DNS:{API_HOST}"], check=True, capture_output=True)
    seen_hosts = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen_hosts.append(self.headers["Host"])
            self.send_response(200 if self.headers["Host"] == PREVIEW_HOST else 404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{server.server_port}"
    try:
        # Trusting the test certificate the way the system trusts Let's Encrypt's.
        trusting = HttpProber(address, tls_server_name=API_HOST, ca_file=str(cert))
        assert trusting.probe(PREVIEW_HOST, 3).succeeded == 3
        assert trusting.probe(API_HOST, 2).succeeded == 0  # routed elsewhere: 404
        wrong_name = HttpProber(address, tls_server_name="other.test", ca_file=str(cert))
        assert wrong_name.probe(PREVIEW_HOST, 2).succeeded == 0  # certificate does not match: no request sent
    finally:
        server.shutdown()
    assert set(seen_hosts) == {PREVIEW_HOST, API_HOST}


def test_the_rollouts_health_wait_uses_the_load_balancers_own_checks(world, monkeypatch):
    """`deploy phase1 --image-tag` waits between API instances with this; here against the fake."""
    from ciel import credentials
    from ciel.rollout import backend_health_waiter

    monkeypatch.setenv("SCW_API_URL", world.api_url)
    found = credentials.Credentials(live=True, source="test", engine_env={
        "SCW_ACCESS_KEY": "SCWABCDEFGHIJKLMNOPQ", "SCW_SECRET_KEY": "11111111-2222-4333-8444-555555555555",
        "SCW_DEFAULT_PROJECT_ID": "66666666-7777-4888-8999-000000000000"})
    backend = f"{ZONE}/{world.backends['instances']['id']}"
    backend_health_waiter(found, f"{ZONE}/{world.lb_id}", backend, timeout_s=5, poll_s=0.05)()  # all pass: returns
    next(s for s in world.instances.values() if s.role == "api").app.up = False
    import time

    deadline = time.monotonic() + 5
    while "failed" not in world.health.values() and time.monotonic() < deadline:
        time.sleep(0.02)  # until the LB's checks have seen it
    with pytest.raises(CielError, match="backend servers not healthy.*rollout stopped"):
        backend_health_waiter(found, f"{ZONE}/{world.lb_id}", backend, timeout_s=0.5, poll_s=0.05)()
    # Passing again, but held down by the LB (rise count not met): still not healthy.
    api_ip = next(ip for ip, app in world.ip_apps.items() if not app.up)
    world.held_down.add(api_ip)
    world.ip_apps[api_ip].up = True
    world.wait_until(lambda: world.health[api_ip] == "passed" and world.server_state[api_ip] == "starting")
    with pytest.raises(CielError, match="backend servers not healthy.*rollout stopped"):
        backend_health_waiter(found, f"{ZONE}/{world.lb_id}", backend, timeout_s=0.5, poll_s=0.05)()
    world.held_down.clear()
    world.wait_until(lambda: world.server_state[api_ip] == "running")
    backend_health_waiter(found, f"{ZONE}/{world.lb_id}", backend, timeout_s=5, poll_s=0.05)()


# --- the cutover under load (issue 9, defects 6 to 9) ------------------------------------

CLUSTER_IP = "10.0.0.200"


def sdk_client(world: World) -> Client:
    return Client(access_key="SCWABCDEFGHIJKLMNOPQ", secret_key="11111111-2222-4333-8444-555555555555",
                  default_zone=ZONE, default_region="fr-par", api_url=world.api_url)


def test_the_bake_watch_interval_is_a_validated_setting(environments_dir):
    from ciel.migration import thresholds_for
    from foundation.errors import CielError as ConfigError

    (environments_dir / "ww.yaml").write_text('tier: mvp\nprivate_network_cidr: 10.0.0.0/24\nimage_tag: "1.0.0"\n')
    assert thresholds_for(load_environment("ww")).bake_check_interval == 5.0  # the LB health check's cadence
    (environments_dir / "ww.yaml").write_text('tier: mvp\nprivate_network_cidr: 10.0.0.0/24\nimage_tag: "1.0.0"\n'
                                             "cutover_bake_check_interval_seconds: 2\n")
    assert thresholds_for(load_environment("ww")).bake_check_interval == 2.0
    for wrong in (0, 61):
        (environments_dir / "ww.yaml").write_text('tier: mvp\nprivate_network_cidr: 10.0.0.0/24\nimage_tag: "1.0.0"\n'
                                                 f"cutover_bake_check_interval_seconds: {wrong}\n")
        with pytest.raises(ConfigError, match="cutover_bake_check_interval_seconds"):
            load_environment("ww")


def test_migrate_plan_documents_the_bake_watch_and_its_worst_case():
    result = run_ciel("migrate", "plan", "--env", "prod")
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "bake 600s (watched every 5s)" in text
    # fall × (check delay + check timeout) + watch interval + frontends × (apply + one LB poll)
    assert "= 2 × (5s + 3s) + 5s + 2 × (apply + 2s) = 25s + 2 × the LB's apply time" in text
    assert "more time(s)" in text  # the watch's rounds are not printed 120 times


def test_a_cluster_failing_mid_bake_is_rolled_back_within_the_documented_worst_case(kube, environments_dir,
                                                                                      tmp_path):
    """The LB's health-check timing scaled down (a check every 0.5 s, 0.3 s timeout, down
    after 2 failures, a change applied in 0.3 s), the watch at its smallest setting (1 s),
    thresholds from the environment file as `ciel migrate cutover` builds them."""
    import threading
    import time

    from ciel.migration import thresholds_for
    from migrate.model import rollback_worst_case

    (environments_dir / f"{ENV}.yaml").write_text(
        'tier: mvp\nprivate_network_cidr: 10.0.0.0/24\nphase: 2\napi_instance_count: 2\nimage_tag: "1.0.0"\n'
        "cutover_bake_seconds: 20\ncutover_bake_check_interval_seconds: 1\ncutover_probe_requests: 5\n")
    thresholds = thresholds_for(load_environment(ENV))
    world = World(api_ips=["10.0.0.11", "10.0.0.12"], cluster_ip=CLUSTER_IP, check_interval=0.5, check_timeout=0.3,
                  fall=2, rise=2, pending_seconds=0.3)
    failed_at: list[float] = []
    back_at: list[float] = []
    done = threading.Event()

    def fail_cluster() -> None:
        failed_at.append(time.monotonic())
        world.cluster_app.up = False

    def watch_frontends() -> None:  # the moment every frontend is back on the instances, applied
        while not done.is_set():
            if failed_at and world.frontend_backend_name() == {"instances"} and world.lb_status() == "ready":
                back_at.append(time.monotonic())
                return
            time.sleep(0.005)

    def after(step: str) -> None:
        if step == "switch":
            threading.Timer(1.5, fail_cluster).start()  # mid-bake

    watcher = threading.Thread(target=watch_frontends, daemon=True)
    watcher.start()
    target = target_of(world)
    try:
        with pytest.raises(CielError, match="rolled back during bake"):
            make_cutover(world, kube, tmp_path, after_step=after).run(ENV, target, thresholds)
        watcher.join(timeout=5)
    finally:
        done.set()
        world.close()
    bound = rollback_worst_case(fall=world.fall, check_delay=world.check_interval, check_timeout=world.check_timeout,
                                watch_interval=thresholds.bake_check_interval, frontends=len(target.frontend_ids),
                                apply_seconds=world.pending_seconds + LB_POLL_SECONDS)
    assert failed_at and back_at
    took = back_at[0] - failed_at[0]
    assert took <= bound, f"back on the instances {took:.2f}s after the failure; documented worst case {bound:.2f}s"
    record = CutoverStore(ENV, tmp_path).load()
    assert record.status == Status.ROLLED_BACK.value and "cluster backend failed" in record.rollback_reason


def test_a_cluster_server_passing_but_held_down_by_the_lb_is_not_switched_to(world, kube, qa_env, tmp_path):
    """Its check passes again, but the LB holds it down until its rise count is met: not ready."""
    make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS, stop_after="preview")
    world.cluster_app.up = False
    world.wait_until(lambda: world.server_state[CLUSTER_IP] == "stopped")
    world.held_down.add(CLUSTER_IP)
    world.cluster_app.up = True
    world.wait_until(lambda: world.health[CLUSTER_IP] == "passed" and world.server_state[CLUSTER_IP] == "starting")
    changes_before = [c for c in world.calls if c[0] != "GET"]
    with Traffic(world.proxy_address, API_HOST) as traffic:
        with pytest.raises(StepFailed, match="not switching"):
            make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS)
    assert [c for c in world.calls if c[0] != "GET"] == changes_before  # no frontend moved
    assert world.frontend_backend_name() == {"instances"}
    assert world.violations == [] and traffic.failed == []


def test_a_rollback_waits_until_an_instance_is_up_not_only_passing(world, kube, qa_env, tmp_path):
    """After the drain the instances are off; powered on, their checks pass before the LB
    holds them up (rise): the frontends move back only once they are up."""
    import threading
    import time

    cutover = make_cutover(world, kube, tmp_path)
    cutover.run(ENV, target_of(world), THRESHOLDS, stop_after="drain")
    instance_ips = ["10.0.0.11", "10.0.0.12"]
    world.held_down.update(instance_ips)
    outcome: list = []
    with Traffic(world.proxy_address, API_HOST) as traffic:
        rollback = threading.Thread(target=lambda: outcome.append(cutover.rollback("test")), daemon=True)
        rollback.start()
        world.wait_until(lambda: all(world.health[ip] == "passed" and world.server_state[ip] == "starting"
                                     for ip in instance_ips) and world.backends["instances"]["pool"])
        time.sleep(3 * min(1.0, THRESHOLDS.bake_check_interval))  # several reads of the instance backend
        assert rollback.is_alive() and world.frontend_backend_name() == {"cluster"}
        world.held_down.clear()
        rollback.join(timeout=10)
        world.wait_for_health()
    assert outcome and outcome[0].status == Status.ROLLED_BACK.value
    assert_on_instances(world)
    assert world.violations == [] and traffic.failed == []


@pytest.mark.parametrize("unknown_reads", [1, 2])
def test_a_check_in_progress_during_the_bake_is_read_again_not_rolled_back(world, kube, qa_env, tmp_path,
                                                                           unknown_reads):
    """One cluster server, up; its check in progress reads "unknown" once or twice."""
    def after(step: str) -> None:
        if step == "switch":
            world.report_unknown(CLUSTER_IP, unknown_reads)

    log: list[str] = []
    with Traffic(world.proxy_address, API_HOST) as traffic:
        record = make_cutover(world, kube, tmp_path, after_step=after, log=log).run(ENV, target_of(world),
                                                                                   THRESHOLDS)
    assert record.status == Status.DONE.value
    assert world.unknown_reads[CLUSTER_IP] == 0  # the bake did read them
    assert sum("watch: inconclusive" in line for line in log) == unknown_reads
    assert world.violations == [] and traffic.failed == []


def test_no_data_read_after_read_during_the_bake_rolls_back(world, kube, qa_env, tmp_path):
    def after(step: str) -> None:
        if step == "switch":
            world.report_unknown(CLUSTER_IP, 1000)

    with pytest.raises(CielError, match="rolled back during bake"):
        make_cutover(world, kube, tmp_path, after_step=after).run(ENV, target_of(world), THRESHOLDS)
    record = CutoverStore(ENV, tmp_path).load()
    assert record.status == Status.ROLLED_BACK.value
    assert f"no data: {THRESHOLDS.no_data_reads} inconclusive reads in a row" in record.rollback_reason
    assert_on_instances(world)


def test_preflight_reads_a_check_in_progress_again(world, kube, qa_env, tmp_path):
    world.report_unknown(CLUSTER_IP, 1)
    record = make_cutover(world, kube, tmp_path).run(ENV, target_of(world), THRESHOLDS, stop_after="preflight")
    assert record.completed == ["preflight"] and world.unknown_reads[CLUSTER_IP] == 0


@pytest.mark.parametrize("state", ["stopped_in_place", "stopped in place"])  # the SDK's enum; the API's JSON
def test_power_off_leaves_a_server_stopped_in_place_alone(world, state):
    instances = Instances(sdk_client(world), ZONE, log=lambda line: None,
                          policy=RetryPolicy(attempts=1, first_delay=0.01, timeout=5), poll_seconds=0.02)
    server = next(s for s in world.instances.values() if s.role == "worker")
    server.state = state
    instances.power_off(server.id)
    assert world.actions == []  # already off: no action
    instances.power_on(server.id)
    assert world.actions == [(server.id, "poweron")]


def test_preflight_waits_for_a_cluster_backend_on_its_way_up_and_stops_if_it_never_rises(world, kube, qa_env,
                                                                                            tmp_path):
    """Right after `deploy phase2` the LB has seen the cluster pass, not yet rise times in a
    row: the preflight reads again (a bounded number of watch intervals) instead of stopping."""
    from migrate.steps import RISING_READS

    world.cluster_app.up = False
    world.wait_until(lambda: world.server_state[CLUSTER_IP] == "stopped")
    world.held_down.add(CLUSTER_IP)
    world.cluster_app.up = True
    world.wait_until(lambda: world.health[CLUSTER_IP] == "passed" and world.server_state[CLUSTER_IP] == "starting")
    class Log(list):
        def append(self, line: str) -> None:  # the LB lets the server rise after the second wait
            super().append(line)
            if sum("on its way up" in seen for seen in self) == 2:
                world.held_down.clear()

    logs = Log()
    record = make_cutover(world, kube, tmp_path, log=logs).run(ENV, target_of(world), THRESHOLDS,
                                                                       stop_after="preflight")
    assert record.completed == ["preflight"]
    assert any("on its way up" in line for line in logs)

    world.cluster_app.up = False
    world.wait_until(lambda: world.server_state[CLUSTER_IP] == "stopped")
    world.held_down.add(CLUSTER_IP)
    world.cluster_app.up = True
    world.wait_until(lambda: world.health[CLUSTER_IP] == "passed" and world.server_state[CLUSTER_IP] == "starting")
    never_released: list[str] = []
    with pytest.raises(StepFailed, match="cluster backend is failed"):
        make_cutover(world, kube, tmp_path / "again", log=never_released).run(ENV, target_of(world), THRESHOLDS)
    assert sum("on its way up" in line for line in never_released) == RISING_READS  # bounded, then it stops
    assert world.frontend_backend_name() == {"instances"}
