"""Conformance of the lab with the real API: for every endpoint the lab serves while the
real provider applies the dev stack's resource types, the JSON keys and value types of
its responses against those the provider's recordings of the real API show."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
import yaml

from lab import conformance
from lab.api import Lab
from lab.families import register_all
from lab.runner import LAB_PROJECT_ID
from lab.store import Store
from tests.lab_support import PROVIDER_BLOCK, engine, running_lab

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


# The dev stack's resource types (as `ciel synth --env dev --phase 2` declares them),
# with literal values where the stack uses random_* resources.
DEV_STACK_HCL = """
locals {
  tags    = ["app=ciel", "environment=dev"]
  project = "%(project)s"
}
resource "scaleway_vpc" "main" {
  name = "ciel-dev"
  tags = local.tags
}
resource "scaleway_vpc_private_network" "main" {
  name   = "ciel-dev"
  vpc_id = scaleway_vpc.main.id
  tags   = local.tags
  ipv4_subnet { subnet = "10.0.0.0/24" }
}
resource "scaleway_vpc_public_gateway_ip" "main" {
  tags = local.tags
}
resource "scaleway_vpc_public_gateway" "main" {
  name            = "ciel-dev"
  type            = "VPC-GW-S"
  ip_id           = scaleway_vpc_public_gateway_ip.main.id
  bastion_enabled = false
  tags            = local.tags
}
resource "scaleway_vpc_gateway_network" "main" {
  gateway_id         = scaleway_vpc_public_gateway.main.id
  private_network_id = scaleway_vpc_private_network.main.id
  enable_masquerade  = true
  ipam_config { push_default_route = true }
}
resource "scaleway_ipam_ip" "api" {
  tags = local.tags
  source { private_network_id = scaleway_vpc_private_network.main.id }
}
resource "scaleway_ipam_ip" "ingress" {
  tags = concat(local.tags, ["role=cluster-ingress"])
  source { private_network_id = scaleway_vpc_private_network.main.id }
}
resource "scaleway_instance_security_group" "api" {
  name                    = "ciel-dev-api"
  inbound_default_policy  = "drop"
  outbound_default_policy = "accept"
  stateful                = true
  tags                    = local.tags
  inbound_rule {
    action   = "accept"
    ip_range = "10.0.0.0/24"
    port     = 8080
    protocol = "TCP"
  }
}
resource "scaleway_instance_placement_group" "api" {
  name        = "ciel-dev-api"
  policy_type = "max_availability"
  tags        = local.tags
}
resource "scaleway_instance_server" "api" {
  name               = "ciel-dev-api-0"
  type               = "DEV1-S"
  image              = "debian_bookworm"
  enable_dynamic_ip  = false
  security_group_id  = scaleway_instance_security_group.api.id
  placement_group_id = scaleway_instance_placement_group.api.id
  user_data          = { "cloud-init" = "#cloud-config\\npackages: [docker.io]\\n" }
  tags               = local.tags
}
resource "scaleway_instance_private_nic" "api" {
  server_id          = scaleway_instance_server.api.id
  private_network_id = scaleway_vpc_private_network.main.id
  ipam_ip_ids        = [scaleway_ipam_ip.api.id]
}
resource "scaleway_lb_ip" "main" {
  tags = local.tags
}
resource "scaleway_lb" "main" {
  name   = "ciel-dev"
  type   = "LB-S"
  ip_ids = [scaleway_lb_ip.main.id]
  tags   = local.tags
  private_network { private_network_id = scaleway_vpc_private_network.main.id }
}
resource "scaleway_lb_backend" "instances" {
  lb_id                    = scaleway_lb.main.id
  name                     = "instances"
  forward_port             = 8080
  forward_protocol         = "http"
  server_ips               = [scaleway_ipam_ip.api.address]
  health_check_delay       = "5s"
  health_check_timeout     = "3s"
  health_check_max_retries = 2
  on_marked_down_action    = "shutdown_sessions"
  proxy_protocol           = "none"
  timeout_connect          = "5s"
  timeout_server           = "60s"
  health_check_http {
    uri  = "/health"
    code = 200
  }
}
resource "scaleway_lb_backend" "cluster" {
  lb_id            = scaleway_lb.main.id
  name             = "cluster"
  forward_port     = 80
  forward_protocol = "http"
  server_ips       = [scaleway_ipam_ip.ingress.address]
  health_check_http {
    uri  = "/health"
    code = 200
  }
}
resource "scaleway_lb_frontend" "http" {
  lb_id          = scaleway_lb.main.id
  backend_id     = scaleway_lb_backend.instances.id
  name           = "http"
  inbound_port   = 80
  timeout_client = "60s"
}
resource "scaleway_rdb_instance" "main" {
  name                      = "ciel-dev"
  engine                    = "PostgreSQL-16"
  node_type                 = "DB-DEV-S"
  is_ha_cluster             = false
  disable_backup            = false
  backup_schedule_frequency = 24
  backup_schedule_retention = 7
  encryption_at_rest        = true
  user_name                 = "ciel_admin"
  password                  = "Lab-admin-passw0rd-1234567890"
  volume_type               = "sbs_5k"
  volume_size_in_gb         = 10
  settings                  = { effective_cache_size = "768", max_connections = "100", work_mem = "4" }
  tags                      = local.tags
  private_network {
    pn_id       = scaleway_vpc_private_network.main.id
    enable_ipam = true
  }
}
resource "scaleway_rdb_database" "main" {
  instance_id = scaleway_rdb_instance.main.id
  name        = "ciel"
}
resource "scaleway_rdb_user" "app" {
  instance_id = scaleway_rdb_instance.main.id
  name        = "ciel_app"
  password    = "Lab-app-passw0rd-1234567890"
  is_admin    = false
}
resource "scaleway_rdb_privilege" "app" {
  instance_id   = scaleway_rdb_instance.main.id
  user_name     = scaleway_rdb_user.app.name
  database_name = scaleway_rdb_database.main.name
  permission    = "readwrite"
}
resource "scaleway_registry_namespace" "main" {
  name        = "ciel-dev"
  description = "Ciel images (dev)"
  is_public   = false
}
resource "scaleway_iam_application" "pull" {
  name        = "ciel-dev-registry-pull"
  description = "Ciel dev: pull images"
  tags        = local.tags
}
resource "scaleway_iam_policy" "pull" {
  name           = "ciel-dev-registry-pull"
  description    = "Ciel dev: pull images"
  application_id = scaleway_iam_application.pull.id
  tags           = local.tags
  rule {
    permission_set_names = ["ContainerRegistryReadOnly"]
    project_ids          = [local.project]
  }
}
resource "scaleway_iam_api_key" "pull" {
  application_id     = scaleway_iam_application.pull.id
  description        = "Ciel dev: pull images"
  default_project_id = local.project
}
resource "scaleway_secret" "database_url" {
  name        = "database-url"
  path        = "/ciel/dev"
  description = "DATABASE_URL of the app user"
  tags        = local.tags
}
resource "scaleway_secret_version" "database_url" {
  secret_id = scaleway_secret.database_url.id
  data      = "postgresql://ciel_app@${scaleway_rdb_instance.main.private_network[0].ip}/ciel"
}
resource "scaleway_mnq_sqs" "main" {}
resource "scaleway_mnq_sqs_credentials" "manager" {
  name       = "ciel-dev-queue-manager"
  depends_on = [scaleway_mnq_sqs.main]
  permissions {
    can_manage  = true
    can_publish = false
    can_receive = false
  }
}
resource "scaleway_mnq_sqs_queue" "dead_letters" {
  name            = "ciel-media-jobs-dlq"
  sqs_endpoint    = scaleway_mnq_sqs.main.endpoint
  access_key      = scaleway_mnq_sqs_credentials.manager.access_key
  secret_key      = scaleway_mnq_sqs_credentials.manager.secret_key
  message_max_age = 1209600
}
resource "scaleway_mnq_sqs_queue" "jobs" {
  name                       = "ciel-media-jobs"
  sqs_endpoint               = scaleway_mnq_sqs.main.endpoint
  access_key                 = scaleway_mnq_sqs_credentials.manager.access_key
  secret_key                 = scaleway_mnq_sqs_credentials.manager.secret_key
  message_max_age            = 345600
  receive_wait_time_seconds  = 10
  visibility_timeout_seconds = 300
  dead_letter_queue {
    id                = scaleway_mnq_sqs_queue.dead_letters.id
    max_receive_count = 5
  }
}
resource "scaleway_object_bucket" "media" {
  name = "ciel-dev-media-lab"
  tags = { app = "ciel", environment = "dev" }
  cors_rule {
    allowed_headers = ["*"]
    allowed_methods = ["GET", "PUT", "POST", "HEAD"]
    allowed_origins = ["http://localhost:3000"]
    expose_headers  = ["ETag"]
    max_age_seconds = 3000
  }
  lifecycle_rule {
    id                                     = "abort-incomplete-uploads"
    enabled                                = true
    abort_incomplete_multipart_upload_days = 7
  }
}
resource "scaleway_object_bucket_acl" "media" {
  bucket = scaleway_object_bucket.media.name
  acl    = "private"
}
resource "scaleway_cockpit_source" "logs" {
  name           = "ciel-dev-logs"
  type           = "logs"
  retention_days = 7
}
resource "scaleway_cockpit_source" "metrics" {
  name           = "ciel-dev-metrics"
  type           = "metrics"
  retention_days = 31
}
resource "scaleway_cockpit_token" "push" {
  name = "ciel-dev-push"
  scopes {
    query_logs    = false
    query_metrics = false
    write_logs    = true
    write_metrics = true
  }
}
resource "scaleway_cockpit_alert_manager" "main" {}
resource "scaleway_k8s_cluster" "main" {
  name                        = "ciel-dev"
  type                        = "kapsule"
  version                     = "1.34"
  cni                         = "cilium"
  private_network_id          = scaleway_vpc_private_network.main.id
  delete_additional_resources = false
  tags                        = local.tags
  depends_on                  = [scaleway_vpc_gateway_network.main]
  auto_upgrade {
    enable                        = true
    maintenance_window_day        = "sunday"
    maintenance_window_start_hour = 3
  }
  autoscaler_config {
    balance_similar_node_groups  = true
    expander                     = "least_waste"
    max_graceful_termination_sec = 340
  }
}
resource "scaleway_k8s_pool" "main" {
  cluster_id         = scaleway_k8s_cluster.main.id
  name               = "ciel-dev-default"
  node_type          = "DEV1-M"
  size               = 1
  min_size           = 1
  max_size           = 3
  autoscaling        = true
  autohealing        = true
  public_ip_disabled = true
  tags               = local.tags
  upgrade_policy {
    max_surge       = 1
    max_unavailable = 1
  }
}
"""


@pytest.mark.engine
def test_the_lab_answers_with_every_key_and_type_the_real_api_returns_for_each_endpoint_it_serves(tmp_path, capsys):
    recorded = conformance.recordings(provider_module()).by_route(register_all(Lab(Store())))
    directory = tmp_path / "tf"
    directory.mkdir()
    (directory / "main.tf").write_text(PROVIDER_BLOCK + DEV_STACK_HCL % {"project": LAB_PROJECT_ID})
    snapshots, steps = [], []
    with running_lab(tmp_path / "work") as lab_env:
        for args in (("init", "-input=false"), ("apply", "-auto-approve", "-input=false"),
                     ("plan", "-input=false"), ("destroy", "-auto-approve", "-input=false")):
            step = engine(directory, lab_env, *args)
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
