"""IPAM API (ipam/v1): private addresses booked in the subnets of private networks.

An address is an object of the collection "ip": `address` in CIDR form ("10.0.0.2/24"),
`source` naming the subnet it was booked in, `resource` the thing it is attached to
(`None` while it is only reserved). Booking takes the next free address of the subnet,
as the real API does: never the network address, never the subnet's gateway (.1), never
the broadcast address.

Other families book and attach addresses through the functions below rather than the
HTTP routes, with `resource` as the real API shows it:
    {"type": "instance_private_nic", "id": <nic id>, "mac_address": "02:00:00:..", "name": <server name>}

    reserve(lab, region=, private_network_id=, project_id=, resource=)  book an address
    attach(lab, ip_id, resource) / detach(lab, ip_id)                  (un)bind a booked address
    release(lab, ip_id)                                                 free it (managed products)
    attached_to(lab, resource_id)                                       the addresses of a resource
    new_mac()                                                           a MAC address as Scaleway gives one
"""

from __future__ import annotations

import ipaddress
import random

from lab.api import ApiError, Lab, Request, copy_fields, invalid, new_id, not_found, now, route

COLLECTION = "ip"
BASE = "/ipam/v1/regions/{region}/ips"


def new_mac() -> str:
    """A locally administered MAC address, upper case like the real API's (02:00:00:XX:XX:XX)."""
    return "02:00:00:" + ":".join(f"{random.randrange(256):02X}" for _ in range(3))


def _resource(resource: dict) -> dict:
    mac = resource.get("mac_address")
    return {"type": resource["type"], "id": resource["id"], "mac_address": mac.upper() if mac else None,
            "name": resource.get("name")}


def _network_of_subnet(lab: Lab, subnet_id: str) -> dict | None:
    for network in lab.objects("private_network").values():
        if any(subnet["id"] == subnet_id for subnet in network.get("subnets", [])):
            return network
    return None


def _subnet(network: dict, is_ipv6: bool) -> dict:
    for subnet in network.get("subnets", []):
        if ipaddress.ip_network(subnet["subnet"]).version == (6 if is_ipv6 else 4):
            return subnet
    raise invalid("is_ipv6", f"private network {network['id']} has no IPv{6 if is_ipv6 else 4} subnet")


def _pick_address(lab: Lab, subnet: dict, wanted: str | None) -> str:
    network = ipaddress.ip_network(subnet["subnet"])
    taken = {}
    for ip in lab.objects(COLLECTION).values():
        if ip["source"].get("subnet_id") == subnet["id"]:
            taken[ipaddress.ip_interface(ip["address"]).ip] = ip["id"]
    hosts = network.hosts()  # without the network and broadcast addresses
    gateway = next(hosts)  # the subnet's first host: the real API never books it
    if wanted is not None:
        try:
            address = ipaddress.ip_address(wanted)
        except ValueError:
            raise invalid("address", f"{wanted} is not an IP address", reason="format") from None
        if address not in network or address in (gateway, network.network_address, network.broadcast_address):
            raise invalid("address", f"{wanted} is not a host address of {network} that can be booked")
        if address in taken:
            raise ApiError(409, {"message": "resource already exists", "resource": "ip",
                                 "resource_id": taken[address], "type": "already_exists"})
    else:
        address = next((host for host in hosts if host not in taken), None)
        if address is None:
            raise ApiError(409, {"message": "resource is out of stock", "resource": "ip", "type": "out_of_stock"})
    return f"{address}/{network.prefixlen}"


def reserve(lab: Lab, *, region: str, private_network_id: str, project_id: str, resource: dict | None,
            is_ipv6: bool = False, address: str | None = None, tags: list[str] | None = None) -> dict:
    """Book an address in the private network (the next free one, or `address`) and store it."""
    network = lab.get("private_network", private_network_id)
    subnet = _subnet(network, is_ipv6)
    stamp = now()
    ip = {"id": new_id(), "address": _pick_address(lab, subnet, address), "project_id": project_id,
          "is_ipv6": is_ipv6, "created_at": stamp, "updated_at": stamp, "source": {"subnet_id": subnet["id"]},
          "resource": _resource(resource) if resource else None, "tags": list(tags or []), "reverses": [],
          "region": region, "zone": None}
    lab.objects(COLLECTION)[ip["id"]] = ip
    lab.store.save()
    return ip


def _still_in_use(ip: dict) -> ApiError:
    owner = ip["resource"]
    return ApiError(412, {"message": "precondition is not respected", "precondition": "resource_still_in_use",
                          "help_message": f"ip {ip['id']} is attached to {owner['type']} {owner['id']}",
                          "type": "precondition_failed"})


def attach(lab: Lab, ip_id: str, resource: dict) -> dict:
    """Bind a booked address to `resource`; refused while it is bound to another one."""
    ip = lab.get(COLLECTION, ip_id)
    if ip["resource"] and ip["resource"]["id"] != resource["id"]:
        raise _still_in_use(ip)
    ip["resource"] = _resource(resource)
    ip["updated_at"] = now()
    lab.store.save()
    return ip


def detach(lab: Lab, ip_id: str) -> dict:
    """Unbind an address: it stays booked (reserved) until released."""
    ip = lab.get(COLLECTION, ip_id)
    ip["resource"] = None
    ip["updated_at"] = now()
    lab.store.save()
    return ip


def release(lab: Lab, ip_id: str) -> None:
    """Free an address, attached or not (what a managed product does when it goes away)."""
    lab.get(COLLECTION, ip_id)
    del lab.objects(COLLECTION)[ip_id]
    lab.store.save()


