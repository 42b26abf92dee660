"""The lab's Public Gateways and IPAM APIs: the real provider applies our networking layer
(VPC, private network, public gateway and its IP, gateway network) and the compute/cache
layers' reserved addresses, as the dev and prod environments declare them; the re-plan is
empty and destroy leaves nothing behind. Then the statuses and errors the provider's
waiters depend on, straight against the emulated API."""

from __future__ import annotations

import ipaddress
import json

import pytest

from tests.lab_support import apply_then_replan, engine, lab_json, running_lab

pytestmark = pytest.mark.engine

CIDR = "10.0.0.0/24"

# What `ciel synth --env dev|prod` declares (infra/constructs/networking.py, compute.py, cache.py).
ENVIRONMENTS = {
    "dev": {"gateway": 'type = "VPC-GW-S"\n  bastion_enabled = false',
            "addresses": {"cache_address": ("cache", "redis"), "api_0_address": ("compute", "api"),
                          "worker_0_address": ("compute", "worker")}},
    "prod": {"gateway": 'type = "VPC-GW-M"\n  bastion_enabled = true\n  bastion_port = 61000',
             "addresses": {f"{role}_{index}_address": ("compute", role)
                           for role, count in (("api", 3), ("worker", 2)) for index in range(count)}},
}


def networking_hcl(env: str) -> str:
    tags = f'["app=ciel", "environment={env}", "layer=networking"]'
    declared = ENVIRONMENTS[env]
    addresses = "".join(f"""
resource "scaleway_ipam_ip" "{name}" {{
  region = "fr-par"
  tags   = ["app=ciel", "environment={env}", "layer={layer}", "role={role}"]
  source {{ private_network_id = scaleway_vpc_private_network.main.id }}
}}""" for name, (layer, role) in declared["addresses"].items())
    return f"""
resource "scaleway_vpc" "main" {{
  name   = "ciel-{env}"
  region = "fr-par"
  tags   = {tags}
}}
resource "scaleway_vpc_private_network" "main" {{
  name   = "ciel-{env}"
  region = "fr-par"
  vpc_id = scaleway_vpc.main.id
  tags   = {tags}
  ipv4_subnet {{ subnet = "{CIDR}" }}
}}
resource "scaleway_vpc_public_gateway_ip" "main" {{
  zone = "fr-par-1"
  tags = {tags}
}}
resource "scaleway_vpc_public_gateway" "main" {{
  name  = "ciel-{env}"
  zone  = "fr-par-1"
  ip_id = scaleway_vpc_public_gateway_ip.main.id
  tags  = {tags}
  {declared["gateway"]}
}}
resource "scaleway_vpc_gateway_network" "main" {{
  gateway_id         = scaleway_vpc_public_gateway.main.id
  private_network_id = scaleway_vpc_private_network.main.id
  enable_masquerade  = true
  ipam_config {{ push_default_route = true }}
  zone = "fr-par-1"
}}
{addresses}
output "reserved" {{
  value = [{", ".join(f"scaleway_ipam_ip.{name}.address" for name in declared["addresses"])}]
}}
output "gateway_private" {{
  value = scaleway_vpc_gateway_network.main.private_ip[0].address
}}
output "gateway_status" {{
  value = [scaleway_vpc_public_gateway.main.status, scaleway_vpc_gateway_network.main.status]
}}
"""


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_the_provider_applies_our_networking_and_reserved_addresses_then_destroys_them(tmp_path, env):
    tf = tmp_path / "tf"
    with running_lab(tmp_path / "work") as lab_env:
        applied, replan, output = apply_then_replan(tf, lab_env, networking_hcl(env))
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert replan == 0, output
        outputs = {name: value["value"] for name, value in
                   json.loads(engine(tf, lab_env, "output", "-json").stdout).items()}
        destroyed = engine(tf, lab_env, "destroy", "-auto-approve", "-input=false")
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
        left = [lab_json(lab_env, "/vpc-gw/v2/zones/fr-par-1/gateways"),
                lab_json(lab_env, "/vpc-gw/v2/zones/fr-par-1/gateway-networks"),
                lab_json(lab_env, "/vpc-gw/v2/zones/fr-par-1/ips"), lab_json(lab_env, "/ipam/v1/regions/fr-par/ips")]
    assert outputs["gateway_status"] == ["running", "ready"]
    reserved = [ipaddress.ip_address(address) for address in outputs["reserved"]]
    everyone = [*reserved, ipaddress.ip_address(outputs["gateway_private"])]
    assert len(reserved) == len(ENVIRONMENTS[env]["addresses"])
    assert all(address in ipaddress.ip_network(CIDR) for address in everyone)
    assert len(set(everyone)) == len(everyone)
    assert ipaddress.ip_address("10.0.0.1") not in everyone  # the subnet's gateway address
    assert [page["total_count"] for page in left] == [0, 0, 0, 0]


