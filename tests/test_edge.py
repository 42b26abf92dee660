"""Edge construct: the shared LB, its health-checked instance backend and its frontends."""

from __future__ import annotations

from tests.conftest import of_type, one, synth_core


def test_lb_has_a_flexible_ip_and_sits_on_the_private_network():
    stack = synth_core("dev")
    lb = one(stack, "scaleway_lb")
    assert lb["type"] == "LB-S"
    assert len(lb["ip_ids"]) == 1 and "scaleway_lb_ip" in lb["ip_ids"][0]
    assert "scaleway_vpc_private_network" in lb["private_network"][0]["private_network_id"]


def test_instance_backend_checks_health_and_drains_cleanly():
    backend = one(synth_core("dev"), "scaleway_lb_backend")
    assert (backend["forward_protocol"], backend["forward_port"]) == ("http", 8080)
    assert backend["health_check_http"] == {"uri": "/health", "code": 200}
    assert backend["on_marked_down_action"] == "shutdown_sessions"
    # A refused connection (an instance being replaced, still up for the LB) goes to another server.
    assert backend["max_retries"] >= 1 and backend["redispatch_attempt_count"] == 1


def test_without_a_domain_http_forwards_and_no_certificate_is_requested():
    stack = synth_core("dev")
    frontend = one(stack, "scaleway_lb_frontend")
    assert frontend["inbound_port"] == 80 and "acl" not in frontend
    assert of_type(stack, "scaleway_lb_certificate") == []


def test_with_https_port_80_redirects_and_443_serves_with_a_lets_encrypt_certificate():
    stack = synth_core("staging")
    certificate = one(stack, "scaleway_lb_certificate")
    assert certificate["letsencrypt"]["common_name"] == "api.staging.ciel.example.com"
    frontends = {f["inbound_port"]: f for f in of_type(stack, "scaleway_lb_frontend")}
    assert set(frontends) == {80, 443}
    assert "scaleway_lb_certificate" in frontends[443]["certificate_ids"][0]
    redirect = frontends[80]["acl"][0]["action"]
    assert redirect["type"] == "redirect" and redirect["redirect"][0] == {"type": "scheme", "target": "https", "code": 301}


def test_the_load_balancer_can_be_left_out():
    stack = synth_core("dev", enable_load_balancer=False)
    assert of_type(stack, "scaleway_lb") == [] and of_type(stack, "scaleway_lb_frontend") == []


def test_the_certificate_is_requested_only_once_the_api_record_points_at_the_lb():
    """Let's Encrypt validates the API host at the LB's IP: without the explicit ordering
    the certificate may be requested before the record exists, and its issue fails."""
    stack = synth_core("prod")
    (record_name,) = [name for name, record in stack["resource"]["scaleway_domain_record"].items()
                      if record["name"] == "api"]
    assert "scaleway_lb_ip" in stack["resource"]["scaleway_domain_record"][record_name]["data"]
    certificate = one(stack, "scaleway_lb_certificate")
    # A bare address (the engines refuse "${...}" in depends_on).
    assert certificate["depends_on"] == [f"scaleway_domain_record.{record_name}"]
    # The frontends still reference the certificate itself.
    https = [f for f in of_type(stack, "scaleway_lb_frontend") if f["inbound_port"] == 443][0]
    assert "scaleway_lb_certificate" in https["certificate_ids"][0]
