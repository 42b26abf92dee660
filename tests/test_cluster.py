"""Cluster construct (phase 2) and what phase 2 adds to — and keeps of — the core stack."""

from __future__ import annotations

import pytest

from ciel.phase2 import phase1_part_identical
from tests.conftest import config_for, of_type, one, synth_core


def test_no_cluster_in_phase_1():
    assert of_type(synth_core("dev"), "scaleway_k8s_cluster") == []


def test_kapsule_cluster_is_pinned_on_the_shared_network_with_an_upgrade_window():
    stack = synth_core("dev", phase=2)
    cluster = one(stack, "scaleway_k8s_cluster")
    assert (cluster["version"], cluster["cni"], cluster["type"]) == ("1.34", "cilium", "kapsule")
    assert cluster["delete_additional_resources"] is False
    assert cluster["private_network_id"] == one(stack, "scaleway_lb")["private_network"][0]["private_network_id"]
    assert cluster["auto_upgrade"] == {"enable": True, "maintenance_window_day": "sunday",
                                       "maintenance_window_start_hour": 3}


def test_pool_autoscales_autoheals_and_has_no_public_ips():
    pool = one(synth_core("staging", phase=2), "scaleway_k8s_pool")
    assert (pool["node_type"], pool["min_size"], pool["max_size"], pool["size"]) == ("PRO2-XXS", 2, 4, 2)
    assert pool["autoscaling"] is True and pool["autohealing"] is True and pool["public_ip_disabled"] is True


def test_node_shutdowns_and_scale_downs_wait_for_the_workers_jobs():
    config = config_for("dev")
    stack = synth_core("dev", phase=2)
    grace = config.worker_termination_grace_seconds
    assert grace >= config.visibility_timeout + config.receive_wait_time
    assert one(stack, "scaleway_k8s_cluster")["autoscaler_config"]["max_graceful_termination_sec"] == grace
    # Kapsule refuses kubelet arguments outside its per-version list (shutdownGracePeriod is not in it).
    assert "kubelet_args" not in one(stack, "scaleway_k8s_pool")


def test_the_shared_lb_gets_a_cluster_backend_on_the_reserved_ingress_address_but_no_traffic():
    stack = synth_core("prod", phase=2)
    backends = {b["name"]: b for b in of_type(stack, "scaleway_lb_backend")}
    ingress = [n for n in stack["resource"]["scaleway_ipam_ip"] if n.startswith("cluster_ingress_address")]
    assert backends["cluster"]["server_ips"] == [f"${{scaleway_ipam_ip.{ingress[0]}.address}}"]
    assert backends["cluster"]["health_check_http"]["uri"] == "/health"
    for frontend in of_type(stack, "scaleway_lb_frontend"):
        assert "edge_instance_backend" in frontend["backend_id"]  # production stays on the instances


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_phase_2_keeps_every_phase_1_and_shared_resource_exactly_as_it_is(env):
    assert phase1_part_identical(synth_core(env), synth_core(env, phase=2)) == []


def test_the_comparison_does_catch_a_changed_resource():
    changed = phase1_part_identical(synth_core("dev"), synth_core("dev", phase=2, api_instance_count=2))
    assert any(name.startswith("scaleway_lb_backend.") for name in changed)