# --- the API itself, in-process: the sequences the provider's waiters poll through ---------


@pytest.fixture
def call():
    from lab.api import Lab
    from lab.families import register_all
    from lab.store import Store

    lab = register_all(Lab(Store()))

    def call(method: str, path: str, body: dict | None = None, **query: str) -> tuple[int, dict]:
        return lab.handle(method, path, {name: [value] for name, value in query.items()}, body)

    return call


ZONE = "/vpc-gw/v2/zones/fr-par-1"
IPAM = "/ipam/v1/regions/fr-par/ips"


def _private_network(call) -> dict:
    _, vpc = call("POST", "/vpc/v2/regions/fr-par/vpcs", {"name": "v", "project_id": "p"})
    _, network = call("POST", "/vpc/v2/regions/fr-par/private-networks",
                      {"name": "n", "project_id": "p", "vpc_id": vpc["id"], "subnets": [CIDR]})
    return network


def test_a_gateway_allocates_runs_configures_its_network_and_refuses_changes_meanwhile(call):
    network = _private_network(call)
    status, gateway = call("POST", f"{ZONE}/gateways", {"project_id": "p", "name": "g", "type": "VPC-GW-S"})
    assert status == 200 and gateway["status"] == "allocating" and gateway["ipv4"]["gateway_id"] == gateway["id"]
    gateway_path = f"{ZONE}/gateways/{gateway['id']}"
    assert [call("GET", gateway_path)[1]["status"] for _ in range(3)] == ["allocating", "running", "running"]

    attach = {"gateway_id": gateway["id"], "private_network_id": network["id"], "enable_masquerade": True,
              "push_default_route": True}
    status, attached = call("POST", f"{ZONE}/gateway-networks", attach)
    assert status == 200 and attached["status"] == "created" and "mac_address" not in attached
    status, refused = call("PATCH", gateway_path, {"enable_bastion": True})
    assert status == 409 and refused["type"] == "transient_state" and refused["current_state"] == "configuring"
    assert [call("GET", gateway_path)[1]["status"] for _ in range(2)] == ["configuring", "running"]
    status, ready = call("GET", f"{ZONE}/gateway-networks/{attached['id']}")
    assert ready["status"] == "ready" and ready["mac_address"].startswith("02:00:00:")
    _, booked = call("GET", IPAM, resource_id=attached["id"], resource_type="vpc_gateway_network")
    assert [ip["address"] for ip in booked["ips"]] == ["10.0.0.2/24"]

    assert call("DELETE", gateway_path, delete_ip="false")[0] == 412  # a network is still attached
    status, detaching = call("DELETE", f"{ZONE}/gateway-networks/{attached['id']}")
    assert status == 200 and detaching["status"] == "detaching"
    assert call("GET", f"{ZONE}/gateway-networks/{attached['id']}")[0] == 404
    assert call("GET", IPAM)[1]["total_count"] == 0  # the address it booked went with it
    status, deleting = call("DELETE", gateway_path, delete_ip="false")
    assert status == 200 and deleting["status"] == "deleting"
    status, gone = call("GET", gateway_path)
    assert status == 404 and gone == {"message": "resource is not found", "resource": "gateway",
                                      "resource_id": gateway["id"], "type": "not_found"}
    assert "gateway_id" not in call("GET", f"{ZONE}/ips/{gateway['ipv4']['id']}")[1]  # kept, now free


def test_ipam_books_the_next_free_host_and_refuses_taken_or_reserved_addresses(call):
    network = _private_network(call)
    book = {"project_id": "p", "source": {"private_network_id": network["id"]}, "is_ipv6": False, "tags": []}
    first, second = (call("POST", IPAM, book)[1] for _ in range(2))
    assert [first["address"], second["address"]] == ["10.0.0.2/24", "10.0.0.3/24"]
    assert call("POST", IPAM, {**book, "address": "10.0.0.3"})[0] == 409
    assert call("POST", IPAM, {**book, "address": "10.0.0.1"})[0] == 400
    assert call("POST", IPAM, {**book, "address": "10.0.1.9"})[0] == 400
    assert call("DELETE", f"{IPAM}/{first['id']}")[0] == 204
    assert call("POST", IPAM, book)[1]["address"] == "10.0.0.2/24"  # a released address is free again
    _, listed = call("GET", IPAM, private_network_id=network["id"], resource_type="unknown_type",
                     order_by="created_at_asc")
    assert [ip["address"] for ip in listed["ips"]] == ["10.0.0.3/24", "10.0.0.2/24"]
