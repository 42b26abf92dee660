"""Public Gateways API (vpc-gw/v2): gateways, their public IPs, and gateway networks (a
gateway attached to a private network; the gateway's address in that network is an IPAM
address, booked through the IPAM family).

Statuses, as the recordings of the real API show them:
  gateway          allocating → running on creation; configuring → running while it applies
                   a change of its network setup (bastion, SMTP, type, SSH keys, a network
                   attached or changed); deleting in the DELETE answer, then gone. Changes
                   are refused (409 transient_state) until it runs again.
  gateway network  created, then ready (with the gateway's MAC address) once its gateway has
                   configured it; configuring → ready after a change; detaching in the DELETE
                   answer, then gone. The gateway's progress is counted in reads of the gateway
                   or of its networks, so polling either one moves both along.
  IP               no status; attached to at most one gateway.
"""

from __future__ import annotations

import ipaddress

from lab.api import ApiError, Kind, Lab, Request, invalid, new_id, not_found, now, route, transient
from lab.families import ipam

API = "vpc-gw/v2"
BASE = f"/{API}/zones/{{zone}}"
# Public bandwidth in Mbps, as gateways report it (the types list gives bps).
BANDWIDTH_MBPS = {"VPC-GW-S": 100, "VPC-GW-M": 1000}
# TEST-NET-3: gateways' public addresses are only data here, nothing is ever sent to them.
PUBLIC_RANGE = ipaddress.ip_network("203.0.113.0/24")
DEFAULT_BASTION_PORT = 61000
SOFTWARE_VERSION = "0.7.8"


