"""The lab's Kapsule API: the real provider applies our cluster and pool (as
infra/constructs/cluster.py declares them) on a VPC private network, re-plans, destroys."""

from __future__ import annotations

import base64
import json
from urllib.parse import urlsplit

import pytest
import yaml

from lab import conformance
from lab.api import Lab
from lab.families import k8s, register_all
from lab.store import Store
from tests.lab_support import apply_then_replan, engine, running_lab

CLUSTER_HCL = """
resource "scaleway_vpc" "main" {
  name = "kap-vpc"
}
resource "scaleway_vpc_private_network" "main" {
  name   = "kap-pn"
  vpc_id = scaleway_vpc.main.id
  ipv4_subnet { subnet = "10.0.0.0/24" }
}
resource "scaleway_k8s_cluster" "main" {
  name                        = "ciel-dev"
  type                        = "kapsule"
  version                     = "1.34"
  cni                         = "cilium"
  private_network_id          = scaleway_vpc_private_network.main.id
  delete_additional_resources = false
  tags                        = ["app=ciel", "environment=dev", "layer=cluster"]
  auto_upgrade {
    enable                        = true
    maintenance_window_day        = "sunday"
    maintenance_window_start_hour = 3
  }
  autoscaler_config {
    balance_similar_node_groups  = true
    estimator                    = "binpacking"
    expander                     = "least_waste"
    scale_down_delay_after_add   = "10m"
    scale_down_unneeded_time     = "10m"
    max_graceful_termination_sec = 340
  }
}
resource "scaleway_k8s_pool" "main" {
  cluster_id          = scaleway_k8s_cluster.main.id
  name                = "ciel-dev-default"
  node_type           = "DEV1-M"
  size                = 1
  min_size            = 1
  max_size            = 3
  autoscaling         = true
  autohealing         = true
  public_ip_disabled  = true
  container_runtime   = "containerd"
  zone                = "fr-par-1"
  wait_for_pool_ready = true
  upgrade_policy {
    max_surge       = 1
    max_unavailable = 1
  }
  tags = ["app=ciel", "environment=dev", "layer=cluster"]
}
output "kube" {
  value     = scaleway_k8s_cluster.main.kubeconfig[0]
  sensitive = true
}
output "apiserver_url" {
  value = scaleway_k8s_cluster.main.apiserver_url
}
output "pool" {
  value = {
    version = scaleway_k8s_pool.main.version, status = scaleway_k8s_pool.main.status,
    nodes = scaleway_k8s_pool.main.nodes, root_volume_type = scaleway_k8s_pool.main.root_volume_type
  }
}
"""


@pytest.mark.engine
def test_kubelet_args_outside_the_versions_list_are_refused_as_by_kapsule(tmp_path):
    """Our pool once asked for shutdownGracePeriod, which no Kapsule version offers."""
    refused_hcl = CLUSTER_HCL.replace('  tags = ["app=ciel", "environment=dev", "layer=cluster"]\n}',
                                      '  kubelet_args = { shutdownGracePeriod = "370s" }\n'
                                      '  tags = ["app=ciel", "environment=dev", "layer=cluster"]\n}', 1)
    assert refused_hcl != CLUSTER_HCL
    with running_lab(tmp_path / "work") as lab_env:
        applied, _, _ = apply_then_replan(tmp_path / "tf", lab_env, refused_hcl)
    assert applied.returncode != 0 and "shutdownGracePeriod" in applied.stderr + applied.stdout


@pytest.mark.engine
def test_the_provider_applies_our_cluster_and_pool_on_a_private_network_replans_empty_and_destroys(tmp_path):
    with running_lab(tmp_path / "work") as lab_env:
        directory = tmp_path / "tf"
        applied, replan, output = apply_then_replan(directory, lab_env, CLUSTER_HCL)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "4 added" in applied.stdout
        assert replan == 0, output

        outputs = json.loads(engine(directory, lab_env, "output", "-json").stdout)
        destroyed = engine(directory, lab_env, "destroy", "-auto-approve", "-input=false")

    kube_port = urlsplit(lab_env["SCW_API_URL"]).port + k8s.KUBE_API_PORT_OFFSET
    kube = outputs["kube"]["value"]
    assert kube["host"] == outputs["apiserver_url"]["value"] == f"https://127.0.0.1:{kube_port}"
    assert base64.b64decode(kube["cluster_ca_certificate"]) == (tmp_path / "work" / "lab" / "ca.pem").read_bytes()
    config = yaml.safe_load(kube["config_file"])
    assert config["clusters"][0]["cluster"]["server"] == kube["host"]
    assert config["users"][0]["user"]["token"] == kube["token"] and len(kube["token"]) >= 32
    pool = outputs["pool"]["value"]
    assert pool["version"] == "1.34.6" and pool["status"] == "ready" and pool["root_volume_type"] == "l_ssd"
    assert [(node["status"], node["public_ip"]) for node in pool["nodes"]] == [("ready", "")]  # no public IP
    addresses = [ip["address"] for ip in pool["nodes"][0]["private_ips"]]  # booked in IPAM, on the network
    assert len(addresses) == 2 and any(address.startswith("10.0.0.") for address in addresses), addresses
    assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
    assert "4 destroyed" in destroyed.stdout


def _lab() -> Lab:
    return register_all(Lab(Store()))


def _call(lab: Lab, method: str, path: str, body: dict | None = None, **query: str) -> tuple[int, dict]:
    return lab.handle(method, "/k8s/v1/regions/fr-par" + path, {k: [v] for k, v in query.items()}, body)


def _cluster(lab: Lab, **fields) -> dict:
    status, cluster = _call(lab, "POST", "/clusters", {"name": "c", "version": "1.34.6", "cni": "cilium",
                                                       "project_id": "p", **fields})
    assert status == 200, cluster
    return cluster


