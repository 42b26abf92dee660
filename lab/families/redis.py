"""Managed Redis API (redis/v1, zones): clusters, their settings, ACL rules, endpoints and
TLS certificate, and the versions catalogue.

Statuses as recorded: a cluster is `provisioning` once created, migrated or given a new
name, user or password, `configuring` after its settings or endpoints change; deleting
answers it in `deleting`, then it is gone (404). Changes to a busy cluster are refused
(409 transient_state).

A cluster without an endpoint asked for is public; a private network endpoint without
service IPs takes its addresses from IPAM (one per node in cluster mode), as the rdb family
does. ACL rules apply to the public endpoint only.
"""

from __future__ import annotations

import ipaddress
import re

from lab.api import ApiError, Kind, Lab, Request, invalid, new_id, now, route
from lab.families.rdb import (certificate_file, check_password, ipv4_subnet, public_address, release_address,
                              reserve_address)

API = "/redis/v1/zones/{zone}"
PORT = 6379
# Built by the routes below (not the generic create). Stored as "redis_cluster" (Kapsule's are
# "cluster"); errors name it "cluster", as the API does.
CLUSTER = Kind("redis/v1", "zones", "clusters", "clusters", "redis_cluster", lambda lab, req: {},
               statuses=("provisioning", "ready"))
NODE_TYPES = ("RED1-MICRO", "RED1-XS", "RED1-S", "RED1-M", "RED1-L", "RED1-XL", "RED1-2XL")

# name → (default, type, min, max, pattern, description)
_SETTINGS = {
    "tcp-keepalive": ("300", "INT", None, 65536, None, "Period (in seconds) used to send ACKs."),
    "maxclients": ("10000", "INT", 100, 65536, None, "Set the max number of connected clients at the same time."),
    "maxmemory-policy": ("noeviction", "STRING", None, None,
                         "volatile-lru|allkeys-lru|volatile-lfu|allkeys-lfu|volatile-random|allkeys-random|"
                         "volatile-ttl|noeviction", "How Redis will select what to remove when maxmemory is reached."),
    "databases": ("16", "INT", 1, 128, None, "Set number of Redis databases"),
    "notify-keyspace-events": ('""', "STRING", None, None, r"^(?:([KEg$lshzxetdnm])(?!.*\1))+$",
                               "Configure the keyspace event notification feature"),
    "disable-save": ("false", "BOOLEAN", None, None, None, "Disable Redis rdb persistence file on disk"),
    "slowlog-log-slower-than": ("10000", "INT", -1, 100000000, None,
                                "Log queries that exceed this duration in microseconds (set to -1 to disable)"),
    "slowlog-max-len": ("128", "INT", 1, 10000, None, "Maximum length of the slow log"),
}
# version → (end of life, deprecated); the newest versions the recordings show.
VERSIONS = {"8.4.0": ("2027-05-01", False), "7.2.11": ("2026-02-28", False), "7.0.5": ("2024-10-28", True),
            "6.2.7": ("2023-02-28", True)}