def attached_to(lab: Lab, resource_id: str) -> list[dict]:
    return [ip for ip in lab.objects(COLLECTION).values() if ip["resource"] and ip["resource"]["id"] == resource_id]


# --- HTTP -----------------------------------------------------------------------------------


def _custom(ip_id: str, body: dict | None) -> dict | None:
    """A resource of the caller's own (`custom_resource`): known by its MAC address only."""
    if not body:
        return None
    return {"type": "custom", "id": ip_id, "mac_address": body.get("mac_address"), "name": body.get("name")}


def _book(lab: Lab, req: Request) -> tuple[int, dict]:
    body = req.json
    source = body.get("source") or {}
    if source.get("subnet_id"):
        network = _network_of_subnet(lab, source["subnet_id"])
        if network is None:
            raise not_found("subnet", source["subnet_id"])
        network_id = network["id"]
    elif source.get("private_network_id"):
        network_id = source["private_network_id"]
    else:  # zonal (public) and VPC-wide sources are other products' business
        raise invalid("source", "the lab books addresses in private networks only (private_network_id or subnet_id)")
    ip = reserve(lab, region=req.params["region"], private_network_id=network_id, project_id=body.get("project_id"),
                 resource=None, is_ipv6=bool(body.get("is_ipv6")), address=body.get("address"), tags=body.get("tags"))
    if body.get("resource"):
        ip = attach(lab, ip["id"], _custom(ip["id"], body["resource"]))
    return 200, ip


def _get(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, lab.get(COLLECTION, req.params["id"])


def _update(lab: Lab, req: Request) -> tuple[int, dict]:
    ip = copy_fields(lab.get(COLLECTION, req.params["id"]), req.json, ("tags", "reverses"))
    lab.store.save()
    return 200, ip


def _release(lab: Lab, req: Request) -> tuple[int, None]:
    ip = lab.get(COLLECTION, req.params["id"])
    # A product's address goes when the product lets it go; a custom resource's may go at once.
    if ip["resource"] and ip["resource"]["type"] != "custom":
        raise _still_in_use(ip)
    release(lab, ip["id"])
    return 204, None


def _release_set(lab: Lab, req: Request) -> tuple[int, None]:
    for ip_id in req.json.get("ip_ids") or []:
        release(lab, ip_id)
    return 204, None


def _attach(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, attach(lab, req.params["id"], _custom(req.params["id"], req.json.get("resource")))


def _detach(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, detach(lab, req.params["id"])


def _move(lab: Lab, req: Request) -> tuple[int, dict]:
    destination = _custom(req.params["id"], req.json.get("to_resource"))
    ip = detach(lab, req.params["id"])
    return 200, attach(lab, ip["id"], destination) if destination else ip


def _matches(lab: Lab, ip: dict, req: Request) -> bool:
    """The list filters of ListIPs; `resource_type=unknown_type` (what the SDK sends by default) means any."""
    resource = ip["resource"] or {}
    network = _network_of_subnet(lab, ip["source"].get("subnet_id", ""))
    checks = {
        "project_id": lambda value: ip["project_id"] == value,
        "private_network_id": lambda value: network is not None and network["id"] == value,
        "subnet_id": lambda value: ip["source"].get("subnet_id") == value,
        "vpc_id": lambda value: network is not None and network.get("vpc_id") == value,
        "source_vpc_id": lambda value: network is not None and network.get("vpc_id") == value,
        "zonal": lambda value: ip["zone"] == value,
        "attached": lambda value: (value.lower() == "true") == bool(ip["resource"]),
        "is_ipv6": lambda value: (value.lower() == "true") == ip["is_ipv6"],
        "resource_id": lambda value: resource.get("id") == value,
        "resource_name": lambda value: resource.get("name") == value,
        "resource_type": lambda value: value == "unknown_type" or resource.get("type") == value,
        "mac_address": lambda value: (resource.get("mac_address") or "").lower() == value.lower(),
    }
    for name, check in checks.items():
        value = req.arg(name)
        if value is not None and not check(value):
            return False
    one_of = {"resource_ids": resource.get("id"), "resource_types": resource.get("type"), "ip_ids": ip["id"]}
    for name, own in one_of.items():
        if name in req.query and own not in req.query[name]:
            return False
    return all(tag in ip["tags"] for tag in req.query.get("tags", []))


def _sort_key(order: str):
    if order.startswith("ip_address"):
        return lambda ip: ipaddress.ip_interface(ip["address"]).ip.packed
    if order.startswith("updated_at"):
        return lambda ip: ip["updated_at"]
    return lambda ip: ip["created_at"]


def _list(lab: Lab, req: Request) -> tuple[int, dict]:
    order = req.arg("order_by", "created_at_desc")
    found = [ip for ip in lab.objects(COLLECTION).values()
             if ip["region"] == req.params["region"] and _matches(lab, ip, req)]
    found.sort(key=_sort_key(order), reverse=order.endswith("_desc"))
    page = int(req.arg("page", "1") or 1)
    return 200, {"ips": found if page == 1 else [], "total_count": len(found)}


def register(lab: Lab) -> None:
    lab.add(route("POST", BASE, _book), route("GET", BASE, _list), route("GET", BASE + "/{id}", _get),
            route("PATCH", BASE + "/{id}", _update), route("DELETE", BASE + "/{id}", _release),
            route("POST", BASE + "/{id}/attach", _attach), route("POST", BASE + "/{id}/detach", _detach),
            route("POST", BASE + "/{id}/move", _move),
            route("POST", "/ipam/v1/regions/{region}/ip-sets/release", _release_set))
