"""The lab's Kubernetes API server is a real kube-apiserver: the official client creates
objects, reads them back with the server's defaults, and meets its validation (422) and
its authentication (401) — tokens answered by the lab's TokenReview webhook."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest
import yaml

from lab import runner
from lab.api import Lab
from lab.families import register_all
from lab.kubernetes.apiserver import KubeApiServer, admin_client
from lab.processes import Supervisor
from lab.server import serve_api
from lab.store import Store
from tests.lab_support import free_port
from toolchain import kubernetes_build
from toolchain.pins import KUBERNETES_RELEASE


def _lab_call(port: int, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def _create_cluster(port: int, name: str) -> dict:
    status, cluster = _lab_call(port, "POST", "/k8s/v1/regions/fr-par/clusters", {
        "name": name, "version": "1.34.6", "cni": "cilium", "project_id": "1ab1ab1a-0000-4000-8000-000000000001"})
    assert status == 200, cluster
    return cluster


def _kubeconfig(port: int, cluster_id: str) -> dict:
    status, answer = _lab_call(port, "GET", f"/k8s/v1/regions/fr-par/clusters/{cluster_id}/kubeconfig")
    assert status == 200, answer
    return yaml.safe_load(base64.b64decode(answer["content"]))


@pytest.fixture(scope="module")
def lab_with_apiserver(tmp_path_factory):
    missing = [path for path in (kubernetes_build.kube_apiserver_path(), kubernetes_build.etcd_path())
               if not path.exists()]
    if missing:
        pytest.fail(f"kube-apiserver/etcd not built ({', '.join(map(str, missing))}); build them once with:\n"
                    f"  {kubernetes_build.BUILD_HINT}", pytrace=False)
    directory = tmp_path_factory.mktemp("lab")
    port = runner.free_ports().api  # and the five after it: its Kubernetes API server, etcd
    (directory / "lab.json").write_text(json.dumps({"api": port, "s3": port + 1, "proxy": port + 2}))
    lab = register_all(Lab(Store(directory / "state.json")))
    server = serve_api(lab, port)
    supervisor = Supervisor(directory)
    kube = KubeApiServer(directory, port, supervisor)
    try:
        started = time.monotonic()
        kube.start()
        waited = kube.wait_ready(timeout=120)
        print(f"\nkube-apiserver ready {time.monotonic() - started:.1f} s after start ({waited:.1f} s after etcd)")
        yield port, kube
    finally:
        kube.stop()
        supervisor.stop_all()
        server.shutdown()
        server.server_close()


def test_token_review_answers_cluster_tokens_only(tmp_path):
    lab = register_all(Lab(Store(tmp_path / "state.json")))
    server = serve_api(lab, free_port())
    port = server.server_address[1]
    try:
        cluster = _create_cluster(port, "review")
        token = _kubeconfig(port, cluster["id"])["users"][0]["user"]["token"]
        review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}
        status, answer = _lab_call(port, "POST", "/lab/v1/tokenreview", review)
        assert status == 200 and answer["kind"] == "TokenReview"
        assert answer["status"]["authenticated"] is True
        assert answer["status"]["user"]["username"] == "kapsule-admin"
        assert "system:masters" in answer["status"]["user"]["groups"]
        for wrong in (token[:-1] + ("a" if token[-1] != "a" else "b"), ""):
            status, answer = _lab_call(port, "POST", "/lab/v1/tokenreview", {**review, "spec": {"token": wrong}})
            assert status == 200 and answer["status"] == {"authenticated": False}
    finally:
        server.shutdown()
        server.server_close()


def test_real_api_server_defaults_validates_and_authenticates(lab_with_apiserver):
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    port, kube = lab_with_apiserver
    # A cluster made after the API server started: its token works at once (webhook).
    cluster = _create_cluster(port, "shop")
    kubeconfig = _kubeconfig(port, cluster["id"])
    assert kubeconfig["clusters"][0]["cluster"]["server"] == kube.api_url
    # The kubeconfig alone (server, lab CA, token) is enough for the official client.
    from_kubeconfig = config.new_client_from_config_dict(kubeconfig)
    assert client.VersionApi(from_kubeconfig).get_code().git_version == KUBERNETES_RELEASE

    api = admin_client(kube.api_url, kubeconfig["users"][0]["user"]["token"], kube.ca_path)
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="shop")))
    labels = {"app": "web"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2, selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(containers=[client.V1Container(name="web", image="nginx:1.27")]))))
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment("shop", deployment)

    stored = apps.read_namespaced_deployment("web", "shop")
    # Defaults only the real API server's registry applies.
    assert stored.spec.strategy.type == "RollingUpdate"
    assert stored.spec.strategy.rolling_update.max_surge == "25%"
    assert stored.spec.progress_deadline_seconds == 600
    assert stored.spec.revision_history_limit == 10
    container = stored.spec.template.spec.containers[0]
    assert container.termination_message_path == "/dev/termination-log"
    assert container.image_pull_policy == "IfNotPresent"
    assert stored.spec.template.spec.restart_policy == "Always"
    assert stored.metadata.generation == 1 and stored.metadata.uid

    # Validation: a selector that does not select the template's labels.
    broken = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="broken"),
        spec=client.V1DeploymentSpec(
            selector=client.V1LabelSelector(match_labels={"app": "other"}),
            template=deployment.spec.template))
    with pytest.raises(ApiException) as refused:
        apps.create_namespaced_deployment("shop", broken)
    assert refused.value.status == 422
    assert "selector" in refused.value.body and "does not match template" in refused.value.body

    # Authentication: a token no cluster has.
    stranger = admin_client(kube.api_url, "not-a-cluster-token", kube.ca_path)
    with pytest.raises(ApiException) as unauthorized:
        client.CoreV1Api(stranger).list_namespace()
    assert unauthorized.value.status == 401
    # The webhook, not a cache, decided: the right token still works afterwards.
    assert "shop" in [item.metadata.name for item in client.CoreV1Api(api).list_namespace().items]


def test_missing_binaries_fail_with_build_command(tmp_path):
    kube = KubeApiServer(tmp_path, 40000, Supervisor(tmp_path), kube_apiserver=tmp_path / "absent",
                         etcd=tmp_path / "absent-etcd")
    from lab.kubernetes.apiserver import LabToolMissing

    with pytest.raises(LabToolMissing, match="ensure_lab_tools"):
        kube.start()
    assert not kube.running()


def test_build_module_replaces_each_staging_module_with_its_published_release():
    upstream = """module k8s.io/kubernetes

require (
\tk8s.io/api v0.0.0
\tgithub.com/onsi/ginkgo/v2 v2.21.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tgithub.com/example/fork => github.com/example/fork v1.2.3
)
"""
    staging = kubernetes_build.staging_modules(upstream)
    assert staging == ["k8s.io/api", "k8s.io/client-go"]
    go_mod = kubernetes_build.kube_build_go_mod("v1.34.4", "v0.34.4", staging)
    assert "require k8s.io/kubernetes v1.34.4" in go_mod
    assert "\tk8s.io/api => k8s.io/api v0.34.4\n" in go_mod
    assert "\tk8s.io/client-go => k8s.io/client-go v0.34.4\n" in go_mod
    assert "./staging" not in go_mod and "example/fork" not in go_mod
    from foundation.errors import ToolchainError

    with pytest.raises(ToolchainError):
        kubernetes_build.kube_build_go_mod("v1.34.4", "v0.34.4", [])