def _region(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def _versions(lab: Lab, req: Request) -> tuple[int, dict]:
    with_deprecated = req.arg("include_deprecated", "false") == "true"
    settings = [{"default_value": default, "deprecated": False, "description": text, "max_value": high,
                 "min_value": low, "name": name, "regex": pattern, "type": kind}
                for name, (default, kind, low, high, pattern, text) in _SETTINGS.items()]
    versions = [{"available_settings": settings, "end_of_life_at": f"{end}T00:00:00Z",
                 "logo_url": "https://s3.fr-par.scw.cloud/scw-rkv-logos/logo.svg", "version": version,
                 "zone": req.params["zone"]}
                for version, (end, deprecated) in VERSIONS.items()
                if (with_deprecated or not deprecated) and req.arg("version") in (None, version)]
    return 200, {"total_count": len(versions), "versions": versions}


def _checked_settings(sent: list | None) -> list[dict]:
    settings = []
    for setting in sent or []:
        name, value = setting.get("name"), str(setting.get("value"))
        if name not in _SETTINGS:
            raise invalid("settings", f"setting {name!r} is not available")
        _, kind, low, high, pattern, _ = _SETTINGS[name]
        if kind == "INT":
            valid = bool(re.fullmatch(r"-?\d+", value)) and (low is None or int(value) >= low) and (
                high is None or int(value) <= high)
        elif kind == "BOOLEAN":
            valid = value in ("true", "false")
        else:
            valid = bool(re.fullmatch(pattern, value))
        if not valid:
            raise invalid("settings", f"{value!r} is not a valid value for {name}")
        settings.append({"name": name, "value": value})
    return settings


def _acl_rules(sent: list | None) -> list[dict]:
    rules = []
    for rule in sent or []:
        try:
            network = ipaddress.IPv4Network(rule.get("ip_cidr") or "")
        except ValueError:
            raise invalid("ip_cidr", f"{rule.get('ip_cidr')!r} is not an IPv4 network") from None
        rules.append({"description": rule.get("description") or "", "id": new_id(), "ip_cidr": str(network)})
    return rules


def _book_addresses(lab: Lab, cluster: dict, endpoint: dict) -> None:
    """Give an IPAM endpoint an address per node in cluster mode, one for a standalone or HA cluster."""
    network = endpoint["private_network"]
    nodes = cluster["cluster_size"] if cluster["cluster_size"] >= 3 else 1
    booked = lab.store.meta.setdefault(endpoint["id"], {}).setdefault("ipam_ip_ids", [])
    while len(network["service_ips"]) < nodes:
        address, ipam_ip_id = reserve_address(
            lab, region=_region(cluster["zone"]), private_network_id=network["id"], project_id=cluster["project_id"],
            resource={"id": cluster["id"], "type": "redis_cluster", "name": cluster["name"]})
        network["service_ips"].append(address)
        endpoint["ips"].append(address.split("/")[0])
        booked.append(ipam_ip_id)


def _endpoint(lab: Lab, spec: dict, cluster: dict) -> dict:
    endpoint_id = new_id()
    if "private_network" in spec:
        network = spec["private_network"] or {}
        network_id, service_ips = network.get("id"), network.get("service_ips") or []
        if service_ips:
            subnet = ipv4_subnet(lab, network_id)
            if any(ipaddress.ip_interface(ip).ip not in subnet for ip in service_ips):
                raise invalid("service_ips", f"the service IPs must be in the private network's subnet {subnet}")
        endpoint = {"id": endpoint_id, "ips": [ip.split("/")[0] for ip in service_ips], "port": PORT,
                    "private_network": {"id": network_id, "provisioning_mode": "static" if service_ips else "ipam",
                                        "service_ips": list(service_ips), "zone": cluster["zone"]}}
        if not service_ips:
            _book_addresses(lab, cluster, endpoint)
        return endpoint
    if "public_network" in spec:
        return {"id": endpoint_id, "ips": [public_address(endpoint_id)], "port": PORT, "public_network": {}}
    raise invalid("endpoints", "one of private_network or public_network is required")


def _forget_endpoints(lab: Lab, endpoints: list[dict]) -> None:
    for endpoint in endpoints:
        for ipam_ip_id in lab.store.meta.pop(endpoint["id"], {}).get("ipam_ip_ids", []):
            release_address(lab, ipam_ip_id)


def _set_endpoints_of(lab: Lab, cluster: dict, specs: list | None) -> None:
    specs = specs or [{"public_network": {}}]
    if any("private_network" in spec for spec in specs) and cluster["acl_rules"]:
        raise invalid("endpoints", "ACL rules apply to public endpoints only; remove them first")
    built: list[dict] = []
    try:
        for spec in specs:
            built.append(_endpoint(lab, spec, cluster))
    except ApiError:  # all or nothing: a refused endpoint releases the addresses booked before it
        _forget_endpoints(lab, built)
        raise
    _forget_endpoints(lab, cluster["endpoints"])
    cluster["endpoints"] = built


def _check_node_type(node_type: str | None) -> None:
    if (node_type or "").upper() not in NODE_TYPES:
        raise invalid("node_type", f"unknown node type {node_type!r}; available: {', '.join(NODE_TYPES)}")


def _check_version(version: str | None) -> None:
    if version not in VERSIONS:
        raise invalid("version", f"version {version!r} is not available; available: {', '.join(VERSIONS)}")


def _check_size(size: int) -> None:
    if not 1 <= size <= 6:
        raise invalid("cluster_size", "a cluster has 1 node, 2 (high availability) or 3 to 6 (cluster mode)")


def _create(lab: Lab, req: Request) -> tuple[int, dict]:
    body, zone = req.json, req.params["zone"]
    _check_version(body.get("version"))
    _check_node_type(body.get("node_type"))
    if not body.get("user_name"):
        raise invalid("user_name", "a user name is required")
    check_password(body.get("password"))
    size = int(body.get("cluster_size") or 1)
    _check_size(size)
    cluster_id = new_id()
    cluster = {"acl_rules": _acl_rules(body.get("acl_rules")),
               "cluster_settings": _checked_settings(body.get("cluster_settings")), "cluster_size": size,
               "created_at": now(), "endpoints": [], "id": cluster_id,
               "name": body.get("name") or f"redis-{cluster_id[:8]}", "node_type": body["node_type"],
               "project_id": body.get("project_id"), "tags": body.get("tags") or [],
               "tls_enabled": bool(body.get("tls_enabled")), "updated_at": None, "upgradable_versions": [],
               "user_name": body["user_name"], "version": body["version"], "zone": zone}
    _set_endpoints_of(lab, cluster, body.get("endpoints"))
    lab.objects(CLUSTER)[cluster_id] = cluster
    lab.set_transient(CLUSTER, cluster)
    if cluster["tls_enabled"]:
        lab.store.meta[cluster_id]["certificate"] = certificate_file(f"{cluster_id}.redis.{zone}.scw.cloud")
    lab.store.save()
    return 200, cluster


def _cluster_of(lab: Lab, cluster_id: str) -> dict:
    return lab.get(CLUSTER, cluster_id, resource="cluster")


def _ready_cluster(lab: Lab, cluster_id: str) -> dict:
    return lab.get_settled(CLUSTER, cluster_id, resource="cluster")


def _changed(lab: Lab, cluster: dict, status: str) -> None:
    cluster["updated_at"] = now()
    lab.set_transient(CLUSTER, cluster, status)
    lab.store.save()


def _read(lab: Lab, req: Request) -> tuple[int, dict]:
    cluster = _cluster_of(lab, req.params["id"])
    lab.settle(CLUSTER, cluster)
    return 200, cluster


def _update(lab: Lab, req: Request) -> tuple[int, dict]:
    cluster, body = _ready_cluster(lab, req.params["id"]), req.json
    if body.get("password") is not None:
        check_password(body["password"])
    sent = {field: body[field] for field in ("name", "tags", "user_name", "password") if body.get(field) is not None}
    cluster.update({field: value for field, value in sent.items() if field != "password"})
    if sent:  # any real change reprovisions the cluster, an empty update leaves it ready (as recorded)
        _changed(lab, cluster, "provisioning")
    return 200, cluster


def _migrate(lab: Lab, req: Request) -> tuple[int, dict]:
    cluster, body = _ready_cluster(lab, req.params["id"]), req.json
    version = body.get("version") or cluster["version"]
    node_type = body.get("node_type") or cluster["node_type"]
    size = int(body.get("cluster_size") or cluster["cluster_size"])
    _check_version(version)
    _check_node_type(node_type)
    _check_size(size)
    if size < cluster["cluster_size"]:
        raise invalid("cluster_size", "a cluster cannot shrink")
    cluster.update(version=version, node_type=node_type, cluster_size=size)
    for endpoint in cluster["endpoints"]:
        if endpoint.get("private_network", {}).get("provisioning_mode") == "ipam":
            _book_addresses(lab, cluster, endpoint)
    _changed(lab, cluster, "provisioning")
    return 200, cluster


def _delete(lab: Lab, req: Request) -> tuple[int, dict]:
    cluster = _ready_cluster(lab, req.params["id"])
    _forget_endpoints(lab, cluster["endpoints"])
    del lab.objects(CLUSTER)[cluster["id"]]
    lab.store.meta.pop(cluster["id"], None)
    lab.store.save()
    return 200, {**cluster, "status": "deleting"}


def _set_settings(lab: Lab, req: Request) -> tuple[int, dict]:
    cluster = _ready_cluster(lab, req.params["id"])
    cluster["cluster_settings"] = _checked_settings(req.json.get("settings"))
    _changed(lab, cluster, "configuring")
    return 200, {"settings": cluster["cluster_settings"]}


def _set_acls(lab: Lab, req: Request) -> tuple[int, dict]:
    cluster = _ready_cluster(lab, req.params["id"])
    rules = _acl_rules(req.json.get("acl_rules"))
    if rules and any("private_network" in endpoint for endpoint in cluster["endpoints"]):
        raise invalid("acl_rules", "ACL rules apply to public endpoints only")
    cluster["acl_rules"] = rules
    lab.store.save()
    return 200, {"acl_rules": rules}


def _set_endpoints(lab: Lab, req: Request) -> tuple[int, dict]:
    cluster = _ready_cluster(lab, req.params["id"])
    _set_endpoints_of(lab, cluster, req.json.get("endpoints"))
    _changed(lab, cluster, "configuring")
    return 200, {"endpoints": cluster["endpoints"], "total_count": len(cluster["endpoints"])}


def _certificate(lab: Lab, req: Request) -> tuple[int, dict]:
    cluster = _cluster_of(lab, req.params["id"])
    if not cluster["tls_enabled"]:
        raise invalid("tls_enabled", "TLS is not enabled on this cluster: it has no certificate")
    return 200, {"content": lab.store.meta[cluster["id"]]["certificate"], "content_type": "application/x-pem-file",
                 "name": "ssl_certificate"}


def register(lab: Lab) -> None:
    lab.add_kind(CLUSTER, with_routes=False)
    cluster = API + "/clusters/{id}"
    lab.add(route("GET", API + "/cluster-versions", _versions),
            route("POST", API + "/clusters", _create),
            route("GET", API + "/clusters", lambda lab, req: (200, lab.list(CLUSTER, req))),
            route("GET", cluster, _read),
            route("PATCH", cluster, _update),
            route("DELETE", cluster, _delete),
            route("POST", cluster + "/migrate", _migrate),
            route("PUT", cluster + "/settings", _set_settings),
            route("PUT", cluster + "/acls", _set_acls),
            route("PUT", cluster + "/endpoints", _set_endpoints),
            route("GET", cluster + "/certificate", _certificate))
