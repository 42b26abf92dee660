"""Observability construct: current Cockpit resources, alert contact point, push token."""

from __future__ import annotations

from tests.conftest import of_type, one, synth_core


def test_cockpit_uses_current_resources_only():
    stack = synth_core("prod")
    assert of_type(stack, "scaleway_cockpit") == [] and of_type(stack, "scaleway_cockpit_grafana_user") == []
    sources = {s["type"]: s["retention_days"] for s in of_type(stack, "scaleway_cockpit_source")}
    assert sources == {"metrics": 31, "logs": 31}


def test_alerts_go_to_the_configured_email():
    manager = one(synth_core("staging"), "scaleway_cockpit_alert_manager")
    assert manager["contact_points"] == [{"email": "ops@ciel.example.com"}]
    assert "contact_points" not in one(synth_core("dev"), "scaleway_cockpit_alert_manager")


def test_push_token_can_write_but_not_read_and_verify_token_can_read_but_not_write():
    tokens = {t["name"]: t["scopes"] for t in of_type(synth_core("dev"), "scaleway_cockpit_token")}
    assert tokens["ciel-dev-push"] == {"write_metrics": True, "write_logs": True, "query_metrics": False,
                                       "query_logs": False}
    assert tokens["ciel-dev-verify"] == {"write_metrics": False, "write_logs": False, "query_metrics": True,
                                         "query_logs": True}
