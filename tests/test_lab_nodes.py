"""The stand-in for Kapsule's nodes and cloud controller (lab/kubernetes/nodes.py), in a
running lab with its real kube-apiserver: Deployments run as stand-in pods whose status
the API reports, a private-LB Service gets its HAProxy at the reserved IPAM address, and
a changed pod template rolls to new pods behind that address."""

from __future__ import annotations

import base64
import http.client
import tempfile
import time

import pytest
import yaml

from lab.addresses import loopback_for
from tests.lab_support import lab_json, running_lab

PROJECT = "1ab1ab1a-0000-4000-8000-000000000001"
PREFIX = "service.beta.kubernetes.io/scw-loadbalancer-"


def wait_for(what: str, check, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if (found := check()):
                return found
        except Exception:  # the API server still starting
            pass
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout:.0f}s")


def answers(address: str, port: int, count: int = 8) -> list[str]:
    seen = []
    for _ in range(count):
        connection = http.client.HTTPConnection(address, port, timeout=3)
        try:
            connection.request("GET", "/photos")
            seen.append(connection.getresponse().read().decode())
        finally:
            connection.close()
    return seen


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from kubernetes import client

    with running_lab(tmp_path_factory.mktemp("nodes")) as lab_env:
        vpc = lab_json(lab_env, "/vpc/v2/regions/fr-par/vpcs", {"name": "v", "project_id": PROJECT})
        network = lab_json(lab_env, "/vpc/v2/regions/fr-par/private-networks", {
            "name": "pn", "project_id": PROJECT, "vpc_id": vpc["id"], "subnets": ["10.9.0.0/24"]})
        ingress = lab_json(lab_env, "/ipam/v1/regions/fr-par/ips", {
            "project_id": PROJECT, "source": {"private_network_id": network["id"]}, "is_ipv6": False})
        created = lab_json(lab_env, "/k8s/v1/regions/fr-par/clusters", {
            "name": "c", "version": "1.34.6", "cni": "cilium", "project_id": PROJECT})
        # As the provider does: the cluster is usable once it is more than `creating`.
        wait_for("the cluster's control plane", lambda: lab_json(
            lab_env, f"/k8s/v1/regions/fr-par/clusters/{created['id']}")["status"] != "creating")
        kubeconfig = yaml.safe_load(base64.b64decode(lab_json(
            lab_env, f"/k8s/v1/regions/fr-par/clusters/{created['id']}/kubeconfig")["content"]))
        ca = tempfile.NamedTemporaryFile(suffix=".pem", delete=False)
        ca.write(base64.b64decode(kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"]))
        ca.close()
        configuration = client.Configuration(host=kubeconfig["clusters"][0]["cluster"]["server"],
                                             no_proxy="127.0.0.1")
        configuration.api_key = {"authorization": f"Bearer {kubeconfig['users'][0]['user']['token']}"}
        configuration.ssl_ca_cert = ca.name
        api = client.ApiClient(configuration)
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        yield core, apps, ingress["address"].split("/")[0], network["id"], ingress["id"]


def deployment(image: str, replicas: int) -> dict:
    labels = {"app": "api"}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "api", "namespace": "ciel"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [{
                         "name": "api", "image": image, "env": [{"name": "APP_MODE", "value": "api"}],
                         "ports": [{"containerPort": 8080}],
                         "readinessProbe": {"httpGet": {"path": "/health", "port": 8080}}}]}}}}


def test_a_deployment_runs_as_pods_behind_the_private_lb_and_rolls_to_a_new_image(cluster):
    core, apps, address, network_id, ingress_id = cluster
    core.create_namespace({"metadata": {"name": "ciel"}})
    apps.create_namespaced_deployment("ciel", deployment("rg.fr-par.scw.cloud/ns/ciel:1.0", 2))
    core.create_namespaced_service("ciel", {"metadata": {"name": "api", "annotations": {
        f"{PREFIX}private": "true", f"{PREFIX}pn-ids": network_id, f"{PREFIX}private-ip-ids": ingress_id}},
        "spec": {"type": "LoadBalancer", "selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": 8080}]}})

    wait_for("2 ready replicas", lambda: apps.read_namespaced_deployment("api", "ciel").status.ready_replicas == 2)
    status = apps.read_namespaced_deployment("api", "ciel").status
    assert status.updated_replicas == 2 and status.observed_generation == 1
    wait_for("the Service's address", lambda: core.read_namespaced_service("api", "ciel").status.load_balancer.ingress)
    assert core.read_namespaced_service("api", "ciel").status.load_balancer.ingress[0].ip == address

    # The reserved private address is served on its loopback stand-in, by both pods.
    served = wait_for("both pods behind the private LB (each once its health check passed)",
                      lambda: (found := answers(loopback_for(address), 80)) and
                      len({body.split()[0] for body in found}) == 2 and found)
    assert all("version=1.0" in body for body in served)

    apps.patch_namespaced_deployment("api", "ciel", {"spec": {"template": {"spec": {"containers": [
        {"name": "api", "image": "rg.fr-par.scw.cloud/ns/ciel:1.1"}]}}}})
    wait_for("the rollout to 1.1", lambda: all("version=1.1" in body for body in answers(loopback_for(address), 80)))
    wait_for("the new generation observed", lambda: apps.read_namespaced_deployment("api", "ciel").status
             .observed_generation == 2)

    apps.patch_namespaced_deployment_scale("api", "ciel", {"spec": {"replicas": 1}})
    wait_for("one replica", lambda: apps.read_namespaced_deployment("api", "ciel").status.replicas == 1)
    assert len({body.split()[0] for body in answers(loopback_for(address), 80)}) == 1
