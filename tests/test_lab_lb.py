"""The lab's Load Balancer API under the real provider and the real SDK: the edge exactly as
our constructs synthesize it — dev (HTTP straight to two instances) and prod in phase 2
(Let's Encrypt certificate, HTTPS, the redirecting HTTP frontend, the cluster backend) —
applied, re-planned empty, driven by the cutover's SDK calls, destroyed."""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from tests.conftest import synth_core
from tests.lab_support import apply_then_replan, engine, lab_answer, running_lab

pytestmark = pytest.mark.engine

ZONE = "fr-par-1"
EDGE_TYPES = ("scaleway_vpc", "scaleway_vpc_private_network", "scaleway_lb_ip", "scaleway_lb", "scaleway_lb_backend",
              "scaleway_lb_frontend", "scaleway_lb_certificate")
TERRAFORM_ROUTE_HOST = "canary.ciel.example.com"
CUTOVER_PREVIEW_HOST = "preview.ciel.example.com"


def edge_of(stack: dict, env: str) -> dict:
    """The stack's edge and the network it sits on, each resource renamed `<env>_<name>`.
    The instances' and the cluster's reserved addresses belong to other layers: they
    become literal addresses of the private network."""
    kept = {type_: stack["resource"][type_] for type_ in EDGE_TYPES if type_ in stack["resource"]}
    text = json.dumps(kept)
    for type_, resources in kept.items():
        for name in resources:
            text = text.replace("${" + f"{type_}.{name}.", "${" + f"{type_}.{env}_{name}.")
    addresses = iter(f"10.0.0.{host}" for host in range(10, 250))
    text = re.sub(r"\$\{scaleway_ipam_ip\.[^}]+\.address\}", lambda _: next(addresses), text)
    # depends_on names resources outside the edge (the certificate waits for the DNS record).
    return {type_: {f"{env}_{name}": {key: value for key, value in body.items() if key not in ("//", "depends_on")}
                    for name, body in resources.items()}
            for type_, resources in json.loads(text).items()}


def named(resources: dict, type_: str, construct_id: str) -> str:
    """The renamed resource of one construct (e.g. `https_frontend`) as a reference."""
    return next(f"{type_}.{name}" for name in resources[type_] if f"_{construct_id}_" in name)


def edge_configuration() -> dict:
    dev = edge_of(synth_core("dev", api_instance_count=2), "dev")
    prod = edge_of(synth_core("prod", phase=2), "prod")
    resources = {type_: {**dev.get(type_, {}), **prod.get(type_, {})} for type_ in EDGE_TYPES}
    https = named(prod, "scaleway_lb_frontend", "https_frontend")
    cluster = named(prod, "scaleway_lb_backend", "cluster_backend")
    resources["scaleway_lb_route"] = {"canary": {"frontend_id": "${" + https + ".id}",
                                                 "backend_id": "${" + cluster + ".id}",
                                                 "match_host_header": TERRAFORM_ROUTE_HOST}}
    outputs = {"lb_id": named(prod, "scaleway_lb", "lb"), "https_frontend_id": https, "cluster_backend_id": cluster,
               "instance_backend_id": named(prod, "scaleway_lb_backend", "instance_backend")}
    return {"resource": resources, "output": {key: {"value": "${" + ref + ".id}"} for key, ref in outputs.items()}}


@pytest.fixture(scope="module")
def edge(tmp_path_factory):
    """One lab and one apply for the whole file: a new LB costs an apply one 30 s poll of
    the provider's waiter. The tests run in file order; the last one destroys."""
    directory = tmp_path_factory.mktemp("lb")
    (directory / "tf").mkdir()
    (directory / "tf" / "edge.tf.json").write_text(json.dumps(edge_configuration(), indent=1))
    with running_lab(directory / "work") as lab_env:
        applied, replan, replan_output = apply_then_replan(directory / "tf", lab_env, "")
        outputs = json.loads(engine(directory / "tf", lab_env, "output", "-json").stdout or "{}")
        yield SimpleNamespace(directory=directory / "tf", env=lab_env, applied=applied, replan=replan,
                              replan_output=replan_output,
                              ids={key: value["value"].split("/")[-1] for key, value in outputs.items()})


def test_the_dev_and_prod_edges_apply_through_the_provider_and_the_replan_is_empty(edge):
    assert edge.applied.returncode == 0, edge.applied.stdout[-3000:] + edge.applied.stderr[-3000:]
    # VPC, network, IP, LB, backend, frontend (dev: 6); VPC, network, IP, LB, 2 backends,
    # certificate, 2 frontends (prod: 9); the route.
    assert "Resources: 16 added" in edge.applied.stdout
    # The provider's waiter polled the new LBs through `creating` before they were ready.
    assert re.search(r"scaleway_lb\.\w+: Still creating", edge.applied.stdout)
    assert edge.replan == 0, edge.replan_output[-3000:]