def _network(lab: Lab) -> str:
    return lab.handle("POST", "/vpc/v2/regions/fr-par/private-networks", {}, {"name": "pn", "project_id": "p"})[1]["id"]


def test_a_cluster_waits_for_a_pool_then_is_ready_and_takes_its_pools_nodes_and_addresses_when_deleted():
    lab = _lab()
    cluster = _cluster(lab, private_network_id=_network(lab))
    assert cluster["status"] == "creating"
    assert _call(lab, "GET", f"/clusters/{cluster['id']}")[1]["status"] == "pool_required"
    _, pool = _call(lab, "POST", f"/clusters/{cluster['id']}/pools",
                    {"name": "p", "node_type": "PRO2-XS", "size": 2, "min_size": 1, "max_size": 3})
    assert (pool["status"], pool["node_type"], pool["root_volume_type"]) == ("scaling", "pro2_xs", "sbs_5k")
    assert _call(lab, "GET", f"/pools/{pool['id']}")[1]["status"] == "ready"
    assert _call(lab, "GET", f"/clusters/{cluster['id']}")[1]["status"] == "ready"
    nodes = _call(lab, "GET", f"/clusters/{cluster['id']}/nodes", pool_id=pool["id"], status="unknown")[1]
    assert nodes["total_count"] == 2 and {node["status"] for node in nodes["nodes"]} == {"ready"}
    assert len(lab.objects("ip")) == 4  # an IPv4 and an IPv6 address per node

    _call(lab, "PATCH", f"/pools/{pool['id']}", {"size": 1})
    assert _call(lab, "GET", f"/clusters/{cluster['id']}/nodes")[1]["total_count"] == 1
    assert len(lab.objects("ip")) == 2
    refused = _call(lab, "PATCH", f"/pools/{pool['id']}", {"min_size": 5})
    assert refused[0] == 400 and refused[1]["details"][0]["argument_name"] == "max_size"

    deleted = _call(lab, "DELETE", f"/clusters/{cluster['id']}", with_additional_resources="false")
    assert deleted[0] == 200 and deleted[1]["status"] == "deleting"
    assert _call(lab, "GET", f"/clusters/{cluster['id']}")[0] == 404
    assert _call(lab, "GET", f"/pools/{pool['id']}")[0] == 404
    assert not lab.objects("node") and not lab.objects("ip")


def test_only_offered_versions_are_accepted_and_the_kubeconfig_points_at_loopback():
    lab = _lab()
    refused = _call(lab, "POST", "/clusters", {"name": "old", "version": "1.32.13", "cni": "cilium"})
    assert refused[0] == 400 and refused[1]["details"][0]["argument_name"] == "version"
    assert _call(lab, "GET", "/versions/1.32.13")[0] == 404
    cluster = _cluster(lab, auto_upgrade={"enable": True, "maintenance_window": {"start_hour": 3, "day": "sunday"}})
    assert cluster["upgrade_available"] and cluster["auto_upgrade"] == {
        "enabled": True, "maintenance_window": {"start_hour": 3, "day": "sunday"}}
    content = _call(lab, "GET", f"/clusters/{cluster['id']}/kubeconfig")[1]["content"]
    config = yaml.safe_load(base64.b64decode(content))
    assert urlsplit(config["clusters"][0]["cluster"]["server"]).hostname == "127.0.0.1"
    assert config["users"][0]["user"]["token"] == lab.store.meta[cluster["id"]]["token"]


def test_every_kapsule_route_answers_with_the_keys_and_types_the_real_api_returns():
    from toolchain.pins import SCALEWAY

    lab = _lab()
    cluster = _cluster(lab, private_network_id=_network(lab))["id"]
    _, pool = _call(lab, "POST", f"/clusters/{cluster}/pools",
                    {"name": "p", "node_type": "DEV1-M", "size": 1, "min_size": 1, "max_size": 2})
    node = _call(lab, "GET", f"/clusters/{cluster}/nodes")[1]["nodes"][0]["id"]
    for method, path, body in (
            ("GET", "/versions", None), ("GET", "/versions/1.35.3", None), ("GET", "/cluster-types", None),
            ("GET", "/clusters", None), ("GET", f"/clusters/{cluster}", None),
            ("GET", f"/clusters/{cluster}/kubeconfig", None), ("GET", f"/clusters/{cluster}/available-types", None),
            ("PATCH", f"/clusters/{cluster}", {"tags": ["t"], "autoscaler_config": {"expander": "least_waste"}}),
            ("POST", f"/clusters/{cluster}/upgrade", {"version": "1.35.3", "upgrade_pools": True}),
            ("POST", f"/clusters/{cluster}/set-type", {"type": "kapsule-dedicated-4"}),
            ("GET", f"/clusters/{cluster}/pools", None), ("GET", f"/pools/{pool['id']}", None),
            ("PATCH", f"/pools/{pool['id']}", {"size": 2}), ("GET", f"/nodes/{node}", None),
            ("DELETE", f"/pools/{pool['id']}", None), ("DELETE", f"/clusters/{cluster}", None)):
        status, answer = _call(lab, method, path, body)
        assert status == 200, (method, path, answer)

    recorded = conformance.recordings(conformance.provider_module(SCALEWAY.source.module, SCALEWAY.source.version))
    served = {f"{method} {template}": body for (method, template), body in lab.shapes.items() if "/k8s/" in template}
    report = conformance.compare(conformance.lab_shapes([served]), recorded.by_route(lab))
    assert report.ok, report.text()
    assert {endpoint for endpoint in served} - set(report.compared) == {
        "GET /k8s/v1/regions/{region}/nodes/{id}", "GET /k8s/v1/regions/{region}/cluster-types"}  # never recorded
