"""The lab's Cockpit, Edge Services and Domain APIs under the real provider, with the
arguments our constructs give them (`ciel synth --env prod|dev --offline`)."""

from __future__ import annotations

import re

import pytest
from scaleway import Client
from scaleway.cockpit.v1 import CockpitV1RegionalAPI
from scaleway.domain.v2beta1 import DomainV2Beta1API
from scaleway.edge_services.v1beta1 import EdgeServicesV1Beta1API

from tests.lab_support import apply_then_replan, engine, outputs, running_lab

pytestmark = pytest.mark.engine

UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def cockpit(env: str, logs_retention_days: int, alert_manager_body: str) -> str:
    """infra/constructs/observability.py's resources for one environment."""
    return f"""
resource "scaleway_cockpit_source" "metrics" {{
  name           = "ciel-{env}-metrics"
  type           = "metrics"
  retention_days = 31
  region         = "fr-par"
}}
resource "scaleway_cockpit_source" "logs" {{
  name           = "ciel-{env}-logs"
  type           = "logs"
  retention_days = {logs_retention_days}
  region         = "fr-par"
}}
resource "scaleway_cockpit_token" "push" {{
  name   = "ciel-{env}-push"
  region = "fr-par"
  scopes {{
    query_logs    = false
    query_metrics = false
    write_logs    = true
    write_metrics = true
  }}
}}
resource "scaleway_cockpit_alert_manager" "alerts" {{
  region = "fr-par"
{alert_manager_body}
}}
output "metrics_push_url" {{ value = scaleway_cockpit_source.metrics.push_url }}
output "push_secret" {{
  value     = scaleway_cockpit_token.push.secret_key
  sensitive = true
}}
"""


# infra/constructs/cdn.py and dns.py in prod: the media bucket (another family's) by name,
# a custom CDN domain with a managed certificate, and the zone's records.
CDN_AND_DNS = """
resource "scaleway_edge_services_plan" "plan" {
  name = "starter"
}
resource "scaleway_edge_services_pipeline" "pipeline" {
  name        = "ciel-prod-media"
  description = "Media bucket CDN"
  depends_on  = [scaleway_edge_services_plan.plan]
}
resource "scaleway_edge_services_backend_stage" "backend" {
  pipeline_id = scaleway_edge_services_pipeline.pipeline.id
  s3_backend_config {
    bucket_name   = "ciel-prod-media"
    bucket_region = "fr-par"
    is_website    = false
  }
}
resource "scaleway_edge_services_cache_stage" "cache" {
  pipeline_id      = scaleway_edge_services_pipeline.pipeline.id
  backend_stage_id = scaleway_edge_services_backend_stage.backend.id
  fallback_ttl     = 3600
}
resource "scaleway_edge_services_tls_stage" "tls" {
  pipeline_id         = scaleway_edge_services_pipeline.pipeline.id
  cache_stage_id      = scaleway_edge_services_cache_stage.cache.id
  managed_certificate = true
}
resource "scaleway_edge_services_dns_stage" "dns" {
  pipeline_id  = scaleway_edge_services_pipeline.pipeline.id
  tls_stage_id = scaleway_edge_services_tls_stage.tls.id
  fqdns        = ["cdn.ciel.example.com"]
}
resource "scaleway_edge_services_head_stage" "head" {
  pipeline_id   = scaleway_edge_services_pipeline.pipeline.id
  head_stage_id = scaleway_edge_services_dns_stage.dns.id
}
resource "scaleway_domain_record" "api" {
  dns_zone = "ciel.example.com"
  name     = "api"
  type     = "A"
  data     = "51.15.10.20"
  ttl      = 300
}
resource "scaleway_domain_record" "cdn" {
  dns_zone = "ciel.example.com"
  name     = "cdn"
  type     = "CNAME"
  data     = "${scaleway_edge_services_dns_stage.dns.default_fqdn}."
  ttl      = 300
}
output "cdn_target" { value = scaleway_domain_record.cdn.data }
output "pipeline_id" { value = scaleway_edge_services_pipeline.pipeline.id }
"""


