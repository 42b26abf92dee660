"""Networking construct: VPC, private network, public gateway with masquerade, bastion."""

from __future__ import annotations

from tests.conftest import one, synth_core


def test_private_network_uses_the_configured_range_inside_the_vpc():
    stack = synth_core("staging")
    network = one(stack, "scaleway_vpc_private_network")
    assert network["ipv4_subnet"]["subnet"] == "10.1.0.0/24"
    assert network["vpc_id"].startswith("${scaleway_vpc.") and network["vpc_id"].endswith(".id}")
    assert one(stack, "scaleway_vpc")["region"] == network["region"] == "fr-par"


def test_gateway_masquerades_and_pushes_the_default_route_for_private_only_machines():
    stack = synth_core("dev")
    gateway = one(stack, "scaleway_vpc_public_gateway")
    link = one(stack, "scaleway_vpc_gateway_network")
    assert gateway["type"] == "VPC-GW-S"
    assert link["enable_masquerade"] is True
    assert link["ipam_config"] == [{"push_default_route": True}]
    assert "scaleway_vpc_public_gateway_ip" in gateway["ip_id"]


def test_bastion_follows_the_configuration():
    assert one(synth_core("dev"), "scaleway_vpc_public_gateway")["bastion_enabled"] is False
    with_bastion = one(synth_core("dev", enable_bastion=True, bastion_port=61022), "scaleway_vpc_public_gateway")
    assert (with_bastion["bastion_enabled"], with_bastion["bastion_port"]) == (True, 61022)


def test_networking_names_and_tags_carry_the_environment():
    stack = synth_core("prod")
    for type_ in ("scaleway_vpc", "scaleway_vpc_private_network", "scaleway_vpc_public_gateway"):
        resource = one(stack, type_)
        assert resource["name"] == "ciel-prod"
        assert resource["tags"] == ["app=ciel", "environment=prod", "layer=networking"]