def _region(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def _still_in_use(help_message: str) -> ApiError:
    return ApiError(412, {"message": "precondition is not respected", "precondition": "resource_still_in_use",
                          "help_message": help_message, "type": "precondition_failed"})


# --- IPs ------------------------------------------------------------------------------------

def _find_ip(lab: Lab, ip_id: str) -> dict:
    ip = lab.objects(IP).get(ip_id)
    if ip is None:
        raise not_found("ip", ip_id)  # the real API's name; the collection "ip" is IPAM's
    return ip


def _new_ip(lab: Lab, zone: str, project_id: str | None, tags: list[str]) -> dict:
    taken = {ip["address"] for ip in lab.objects(IP).values()}
    address = next((str(host) for host in PUBLIC_RANGE.hosts() if str(host) not in taken), None)
    if address is None:
        raise ApiError(409, {"message": "resource is out of stock", "resource": "ip", "type": "out_of_stock"})
    stamp = now()
    ip = {"id": new_id(), "address": address, "project_id": project_id, "organization_id": project_id,
          "tags": list(tags), "reverse": "-".join(reversed(address.split("."))) + ".instances.scw.cloud",
          "zone": zone, "created_at": stamp, "updated_at": stamp}
    lab.objects(IP)[ip["id"]] = ip
    return ip


def _build_ip(lab: Lab, req: Request) -> dict:
    return _new_ip(lab, req.params["zone"], req.json.get("project_id"), req.json.get("tags") or [])


def _get_ip(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, _find_ip(lab, req.params["id"])


def _update_ip(lab: Lab, req: Request) -> tuple[int, dict]:
    ip = _find_ip(lab, req.params["id"])
    if req.json.get("gateway_id") is not None:
        raise invalid("gateway_id", "the lab attaches an IP to a gateway only when the gateway is created")
    for field in ("tags", "reverse"):
        if req.json.get(field) is not None:
            ip[field] = req.json[field]
    ip["updated_at"] = now()
    lab.store.save()
    return 200, ip


def _delete_ip(lab: Lab, req: Request) -> tuple[int, None]:
    ip = _find_ip(lab, req.params["id"])
    if ip.get("gateway_id"):
        raise _still_in_use(f"ip {ip['id']} is attached to gateway {ip['gateway_id']}")
    del lab.objects(IP)[ip["id"]]
    lab.store.save()
    return 204, None


def _ip_filter(ip: dict, req: Request) -> bool:
    is_free = req.arg("is_free")
    return is_free is None or (is_free.lower() == "true") == ("gateway_id" not in ip)


# --- gateway networks -----------------------------------------------------------------------

def _configured(lab: Lab, network: dict, gateway: dict) -> dict:
    """A running gateway has configured its networks: they are ready, with its MAC address."""
    if network["status"] in ("created", "configuring") and gateway["status"] == "running":
        network["status"] = "ready"
        network["mac_address"] = lab.store.meta[network["id"]]["mac_address"]
        network["updated_at"] = now()
    return network


def _read_network(lab: Lab, network: dict) -> dict:
    """A read of a gateway network is a read of its gateway too: the gateway moves along."""
    gateway = lab.objects(GATEWAY).get(network["gateway_id"])
    if gateway is None:
        return network
    lab.settle(GATEWAY, gateway)
    return _configured(lab, network, gateway)


def _book_gateway_address(lab: Lab, network: dict, gateway: dict, ipam_ip_id: str | None) -> str:
    """The gateway's address in the private network: the IPAM address given, or one booked for it."""
    booked_here = not ipam_ip_id
    mac_address = lab.store.meta.get(network["id"], {}).get("mac_address") or ipam.new_mac()
    resource = {"type": "vpc_gateway_network", "id": network["id"], "mac_address": mac_address,
                "name": gateway["name"]}
    if ipam_ip_id:
        given = lab.get(ipam.COLLECTION, ipam_ip_id)
        subnets = lab.get("private_network", network["private_network_id"])["subnets"]
        if given["source"].get("subnet_id") not in {subnet["id"] for subnet in subnets}:
            raise invalid("ipam_ip_id", f"ip {ipam_ip_id} is not in private network {network['private_network_id']}")
        ipam.attach(lab, ipam_ip_id, resource)
    else:
        ipam_ip_id = ipam.reserve(lab, region=_region(gateway["zone"]), project_id=gateway["project_id"],
                                  private_network_id=network["private_network_id"], resource=resource)["id"]
    lab.store.meta[network["id"]] = {"mac_address": mac_address, "booked_its_ip": booked_here}
    return ipam_ip_id


def _let_go_of_address(lab: Lab, network: dict) -> None:
    """The address the network booked goes with it; an address it was given stays, detached."""
    booked_here = lab.store.meta.get(network["id"], {}).pop("booked_its_ip", False)
    if network["ipam_ip_id"] in lab.objects(ipam.COLLECTION):
        (ipam.release if booked_here else ipam.detach)(lab, network["ipam_ip_id"])


def _build_network(lab: Lab, req: Request) -> dict:
    body = req.json
    gateway = lab.get(GATEWAY, body.get("gateway_id", ""))
    lab.check_settled(GATEWAY, gateway)
    private_network_id = body.get("private_network_id", "")
    lab.get("private_network", private_network_id)
    for other in lab.objects(NETWORK).values():
        if other["private_network_id"] == private_network_id:
            raise invalid("private_network_id",
                          f"private network {private_network_id} is already attached to gateway {other['gateway_id']}")
    push_default_route = bool(body.get("push_default_route"))
    network = {"id": new_id(), "gateway_id": gateway["id"], "private_network_id": private_network_id,
               # A pushed default route needs masquerading: the API turns it on.
               "masquerade_enabled": bool(body.get("enable_masquerade")) or push_default_route,
               "push_default_route": push_default_route, "status": "created"}
    network["ipam_ip_id"] = _book_gateway_address(lab, network, gateway, body.get("ipam_ip_id"))
    return network


def _create_network(lab: Lab, req: Request) -> tuple[int, dict]:
    network = lab.create(NETWORK, req)
    lab.set_transient(GATEWAY, lab.get(GATEWAY, network["gateway_id"]), "configuring")
    lab.store.save()
    return 200, network


def _get_network(lab: Lab, req: Request) -> tuple[int, dict]:
    network = _read_network(lab, lab.get(NETWORK, req.params["id"]))
    lab.store.save()
    return 200, network


def _list_networks(lab: Lab, req: Request) -> tuple[int, dict]:
    listed = lab.list(NETWORK, req)
    listed["gateway_networks"] = [_read_network(lab, network) for network in listed["gateway_networks"]]
    return 200, listed


def _network_filter(network: dict, req: Request) -> bool:
    return all(name not in req.query or network[field] in req.query[name]
               for name, field in (("gateway_ids", "gateway_id"), ("private_network_ids", "private_network_id")))


def _settled_network(lab: Lab, network_id: str) -> dict:
    network = _read_network(lab, lab.get(NETWORK, network_id))
    if network["status"] != "ready":
        raise transient("gateway_network", network["id"], network["status"])
    return network


def _update_network(lab: Lab, req: Request) -> tuple[int, dict]:
    network = _settled_network(lab, req.params["id"])
    gateway = lab.get(GATEWAY, network["gateway_id"])
    body = req.json
    if body.get("enable_masquerade") is not None:
        network["masquerade_enabled"] = body["enable_masquerade"]
    if body.get("push_default_route") is not None:
        network["push_default_route"] = body["push_default_route"]
        network["masquerade_enabled"] = network["masquerade_enabled"] or body["push_default_route"]
    if body.get("ipam_ip_id") and body["ipam_ip_id"] != network["ipam_ip_id"]:
        _let_go_of_address(lab, network)
        network["ipam_ip_id"] = _book_gateway_address(lab, network, gateway, body["ipam_ip_id"])
    network["status"] = "configuring"
    network["updated_at"] = now()
    lab.set_transient(GATEWAY, gateway, "configuring")
    lab.store.save()
    return 200, network


def _delete_network(lab: Lab, req: Request) -> tuple[int, dict]:
    network = _settled_network(lab, req.params["id"])
    _let_go_of_address(lab, network)
    del lab.objects(NETWORK)[network["id"]]
    lab.store.meta.pop(network["id"], None)
    lab.store.save()
    return 200, {**network, "status": "detaching", "updated_at": now()}


# --- gateways -------------------------------------------------------------------------------

def _gateway_type(requested: str | None) -> str:
    name = (requested or "").upper()
    if name not in BANDWIDTH_MBPS:
        raise invalid("type", f"unknown gateway type {requested!r}; the lab offers {', '.join(BANDWIDTH_MBPS)}")
    return name


def _bastion_port(port: int) -> int:
    if not (1024 <= port <= 59999 or port == DEFAULT_BASTION_PORT):
        raise invalid("bastion_port", f"must be within 1024-59999, or {DEFAULT_BASTION_PORT}")
    return port


def _view(lab: Lab, gateway: dict) -> dict:
    """A gateway as the API shows it: with its public IP and its networks, as they are now."""
    ipv4 = _gateway_ip(lab, gateway)
    networks = [dict(_configured(lab, network, gateway)) for network in _networks_of(lab, gateway)]
    return {**gateway, "ipv4": dict(ipv4) if ipv4 else None, "gateway_networks": networks}


def _gateway_ip(lab: Lab, gateway: dict) -> dict | None:
    return next((ip for ip in lab.objects(IP).values() if ip.get("gateway_id") == gateway["id"]), None)


def _networks_of(lab: Lab, gateway: dict) -> list[dict]:
    return [network for network in lab.objects(NETWORK).values() if network["gateway_id"] == gateway["id"]]


def _build_gateway(lab: Lab, req: Request) -> dict:
    body = req.json
    zone, project_id = req.params["zone"], body.get("project_id")
    kind = _gateway_type(body.get("type"))
    port = _bastion_port(body.get("bastion_port") or DEFAULT_BASTION_PORT)
    if body.get("ip_id"):
        ip = _find_ip(lab, body["ip_id"])
        if ip.get("gateway_id"):
            raise _still_in_use(f"ip {ip['id']} is attached to gateway {ip['gateway_id']}")
    else:
        ip = _new_ip(lab, zone, project_id, [])
    gateway_id = new_id()
    ip["gateway_id"] = gateway_id
    return {"id": gateway_id, "name": body.get("name") or f"gw-{gateway_id[:8]}", "project_id": project_id,
            "tags": body.get("tags") or [], "type": kind, "bandwidth": BANDWIDTH_MBPS[kind],
            "bastion_enabled": bool(body.get("enable_bastion")), "bastion_port": port,
            "bastion_allowed_ips": ["0.0.0.0/0"], "smtp_enabled": bool(body.get("enable_smtp")),
            "is_legacy": False, "version": SOFTWARE_VERSION}


def _create_gateway(lab: Lab, req: Request) -> tuple[int, dict]:
    gateway = lab.create(GATEWAY, req)
    lab.set_transient(GATEWAY, gateway, "allocating")
    lab.store.save()
    return 200, _view(lab, gateway)


def _get_gateway(lab: Lab, req: Request) -> tuple[int, dict]:
    gateway = lab.read(GATEWAY, req.params["id"])
    view = _view(lab, gateway)
    lab.store.save()
    return 200, view


def _list_gateways(lab: Lab, req: Request) -> tuple[int, dict]:
    listed = lab.list(GATEWAY, req)
    views = [_view(lab, gateway) for gateway in listed["gateways"]]
    wanted_networks = set(req.query.get("private_network_ids", []))
    if wanted_networks:  # a filter on the networks attached, which the stored gateway does not hold
        views = [view for view in views
                 if wanted_networks & {network["private_network_id"] for network in view["gateway_networks"]}]
        listed["total_count"] = len(views)
    listed["gateways"] = views
    return 200, listed


def _gateway_filter(gateway: dict, req: Request) -> bool:
    return "types" not in req.query or gateway["type"] in req.query["types"]


def _settled_gateway(lab: Lab, gateway_id: str) -> dict:
    gateway = lab.get(GATEWAY, gateway_id)
    lab.check_settled(GATEWAY, gateway)
    return gateway


def _answer_then_configure(lab: Lab, gateway: dict) -> tuple[int, dict]:
    """The answer to a change shows the gateway still running; the next reads show it configuring."""
    gateway["updated_at"] = now()
    view = _view(lab, gateway)
    lab.set_transient(GATEWAY, gateway, "configuring")
    lab.store.save()
    return 200, view


def _update_gateway(lab: Lab, req: Request) -> tuple[int, dict]:
    gateway = _settled_gateway(lab, req.params["id"])
    body = req.json
    for field in ("name", "tags"):
        if body.get(field) is not None:
            gateway[field] = body[field]
    if body.get("bastion_port") is not None:
        body["bastion_port"] = _bastion_port(body["bastion_port"])
    reconfigured = False
    for sent, field in (("enable_bastion", "bastion_enabled"), ("bastion_port", "bastion_port"),
                        ("enable_smtp", "smtp_enabled")):
        if body.get(sent) is not None and body[sent] != gateway[field]:
            gateway[field] = body[sent]
            reconfigured = True
    if reconfigured:
        return _answer_then_configure(lab, gateway)
    gateway["updated_at"] = now()
    lab.store.save()
    return 200, _view(lab, gateway)


def _upgrade_gateway(lab: Lab, req: Request) -> tuple[int, dict]:
    gateway = _settled_gateway(lab, req.params["id"])
    if req.json.get("type"):
        gateway["type"] = _gateway_type(req.json["type"])
        gateway["bandwidth"] = BANDWIDTH_MBPS[gateway["type"]]
    return _answer_then_configure(lab, gateway)


def _refresh_ssh_keys(lab: Lab, req: Request) -> tuple[int, dict]:
    return _answer_then_configure(lab, _settled_gateway(lab, req.params["id"]))


def _set_bastion_allowed_ips(lab: Lab, req: Request) -> tuple[int, dict]:
    gateway = _settled_gateway(lab, req.params["id"])
    ranges = req.json.get("ip_ranges") or []
    for text in ranges:
        try:
            ipaddress.ip_network(text)
        except ValueError:
            raise invalid("ip_ranges", f"{text} is not a network in CIDR notation", reason="format") from None
    gateway["bastion_allowed_ips"] = list(ranges)
    gateway["updated_at"] = now()
    lab.store.save()
    return 200, {"ip_ranges": gateway["bastion_allowed_ips"]}


def _delete_gateway(lab: Lab, req: Request) -> tuple[int, dict]:
    gateway = _settled_gateway(lab, req.params["id"])
    attached = [network["id"] for network in _networks_of(lab, gateway)]
    if attached:
        raise _still_in_use(f"gateway {gateway['id']} still has gateway networks: {', '.join(attached)}")
    view = _view(lab, gateway)
    ip = _gateway_ip(lab, gateway)
    if ip and (req.arg("delete_ip") or "false").lower() == "true":
        del lab.objects(IP)[ip["id"]]
    elif ip:
        del ip["gateway_id"]
    del lab.objects(GATEWAY)[gateway["id"]]
    lab.store.meta.pop(gateway["id"], None)
    lab.store.save()
    return 200, {**view, "status": "deleting"}


def _gateway_types(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, {"types": [{"name": name, "bandwidth": mbps * 1_000_000, "zone": req.params["zone"]}
                           for name, mbps in BANDWIDTH_MBPS.items()]}


GATEWAY = Kind(API, "zones", "gateways", "gateways", "gateway", _build_gateway, statuses=("configuring", "running"),
               settle_reads=2, refuse_while_transient=True, list_filter=_gateway_filter)
NETWORK = Kind(API, "zones", "gateway-networks", "gateway_networks", "gateway_network", _build_network,
               list_filter=_network_filter)
IP = Kind(API, "zones", "ips", "ips", "gateway_ip", _build_ip, list_filter=_ip_filter)


def register(lab: Lab) -> None:
    for kind in (GATEWAY, NETWORK, IP):
        lab.add_kind(kind, with_routes=False)
    lab.add(route("POST", f"{BASE}/gateways", _create_gateway), route("GET", f"{BASE}/gateways", _list_gateways),
            route("GET", f"{BASE}/gateways/{{id}}", _get_gateway),
            route("PATCH", f"{BASE}/gateways/{{id}}", _update_gateway),
            route("DELETE", f"{BASE}/gateways/{{id}}", _delete_gateway),
            route("POST", f"{BASE}/gateways/{{id}}/upgrade", _upgrade_gateway),
            route("POST", f"{BASE}/gateways/{{id}}/refresh-ssh-keys", _refresh_ssh_keys),
            route("PUT", f"{BASE}/gateways/{{id}}/bastion-allowed-ips", _set_bastion_allowed_ips),
            route("GET", f"{BASE}/gateway-types", _gateway_types),
            route("POST", f"{BASE}/gateway-networks", _create_network),
            route("GET", f"{BASE}/gateway-networks", _list_networks),
            route("GET", f"{BASE}/gateway-networks/{{id}}", _get_network),
            route("PATCH", f"{BASE}/gateway-networks/{{id}}", _update_network),
            route("DELETE", f"{BASE}/gateway-networks/{{id}}", _delete_network),
            route("POST", f"{BASE}/ips", lambda lab, req: (200, lab.create(IP, req))),
            route("GET", f"{BASE}/ips", lambda lab, req: (200, lab.list(IP, req))),
            route("GET", f"{BASE}/ips/{{id}}", _get_ip), route("PATCH", f"{BASE}/ips/{{id}}", _update_ip),
            route("DELETE", f"{BASE}/ips/{{id}}", _delete_ip))