def sdk(lab_env) -> Client:
    """The real Python SDK, pointed at the lab as `ciel` points it."""
    return Client(access_key=lab_env["SCW_ACCESS_KEY"], secret_key=lab_env["SCW_SECRET_KEY"],
                  api_url=lab_env["SCW_API_URL"], default_project_id=lab_env["SCW_DEFAULT_PROJECT_ID"],
                  default_region="fr-par")


def destroyed(directory, lab_env) -> str:
    result = engine(directory, lab_env, "destroy", "-auto-approve", "-input=false")
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_prod_observability_cdn_and_dns_apply_replan_empty_and_destroy(tmp_path):
    hcl = cockpit("prod", 31, '  contact_points {\n    email = "ops@ciel.example.com"\n  }') + CDN_AND_DNS
    with running_lab(tmp_path / "work") as lab_env:
        applied, replan, output = apply_then_replan(tmp_path / "tf", lab_env, hcl)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "Resources: 13 added" in applied.stdout
        assert replan == 0, output
        values = outputs(tmp_path / "tf", lab_env)
        assert re.fullmatch(rf"https://{UUID}\.metrics\.cockpit\.fr-par\.scw\.cloud/api/v1/push",
                            values["metrics_push_url"])
        assert re.fullmatch(UUID, values["push_secret"])  # returned once, at creation, and kept
        # The CDN's CNAME points at the pipeline's own host.
        assert values["cdn_target"] == f"{values['pipeline_id']}.svc.edge.scw.cloud."
        # With its head stage, the pipeline serves (the SDK's waiter passes `pending`).
        edge = EdgeServicesV1Beta1API(sdk(lab_env))
        pipeline = edge.wait_for_pipeline(pipeline_id=values["pipeline_id"])
        assert (pipeline.status, pipeline.errors) == ("ready", [])
        [dns_stage] = edge.list_dns_stages_all(pipeline_id=pipeline.id)
        assert (dns_stage.fqdns, dns_stage.type_) == (["cdn.ciel.example.com"], "managed")
        assert [head.dns_stage_id for head in edge.list_head_stages_all(pipeline_id=pipeline.id)] == [dns_stage.id]
        records = DomainV2Beta1API(sdk(lab_env)).list_dns_zone_records_all(dns_zone="ciel.example.com", name="api")
        assert [(record.type_, record.data, record.ttl) for record in records] == [("A", "51.15.10.20", 300)]
        assert "Resources: 13 destroyed" in destroyed(tmp_path / "tf", lab_env)


def test_dev_observability_then_preconfigured_alerts_and_a_contact_point(tmp_path):
    with running_lab(tmp_path / "work") as lab_env:
        applied, replan, output = apply_then_replan(tmp_path / "tf", lab_env, cockpit("dev", 7, ""))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert replan == 0, output
        # Enabling alert rules waits for them through `enabling` to `enabled`.
        alerts = ('  preconfigured_alert_ids = ["6c6843af-1815-46df-9e52-6feafcf31fd7"]\n'
                  '  contact_points {\n    email = "ops@ciel.example.com"\n  }')
        applied, replan, output = apply_then_replan(tmp_path / "tf", lab_env, cockpit("dev", 7, alerts))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "1 changed" in applied.stdout
        assert replan == 0, output
        enabled = CockpitV1RegionalAPI(sdk(lab_env)).list_alerts(is_preconfigured=True, rule_status="enabled")
        assert [alert.preconfigured_data.preconfigured_rule_id for alert in enabled.alerts] == [
            "6c6843af-1815-46df-9e52-6feafcf31fd7"]
        assert "Resources: 4 destroyed" in destroyed(tmp_path / "tf", lab_env)
