"""Networking construct: synthesized in-process, no engine."""

from __future__ import annotations

from infra.config import load_environment
from infra.constructs.networking import Networking
from tests.conftest import synth_construct


def synth_networking(env: str) -> dict:
    config = load_environment(env)
    return synth_construct(lambda stack: Networking(stack, "networking", config=config))


def only(resources: dict, type_: str) -> dict:
    (value,) = resources[type_].values()
    return value


def test_private_network_uses_the_configured_range_inside_the_vpc():
    resources = synth_networking("staging")["resource"]
    vpc = only(resources, "scaleway_vpc")
    network = only(resources, "scaleway_vpc_private_network")
    assert network["ipv4_subnet"]["subnet"] == "10.1.0.0/24"
    assert network["vpc_id"].startswith("${scaleway_vpc.") and network["vpc_id"].endswith(".id}")
    assert vpc["region"] == network["region"] == "fr-par"


def test_networking_names_and_tags_carry_the_environment():
    resources = synth_networking("prod")["resource"]
    for type_ in ("scaleway_vpc", "scaleway_vpc_private_network"):
        resource = only(resources, type_)
        assert resource["name"] == "ciel-prod"
        assert resource["tags"] == ["app=ciel", "environment=prod", "layer=networking"]


def test_networking_creates_nothing_public():
    resources = synth_networking("dev")["resource"]
    assert set(resources) == {"scaleway_vpc", "scaleway_vpc_private_network"}
