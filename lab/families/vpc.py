"""VPC API (vpc/v2): VPCs and private networks."""

from __future__ import annotations

import ipaddress

from lab.api import Kind, Lab, Request, invalid, new_id, now


def _vpc(lab: Lab, req: Request) -> dict:
    body = req.json
    # Routing is always on for new VPCs, whatever `enable_routing` says (as recorded).
    return {"name": body.get("name") or f"vpc-{new_id()[:8]}", "project_id": body.get("project_id"),
            "tags": body.get("tags") or [], "is_default": False, "private_network_count": 0, "routing_enabled": True,
            "transitivity_enabled": bool(body.get("enable_transitivity", True)),
            "custom_routes_propagation_enabled": True, "s3_integration_enabled": False}


def _default_vpc(lab: Lab, region: str, project_id: str) -> str:
    for vpc in lab.objects("vpc").values():
        if vpc.get("is_default") and vpc["region"] == region and vpc.get("project_id") == project_id:
            return vpc["id"]
    stamp = now()
    vpc = {"id": new_id(), "name": "default", "project_id": project_id, "organization_id": project_id,
           "region": region, "tags": [], "is_default": True, "private_network_count": 0, "routing_enabled": True,
           "transitivity_enabled": True, "custom_routes_propagation_enabled": True, "s3_integration_enabled": False,
           "created_at": stamp,
           "updated_at": stamp}
    lab.objects("vpc")[vpc["id"]] = vpc
    return vpc["id"]


def _subnet(network: str, private_network_id: str, vpc_id: str, project_id: str, region: str) -> dict:
    stamp = now()
    return {"id": new_id(), "created_at": stamp, "updated_at": stamp, "subnet": network, "region": region,
            "private_network_id": private_network_id, "project_id": project_id, "vpc_id": vpc_id}


def _private_network(lab: Lab, req: Request) -> dict:
    body = req.json
    project = body.get("project_id")
    region = req.params["region"]
    vpc_id = body.get("vpc_id") or _default_vpc(lab, region, project)
    lab.get("vpc", vpc_id)["private_network_count"] += 1
    network_id = new_id()
    subnets = []
    for text in body.get("subnets") or ["172.16.0.0/22"]:
        try:
            ipaddress.ip_network(text)
        except ValueError:
            raise invalid("subnets", f"{text} is not a network in CIDR notation") from None
        subnets.append(_subnet(text, network_id, vpc_id, project, region))
    # Scaleway adds an IPv6 /64 to every private network.
    subnets.append(_subnet(f"fd46:78ab:30b8:{len(lab.objects('private_network')) % 0xffff:x}::/64", network_id,
                           vpc_id, project, region))
    return {"id": network_id, "name": body.get("name") or f"pn-{network_id[:8]}", "project_id": project,
            "tags": body.get("tags") or [], "vpc_id": vpc_id, "subnets": subnets, "dhcp_enabled": True,
            "has_s3_integration": False,
            "default_route_propagation_enabled": bool(body.get("default_route_propagation_enabled", False))}


def _forget_network(lab: Lab, network: dict) -> None:
    vpc = lab.objects("vpc").get(network["vpc_id"])
    if vpc:
        vpc["private_network_count"] = max(0, vpc["private_network_count"] - 1)


def _refuse_busy_vpc(lab: Lab, vpc: dict) -> None:
    if vpc.get("private_network_count"):
        raise invalid("vpc_id", "the VPC still holds private networks", reason="precondition_failed")


def register(lab: Lab) -> None:
    lab.add_kind(Kind("vpc/v2", "regions", "vpcs", "vpcs", "vpc", _vpc, updatable=("name", "tags"),
                      on_delete=_refuse_busy_vpc))
    lab.add_kind(Kind("vpc/v2", "regions", "private-networks", "private_networks", "private_network",
                      _private_network, updatable=("name", "tags", "default_route_propagation_enabled"),
                      on_delete=_forget_network))
