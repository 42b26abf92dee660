"""DNS and registry constructs."""

from __future__ import annotations

from tests.conftest import of_type, one, synth_core


def test_api_record_points_at_the_load_balancer_ip():
    records = {r["name"]: r for r in of_type(synth_core("prod"), "scaleway_domain_record")}
    assert records["api"]["type"] == "A" and records["api"]["dns_zone"] == "ciel.example.com"
    assert "scaleway_lb_ip" in records["api"]["data"]
    assert records["cdn"]["type"] == "CNAME" and "edge_services_dns_stage" in records["cdn"]["data"]


def test_no_records_without_a_domain():
    assert of_type(synth_core("dev"), "scaleway_domain_record") == []


def test_registry_is_private_with_a_read_only_pull_credential():
    stack = synth_core("dev")
    assert one(stack, "scaleway_registry_namespace")["is_public"] is False
    pull = [p for p in of_type(stack, "scaleway_iam_policy") if p["name"].endswith("registry-pull")][0]
    assert pull["rule"][0]["permission_set_names"] == ["ContainerRegistryReadOnly"]