def test_the_cutover_drives_the_terraform_made_edge_through_the_sdk(edge):
    from scaleway import Client
    from scaleway.lb.v1 import LbV1ZonedAPI
    from scaleway_core.api import ScalewayException

    from migrate.loadbalancer import LoadBalancer

    client = Client(access_key=edge.env["SCW_ACCESS_KEY"], secret_key=edge.env["SCW_SECRET_KEY"],
                    default_project_id=edge.env["SCW_DEFAULT_PROJECT_ID"], api_url=edge.env["SCW_API_URL"])
    ids, logs = edge.ids, []
    lb = LoadBalancer(client, ZONE, ids["lb_id"], log=logs.append, poll_seconds=0.01, wait_timeout=5)
    api = LbV1ZonedAPI(client)

    assert lb.status() == "ready"
    health = lb.server_health(ids["instance_backend_id"])
    assert len(health) == 3 and set(health) == set(lb.backend_servers(ids["instance_backend_id"]))
    # Read from the lab's HAProxy: nothing runs at these addresses, so no server passes.
    assert all(server.check != "passed" and server.state != "running" for server in health.values()), health

    lb.set_backend_servers(ids["cluster_backend_id"], ["10.0.0.40", "10.0.0.41"])
    assert sorted(lb.backend_servers(ids["cluster_backend_id"])) == ["10.0.0.40", "10.0.0.41"]
    assert set(lb.server_health(ids["cluster_backend_id"])) == {"10.0.0.40", "10.0.0.41"}

    before = api.get_frontend(zone=ZONE, frontend_id=ids["https_frontend_id"])
    lb.set_frontend_backend(ids["https_frontend_id"], ids["cluster_backend_id"])
    after = api.get_frontend(zone=ZONE, frontend_id=ids["https_frontend_id"])
    assert lb.frontend_backend(ids["https_frontend_id"]) == ids["cluster_backend_id"]
    assert (after.name, after.inbound_port, after.certificate_ids, after.timeout_client) == (
        before.name, before.inbound_port, before.certificate_ids, before.timeout_client)
    lb.set_frontend_backend(ids["https_frontend_id"], ids["instance_backend_id"])

    lb.ensure_host_route(ids["https_frontend_id"], CUTOVER_PREVIEW_HOST, ids["cluster_backend_id"])
    lb.ensure_host_route(ids["https_frontend_id"], CUTOVER_PREVIEW_HOST, ids["instance_backend_id"])
    routes = api.list_routes_all(zone=ZONE, frontend_id=ids["https_frontend_id"])
    previews = [r for r in routes if r.match.host_header == CUTOVER_PREVIEW_HOST]
    assert [r.backend_id for r in previews] == [ids["instance_backend_id"]]
    lb.remove_host_route(ids["https_frontend_id"], CUTOVER_PREVIEW_HOST)
    hosts = [r.match.host_header for r in api.list_routes_all(zone=ZONE, frontend_id=ids["https_frontend_id"])]
    assert hosts == [TERRAFORM_ROUTE_HOST]

    # A change puts the LB in `pending`; a change of the LB itself is refused (409) until it
    # is ready again, which the next read shows.
    changed = api.set_backend_servers(zone=ZONE, backend_id=ids["cluster_backend_id"], server_ip=["10.0.0.42"])
    assert changed.lb.status == "pending"
    with pytest.raises(ScalewayException) as refused:
        api.update_lb(zone=ZONE, lb_id=ids["lb_id"], name="renamed", description="")
    assert refused.value.status_code == 409
    assert refused.value.response.json()["type"] == "transient_state"
    lb.wait_settled()
    assert api.get_lb(zone=ZONE, lb_id=ids["lb_id"]).name != "renamed"


def test_destroy_removes_the_whole_edge_and_what_is_gone_answers_404(edge):
    destroyed = engine(edge.directory, edge.env, "destroy", "-auto-approve", "-input=false")
    assert destroyed.returncode == 0, destroyed.stdout[-3000:] + destroyed.stderr[-3000:]
    assert lab_answer(edge.env, f"/lb/v1/zones/{ZONE}/lbs")[1]["total_count"] == 0
    assert lab_answer(edge.env, f"/lb/v1/zones/{ZONE}/ips")[1]["total_count"] == 0
    assert lab_answer(edge.env, f"/lb/v1/zones/{ZONE}/lbs/{edge.ids['lb_id']}") == (404, {"message": "lbs not Found"})
