"""Conformance of the lab with the real API: for every endpoint the lab serves while the
real provider applies, re-plans and destroys the dev stack (phase 2, as ciel synthesizes
it), the JSON keys and value types of its responses against those the provider's
recordings of the real API show."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import yaml

from lab import conformance
from lab.api import Lab
from lab.families import register_all
from lab.families.iam import OWNER_USER_ID
from lab.runner import LAB_PROJECT_ID
from lab.store import Store
from tests.conftest import synth_core
from tests.lab_support import engine, running_lab

CLUSTER = "GET /k8s/v1/regions/{region}/clusters/{id}"


def test_key_paths_name_list_elements_and_map_values_and_record_each_type():
    body = {"id": "c1", "tags": ["a"], "pools": [{"size": 1}, {"size": None}], "ip": None,
            "kubelet_args": {"maxPods": "50"}, "conditions": {"Ready": "True"}, "labels": {"team": "x"}}
    assert conformance.key_types(body) == {
        "id": {"string"}, "tags": {"array"}, "tags[]": {"string"}, "pools": {"array"}, "pools[]": {"object"},
        "pools[].size": {"number", "null"}, "ip": {"null"}, "kubelet_args": {"object"}, "kubelet_args{}": {"string"},
        "conditions": {"object"}, "conditions{}": {"string"}, "labels": {"object"}, "labels{}": {"string"}}


def test_a_planted_omission_and_a_changed_type_fail_an_allowed_omission_and_an_empty_list_do_not(monkeypatch):
    real = {"id": "c1", "name": "n", "size": 3, "autoscaler": {"estimator": "binpacking", "log_level": 2},
            "nodes": [{"id": "n1", "status": "ready"}], "private_network_id": "pn", "check": {"tcp_config": {}}}
    recorded = conformance.Recordings({CLUSTER: conformance.key_types(real)}, {CLUSTER: {"name": "2026-07-21"}},
                                      oneofs=[["http_config", "tcp_config"]])
    planted = {**real, "size": "3", "autoscaler": {"estimator": "binpacking"}, "nodes": [], "private_network_id": None,
               "check": {"http_config": {"uri": "/"}}}
    del planted["name"]

    report = conformance.compare({CLUSTER: conformance.key_types(planted)}, recorded)
    assert not report.ok
    assert report.missing == {CLUSTER: ["autoscaler.log_level", "name (last recorded 2026-07-21)"]}
    assert report.mistyped == {CLUSTER: ["size: lab string, real API number"]}
    assert report.unobserved == 3  # nodes[], nodes[].id, nodes[].status: the lab's list was empty
    assert report.alternatives == 1  # check.tcp_config: the lab answers check.http_config
    assert report.summary.startswith("compared 1 endpoints, ")

    monkeypatch.setattr(conformance, "ALLOWED_OMISSIONS", {("GET /k8s/*", "name"): "not needed here",
                                                          ("*", "autoscaler"): "planted"})
    allowed = conformance.compare({CLUSTER: conformance.key_types({**planted, "size": 3})}, recorded)
    assert allowed.ok and allowed.allowed == {CLUSTER: ["autoscaler.log_level (planted)", "name (not needed here)"]}


def test_recordings_are_read_from_the_cassettes_once_then_from_the_cache_and_filed_under_the_lab_route(
        tmp_path, monkeypatch):
    monkeypatch.setenv("CIEL_CACHE_DIR", str(tmp_path / "cache"))
    scaleway = tmp_path / "mod" / "github.com" / "scaleway"
    module = scaleway / "terraform-provider-scaleway" / "v2@v9.9.9"
    testdata = module / "internal" / "services" / "k8s" / "testdata"
    testdata.mkdir(parents=True)
    (module / "go.mod").write_text("require (\n\tgithub.com/scaleway/scaleway-sdk-go v1.0.0-beta.99\n)\n")
    sdk = scaleway / "scaleway-sdk-go@v1.0.0-beta.99" / "api" / "k8s" / "v1"
    sdk.mkdir(parents=True)
    (sdk / "k8s_sdk.go").write_text("""type Pool struct {
\t// Precisely one of Zonal, Regional must be set.
\tZonal *string `json:"zonal,omitempty"`
\t// Precisely one of Zonal, Regional must be set.
\tRegional *bool `json:"regional,omitempty"`
}
type ListPoolsRequest struct {
\t// Precisely one of OrganizationID, ProjectID must be set.
\tOrganizationID *string `json:"organization_id,omitempty"`
\t// Precisely one of OrganizationID, ProjectID must be set.
\tProjectID *string `json:"project_id,omitempty"`
}
""")
    cluster_url = "https://api.scaleway.com/k8s/v1/regions/fr-par/clusters/0b8a3f43-0b35-4ab4-9d22-e5b3b0e6bd4b"
    (testdata / "basic.cassette.yaml").write_text(yaml.safe_dump({"interactions": [
        {"request": {"url": cluster_url, "method": "GET"},
         "response": {"code": 200, "body": json.dumps({"id": "c1", "status": "ready"}),
                      "headers": {"Date": ["Tue, 21 Jul 2026 12:06:53 GMT"]}}},
        {"request": {"url": cluster_url + "/kubeconfig?redacted=false", "method": "GET"},
         "response": {"code": 404, "body": json.dumps({"message": "not found"})}},
    ]}))

    recorded = conformance.recordings(module)
    endpoint = "GET /k8s/v1/regions/fr-par/clusters/{uuid}"
    assert recorded.shapes == {endpoint: {"id": {"string"}, "status": {"string"}}}
    assert recorded.last_seen == {endpoint: {"id": "2026-07-21", "status": "2026-07-21"}}
    assert recorded.oneofs == [["regional", "zonal"]]  # a request's oneof says nothing of answers
    assert (tmp_path / "cache" / "lab-shapes-9.9.9.json").exists()
    (testdata / "basic.cassette.yaml").unlink()
    assert conformance.recordings(module) == recorded
    filed = recorded.by_route(register_all(Lab(Store())))
    assert filed == conformance.Recordings({CLUSTER: recorded.shapes[endpoint]},
                                           {CLUSTER: recorded.last_seen[endpoint]}, recorded.oneofs)


def provider_module() -> Path:
    from toolchain.pins import SCALEWAY

    return conformance.provider_module(SCALEWAY.source.module, SCALEWAY.source.version)


@pytest.mark.engine
def test_the_lab_answers_with_every_key_and_type_the_real_api_returns_for_each_endpoint_it_serves(tmp_path, capsys):
    recorded = conformance.recordings(provider_module()).by_route(register_all(Lab(Store())))
    directory = tmp_path / "tf"
    directory.mkdir()
    # The dev core stack as ciel synthesizes it, with the cluster of phase 2, on a local state.
    stack = synth_core("dev", phase=2)
    stack["terraform"] = {key: value for key, value in stack["terraform"].items() if key != "backend"}
    (directory / "main.tf.json").write_text(json.dumps(stack))
    snapshots, steps = [], []
    with running_lab(tmp_path / "work") as lab_env:
        for args in (("init", "-input=false"), ("apply", "-auto-approve", "-input=false"),
                     ("plan", "-input=false"), ("destroy", "-auto-approve", "-input=false")):
            step = engine(directory, {**lab_env, "TF_VAR_project_id": LAB_PROJECT_ID,
                                      "TF_VAR_deployer_principal": f"user_id:{OWNER_USER_ID}"}, *args)
            (tmp_path / f"{args[0]}.log").write_text(step.stdout + step.stderr)
            steps.append((args[0], step.returncode))
            # The lab keeps each route's last answer only: lists are fullest before the destroy.
            with urllib.request.urlopen(f"{lab_env['SCW_API_URL']}/lab/v1/shapes", timeout=10) as answer:
                snapshots.append(json.load(answer))

    report = conformance.compare(conformance.lab_shapes(snapshots), recorded)
    (tmp_path / "conformance.txt").write_text(report.text())
    with capsys.disabled():  # shown in CI too, where pytest captures output
        print(f"\nlab conformance: {report.summary}; report: {tmp_path / 'conformance.txt'}")
    assert report.ok, report.text()
    assert all(code == 0 for _, code in steps), f"engine steps {steps}; their output is in {tmp_path}/*.log"
