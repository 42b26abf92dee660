"""Load Balancer API (lb/v1, zones): flexible IPs, load balancers and their private
networks, backends (health checks, servers, stats), frontends and their ACLs, routes,
Let's Encrypt certificates.

Asynchronous statuses, counted in reads of the load balancer (GET /lbs/{id} or a list):
- a new LB answers `to_create`, then its next reads show CREATION_READS, then `ready`;
- every later change of its configuration (backend, frontend, route, ACL, certificate,
  servers, health check, private network, the LB itself) makes it `pending` — its
  instances reload — until it is next read, then it is `ready` again;
- while it is not ready it refuses changes of the LB itself (update, migrate, attach or
  detach a network, delete) with 409 `transient_state`; while it is being created it
  refuses every change. Changes of its parts are accepted while it is `pending`: the
  provider sends them back to back (backend, health check, servers; frontend, ACLs) and
  the recordings show the real API accepting them.
A Let's Encrypt certificate is `pending` until it has been read once, then `ready`.

Not-found errors have this API's own shape, `{"message": "<thing> not Found"}`, as recorded.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import subprocess
from datetime import datetime, timedelta, timezone

from lab.addresses import LB_PUBLIC_V4
from lab.api import ApiError, Lab, Request, invalid, new_id, now, route, transient
from lab.families import ipam

ZONE = "/lb/v1/zones/{zone}"
TYPES = ("lb-s", "lb-gp-m", "lb-gp-l", "lb-gp-xl")
# Statuses a new LB shows to its next reads before `ready`. One read is one poll of the
# provider's waiter, which polls every 30 s: each status listed here costs an apply 30 s.
CREATION_READS = ("creating",)
# Public IPv4 addresses are loopback ones (lab/addresses.py); IPv6 ones come from a
# documentation range, where the lab sends no packets.
PUBLIC_V4 = LB_PUBLIC_V4  # loopback: traffic to an LB address stays on this machine
PUBLIC_V6 = ipaddress.ip_network("2001:db8:1b::/64")
INSTANCE_STATUS = {"creating": "unknown", "pending": "pending", "migrating": "migrating", "ready": "ready"}
UNSET_TIME = "0001-01-01T00:00:00Z"

log = logging.getLogger(__name__)


# --- helpers ---------------------------------------------------------------------------

def _region(zone: str) -> str:
    return zone.rsplit("-", 1)[0]


def _missing(thing: str) -> ApiError:
    return ApiError(404, {"message": f"{thing} not Found"})


def _find(lab: Lab, collection: str, object_id: str, thing: str, zone: str) -> dict:
    found = lab.objects(collection).get(object_id)
    if found is None or found["_zone"] != zone:
        raise _missing(thing)
    return found


def _public(obj: dict) -> dict:
    """The object as the API shows it: without the lab's links (keys starting with _)."""
    return {key: value for key, value in obj.items() if not key.startswith("_")}


def _page(plural: str, items: list, req: Request) -> dict:
    return {plural: items if int(req.arg("page", "1") or 1) == 1 else [], "total_count": len(items)}


def _stamp(obj: dict) -> dict:
    obj["updated_at"] = now()
    return obj


def _saved(lab: Lab, payload, lb_id: str | None = None):
    """Persist the change; if it is one of LB `lb_id`'s configuration, its data plane
    takes it too."""
    lab.store.save()
    if lb_id is not None:
        _apply(lab, lb_id)
    return 200, payload


def _plane(lab: Lab):
    """The HAProxy data plane (lab/dataplane/haproxy.py), when the lab runs one."""
    return getattr(lab.runtime, "load_balancers", None) if lab.runtime is not None else None


def _apply(lab: Lab, lb_id: str) -> None:
    """The LB's HAProxy reloads with its new configuration, as the real LB's instances do
    while it is `pending`. A configuration HAProxy refuses leaves the previous one running
    (logged): the API has accepted the change, as the real one would have."""
    plane = _plane(lab)
    if plane is None:
        return
    try:
        plane.apply(lab, lb_id)
    # The data plane must never break the API's answer: a refused configuration
    # (RuntimeError), HAProxy missing or failing to start (OSError, SubprocessError).
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as error:
        log.warning("load balancer %s: data plane not updated: %s", lb_id, error)


def _ms(value) -> int | None:
    """A duration as this API returns most of them, in milliseconds (the Go SDK sends
    milliseconds; Go-style strings such as "60s" or "500ms" are accepted too)."""
    if value is None or isinstance(value, (int, float)):
        return None if value is None else int(value)
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}
    parts = re.findall(r"([\d.]+)(ms|s|m|h)", str(value))
    if not parts:
        raise invalid("duration", f"{value!r} is not a duration")
    return int(sum(float(number) * units[unit] for number, unit in parts))


def _seconds_text(value) -> str | None:
    """A `scw.Duration` (sent as "0.500000000s") as the API returns it: "0.500s", "0s"."""
    if value is None:
        return None
    seconds = _ms(value) / 1000
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{seconds:.3f}s"


def _address(text: str, argument: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise invalid(argument, f"{text!r} is not an IP address") from None


# --- load balancers ------------------------------------------------------------------------

def _lb(lab: Lab, req: Request, lb_id: str) -> dict:
    return _find(lab, "lb", lb_id, "lbs", req.params["zone"])


def _lb_view(lab: Lab, lb: dict) -> dict:
    def count(collection: str) -> int:
        return sum(1 for obj in lab.objects(collection).values() if obj["_lb_id"] == lb["id"])

    instances = [] if lb["status"] == "to_create" else [
        {**lb["_instance"], "status": INSTANCE_STATUS.get(lb["status"], "ready")}]
    return {**_public(lb), "instances": instances,
            "ip": [_public(lab.objects("lb_ip")[ip_id]) for ip_id in lb["_ip_ids"]],
            "backend_count": count("lb_backend"), "frontend_count": count("lb_frontend"),
            "route_count": count("lb_route"), "private_network_count": count("lb_private_network")}


def _advance(lab: Lab, obj: dict) -> None:
    """A read: the object moves one step along the statuses it still has to show."""
    upcoming = lab.store.meta.get(obj["id"], {}).get("upcoming")
    if upcoming:
        obj["status"] = upcoming.pop(0)
        _stamp(obj)
        lab.store.save()


def _read_lb(lab: Lab, lb: dict) -> dict:
    _advance(lab, lb)
    return _lb_view(lab, lb)


def _reconfigure(lab: Lab, lb: dict) -> None:
    lb["status"] = "pending"
    lab.store.meta.setdefault(lb["id"], {})["upcoming"] = ["ready"]


def _changeable_lb(lab: Lab, req: Request, lb_id: str, *, whole: bool = False) -> dict:
    """The LB a change applies to, refused (409) while it cannot take it; the change
    then makes it pending."""
    lb = _lb(lab, req, lb_id)
    if lb["status"] in ("to_create", "creating") or (whole and lb["status"] != "ready"):
        raise transient("lb", lb["id"], lb["status"])
    _reconfigure(lab, lb)
    return lb


def _allocate_ip(lab: Lab, zone: str, project_id: str | None, *, ipv6: bool, reverse: str | None = None,
                 tags: list | None = None) -> dict:
    used = {ip["ip_address"] for ip in lab.objects("lb_ip").values()}
    network = PUBLIC_V6 if ipv6 else PUBLIC_V4
    address = next((str(host) for host in network.hosts() if str(host) not in used), None)
    if address is None:
        raise invalid("is_ipv6", f"no free address left in the lab's {network}", reason="quota_exceeded")
    ip = {"id": new_id(), "ip_address": address, "lb_id": None, "organization_id": project_id,
          "project_id": project_id, "region": _region(zone),
          "reverse": reverse or f"{address.replace('.', '-').replace(':', '-')}.lb.{_region(zone)}.scw.cloud",
          "tags": tags or [], "zone": zone, "_zone": zone}
    lab.objects("lb_ip")[ip["id"]] = ip
    return ip


def _create_lb(lab: Lab, req: Request):
    body, zone = req.json, req.params["zone"]
    lb_type = str(body.get("type") or "").lower()
    if lb_type not in TYPES:
        raise invalid("type", f"unknown load balancer type {body.get('type')!r}; one of {', '.join(TYPES)}")
    project_id = body.get("project_id")
    lb_id, stamp = new_id(), now()
    ips = [_find(lab, "lb_ip", ip_id, "ips", zone) for ip_id in body.get("ip_ids") or [body.get("ip_id")] if ip_id]
    for ip in ips:
        if ip["lb_id"]:
            raise invalid("ip_ids", f"IP {ip['id']} is already used by load balancer {ip['lb_id']}")
    if not ips and body.get("assign_flexible_ip") is not False:
        ips.append(_allocate_ip(lab, zone, project_id, ipv6=False))
    if body.get("assign_flexible_ipv6"):
        ips.append(_allocate_ip(lab, zone, project_id, ipv6=True))
    for ip in ips:
        ip["lb_id"] = lb_id
    lb = {"id": lb_id, "name": body.get("name") or f"lb-{lb_id[:8]}", "description": body.get("description") or "",
          "status": "to_create", "organization_id": project_id, "project_id": project_id,
          "tags": body.get("tags") or [], "type": lb_type, "subscriber": None,
          "ssl_compatibility_level": body.get("ssl_compatibility_level") or "ssl_compatibility_level_intermediate",
          "created_at": stamp, "updated_at": stamp, "region": _region(zone), "zone": zone, "_zone": zone,
          "_ip_ids": [ip["id"] for ip in ips],
          "_instance": {"id": new_id(), "ip_address": "", "created_at": stamp, "updated_at": stamp,
                        "region": _region(zone), "zone": zone}}
    lab.objects("lb")[lb_id] = lb
    lab.store.meta[lb_id] = {"upcoming": [*CREATION_READS, "ready"]}
    return _saved(lab, _lb_view(lab, lb))


def _list_lbs(lab: Lab, req: Request):
    zone, name, tags = req.params["zone"], req.arg("name"), req.query.get("tags", [])
    found = [_read_lb(lab, lb) for lb in lab.objects("lb").values()
             if lb["_zone"] == zone and (not name or name in lb["name"])
             and all(tag in lb["tags"] for tag in tags)
             and req.arg("project_id") in (None, lb["project_id"])]
    return 200, _page("lbs", found, req)


def _update_lb(lab: Lab, req: Request):
    lb = _changeable_lb(lab, req, req.params["id"], whole=True)
    for key in ("name", "description", "tags", "ssl_compatibility_level"):
        if req.json.get(key) is not None:
            lb[key] = req.json[key]
    return _saved(lab, _lb_view(lab, _stamp(lb)), lb["id"])


def _migrate_lb(lab: Lab, req: Request):
    lb_type = str(req.json.get("type") or "").lower()
    if lb_type not in TYPES:
        raise invalid("type", f"unknown load balancer type {req.json.get('type')!r}")
    lb = _changeable_lb(lab, req, req.params["id"], whole=True)
    lb["type"], lb["status"] = lb_type, "migrating"
    return _saved(lab, _lb_view(lab, _stamp(lb)), lb["id"])


def _delete_lb(lab: Lab, req: Request):
    lb = _changeable_lb(lab, req, req.params["id"], whole=True)
    release = (req.arg("release_ip", "false") or "false").lower() == "true"
    for ip_id in lb["_ip_ids"]:
        if release:
            del lab.objects("lb_ip")[ip_id]
        else:
            lab.objects("lb_ip")[ip_id]["lb_id"] = None
    for collection in ("lb_route", "lb_acl", "lb_frontend", "lb_certificate", "lb_backend", "lb_private_network"):
        for key in [key for key, obj in lab.objects(collection).items() if obj["_lb_id"] == lb["id"]]:
            gone = lab.objects(collection).pop(key)
            if collection == "lb_private_network":
                _leave_network(lab, gone)
    del lab.objects("lb")[lb["id"]]
    lab.store.meta.pop(lb["id"], None)
    lab.store.save()
    _apply(lab, lb["id"])  # its HAProxy stops
    return 204, None


# --- flexible IPs --------------------------------------------------------------------------

def _create_ip(lab: Lab, req: Request):
    body = req.json
    ip = _allocate_ip(lab, req.params["zone"], body.get("project_id"), ipv6=bool(body.get("is_ipv6")),
                      reverse=body.get("reverse"), tags=body.get("tags"))
    return _saved(lab, _public(ip))


def _list_ips(lab: Lab, req: Request):
    zone, tags = req.params["zone"], req.query.get("tags", [])
    wanted_type = req.arg("ip_type", "all")
    found = [_public(ip) for ip in lab.objects("lb_ip").values()
             if ip["_zone"] == zone and all(tag in ip["tags"] for tag in tags)
             and req.arg("ip_address") in (None, ip["ip_address"])
             and req.arg("project_id") in (None, ip["project_id"])
             and wanted_type in ("all", "ipv6" if ":" in ip["ip_address"] else "ipv4")]
    return 200, _page("ips", found, req)


def _update_ip(lab: Lab, req: Request):
    zone, body = req.params["zone"], req.json
    ip = _find(lab, "lb_ip", req.params["id"], "ips", zone)
    for key in ("reverse", "tags"):
        if body.get(key) is not None:
            ip[key] = body[key]
    if body.get("lb_id") and body["lb_id"] != ip["lb_id"]:
        lb = _changeable_lb(lab, req, body["lb_id"], whole=True)
        lb["_ip_ids"].append(ip["id"])
        ip["lb_id"] = lb["id"]
    return _saved(lab, _public(ip), ip["lb_id"])


def _release_ip(lab: Lab, req: Request):
    ip = _find(lab, "lb_ip", req.params["id"], "ips", req.params["zone"])
    if ip["lb_id"]:
        lb = _changeable_lb(lab, req, ip["lb_id"], whole=True)
        lb["_ip_ids"].remove(ip["id"])
    del lab.objects("lb_ip")[ip["id"]]
    lab.store.save()
    if ip["lb_id"]:
        _apply(lab, ip["lb_id"])  # no longer listens on it
    return 204, None


# --- private networks ----------------------------------------------------------------------

def _attachment_view(lab: Lab, attachment: dict) -> dict:
    return {**_public(attachment), "lb": _lb_view(lab, lab.objects("lb")[attachment["_lb_id"]])}


def _attach(lab: Lab, req: Request):
    body, lb_id = req.json, req.params["id"]
    network_id = body.get("private_network_id") or ""
    if network_id not in lab.objects("private_network"):
        raise _missing("privateNetwork")
    if f"{lb_id}/{network_id}" in lab.objects("lb_private_network"):
        raise invalid("private_network_id", "the load balancer is already attached to this private network")
    if body.get("static_config") or body.get("ipam_config"):
        raise invalid("private_network_id", "the lab attaches load balancers through IPAM only (DHCP or ipam_ids)")
    lb = _changeable_lb(lab, req, lb_id, whole=True)
    ipam_ids = body.get("ipam_ids") or []
    # The LB's address on the network: the reserved one named, else one IPAM books for it.
    owner = {"type": "lb_server", "id": lb["id"], "mac_address": ipam.new_mac(), "name": lb["name"]}
    if ipam_ids:
        address = ipam.attach(lab, ipam_ids[0], owner)
    else:
        address = ipam.reserve(lab, region=lb["region"], private_network_id=network_id,
                               project_id=lb["project_id"], resource=owner)
    stamp = now()
    attachment = {"private_network_id": network_id, "ipam_ids": ipam_ids, "status": "pending",
                  "dhcp_config": {"ip_id": ipam_ids[0] if ipam_ids else None}, "created_at": stamp,
                  "updated_at": stamp, "_lb_id": lb["id"], "_zone": lb["zone"], "_ipam_id": address["id"]}
    lab.objects("lb_private_network")[f"{lb['id']}/{network_id}"] = attachment
    return _saved(lab, _attachment_view(lab, attachment))


def _list_attachments(lab: Lab, req: Request):
    lb = _lb(lab, req, req.params["id"])
    found = []
    for attachment in lab.objects("lb_private_network").values():
        if attachment["_lb_id"] == lb["id"]:
            if attachment["status"] == "pending":  # attached once it has been read
                _stamp(attachment)["status"] = "ready"
                lab.store.save()
            found.append(_attachment_view(lab, attachment))
    return 200, _page("private_network", found, req)


def _detach(lab: Lab, req: Request):
    network_id = req.json.get("private_network_id") or ""
    key = f"{req.params['id']}/{network_id}"
    if key not in lab.objects("lb_private_network"):
        raise _missing("privateNetwork")
    _changeable_lb(lab, req, req.params["id"], whole=True)
    _leave_network(lab, lab.objects("lb_private_network").pop(key))
    lab.store.save()
    return 204, None


def _leave_network(lab: Lab, attachment: dict) -> None:
    """Give the LB's address on the network back: a reserved one stays booked, one IPAM
    booked for the attachment is released."""
    if attachment["ipam_ids"]:
        ipam.detach(lab, attachment["_ipam_id"])
    else:
        ipam.release(lab, attachment["_ipam_id"])


# --- backends ------------------------------------------------------------------------------

def _health_check(sent: dict | None, forward_port: int) -> dict:
    sent = sent or {}
    check = {"port": sent.get("port") or forward_port, "check_delay": _ms(sent.get("check_delay", 60000)),
             "check_timeout": _ms(sent.get("check_timeout", 30000)),
             "check_max_retries": sent.get("check_max_retries", 2),
             "check_send_proxy": bool(sent.get("check_send_proxy")),
             "transient_check_delay": _seconds_text(sent.get("transient_check_delay") or "0.5s")}
    configs = {key: value for key, value in sent.items() if key.endswith("_config") and value is not None}
    check.update(configs or {"tcp_config": {}})  # a plain TCP check unless another is chosen
    return check


def _servers(body: dict) -> list[str]:
    return [_address(ip, "server_ip") for ip in body.get("server_ip") or []]


def _backend_fields(body: dict) -> dict:
    protocol = body.get("forward_protocol") or "tcp"
    if protocol not in ("tcp", "http"):
        raise invalid("forward_protocol", f"{protocol!r} is not one of tcp, http")
    port = body.get("forward_port")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise invalid("forward_port", "a port between 1 and 65535 is required")
    return {"forward_protocol": protocol, "forward_port": port,
            "forward_port_algorithm": body.get("forward_port_algorithm") or "roundrobin",
            "sticky_sessions": body.get("sticky_sessions") or "none",
            "sticky_sessions_cookie_name": body.get("sticky_sessions_cookie_name") or "",
            "send_proxy_v2": bool(body.get("send_proxy_v2")),
            "timeout_server": _ms(body.get("timeout_server")), "timeout_connect": _ms(body.get("timeout_connect")),
            "timeout_tunnel": _ms(body.get("timeout_tunnel")),
            "on_marked_down_action": body.get("on_marked_down_action") or "on_marked_down_action_none",
            "proxy_protocol": body.get("proxy_protocol") or "proxy_protocol_none",
            "failover_host": body.get("failover_host"), "ssl_bridging": bool(body.get("ssl_bridging")),
            "ignore_ssl_server_verify": body.get("ignore_ssl_server_verify"),
            "redispatch_attempt_count": body.get("redispatch_attempt_count"),
            "max_retries": body.get("max_retries", 3), "max_connections": body.get("max_connections"),
            "timeout_queue": _seconds_text(body.get("timeout_queue") or "0s")}


def _backend(lab: Lab, req: Request, backend_id: str) -> dict:
    return _find(lab, "lb_backend", backend_id, "backend", req.params["zone"])


def _backend_view(lab: Lab, backend: dict) -> dict:
    return {**_public(backend), "lb": _lb_view(lab, lab.objects("lb")[backend["_lb_id"]])}


def _create_backend(lab: Lab, req: Request):
    body = req.json
    fields = _backend_fields(body)
    health_check, servers = _health_check(body.get("health_check"), fields["forward_port"]), _servers(body)
    lb = _changeable_lb(lab, req, req.params["id"])
    backend_id, stamp = new_id(), now()
    backend = {"id": backend_id, "name": body.get("name") or f"lb-bkd-{backend_id[:8]}", **fields,
               "health_check": health_check, "pool": servers, "host": "", "created_at": stamp,
               "updated_at": stamp, "_lb_id": lb["id"], "_zone": lb["zone"]}
    lab.objects("lb_backend")[backend_id] = backend
    return _saved(lab, _backend_view(lab, backend), lb["id"])


def _list_backends(lab: Lab, req: Request):
    lb, name = _lb(lab, req, req.params["id"]), req.arg("name")
    found = [_backend_view(lab, backend) for backend in lab.objects("lb_backend").values()
             if backend["_lb_id"] == lb["id"] and (not name or name in backend["name"])]
    return 200, _page("backends", found, req)


def _update_backend(lab: Lab, req: Request):
    backend = _backend(lab, req, req.params["id"])
    fields = _backend_fields(req.json)
    _changeable_lb(lab, req, backend["_lb_id"])
    backend.update(fields, name=req.json.get("name") or backend["name"])
    return _saved(lab, _backend_view(lab, _stamp(backend)), backend["_lb_id"])


def _update_health_check(lab: Lab, req: Request):
    backend = _backend(lab, req, req.params["id"])
    health_check = _health_check(req.json, backend["forward_port"])
    _changeable_lb(lab, req, backend["_lb_id"])
    backend["health_check"] = health_check
    _stamp(backend)
    return _saved(lab, backend["health_check"], backend["_lb_id"])


def _set_servers(lab: Lab, req: Request):
    backend = _backend(lab, req, req.params["id"])
    servers = _servers(req.json)
    _changeable_lb(lab, req, backend["_lb_id"])
    backend["pool"] = servers
    return _saved(lab, _backend_view(lab, _stamp(backend)), backend["_lb_id"])


def _delete_backend(lab: Lab, req: Request):
    backend = _backend(lab, req, req.params["id"])
    users = [frontend["id"] for frontend in lab.objects("lb_frontend").values()
             if frontend["_backend_id"] == backend["id"]]
    users += [found["id"] for found in lab.objects("lb_route").values() if found["backend_id"] == backend["id"]]
    if users:
        raise invalid("backend_id", f"the backend is still used by {', '.join(users)}", reason="precondition_failed")
    _changeable_lb(lab, req, backend["_lb_id"])
    del lab.objects("lb_backend")[backend["id"]]
    lab.store.save()
    _apply(lab, backend["_lb_id"])
    return 204, None


def server_health(lab: Lab, backend: dict) -> dict[str, tuple[str, str]]:
    """What the LB knows of each server of a backend: IP → (server_state,
    last_health_check_status). With a data plane, its HAProxy's own health checks (a
    server it does not report: stopped, never checked); without one (API-only tests),
    every server is up and passing."""
    plane = _plane(lab)
    if plane is None:
        return {server_ip: ("running", "passed") for server_ip in backend["pool"]}
    reported = plane.server_stats(lab, backend["_lb_id"], backend["id"])
    return {server_ip: reported.get(server_ip, ("stopped", "unknown")) for server_ip in backend["pool"]}


def _backend_stats(lab: Lab, req: Request):
    lb, wanted = _lb(lab, req, req.params["id"]), req.arg("backend_id")
    stats = []
    for backend in lab.objects("lb_backend").values():
        if backend["_lb_id"] != lb["id"] or wanted not in (None, backend["id"]):
            continue
        health = server_health(lab, backend)
        for server_ip in backend["pool"]:
            state, check = health[server_ip]
            stats.append({"instance_id": lb["_instance"]["id"], "backend_id": backend["id"], "ip": server_ip,
                          "server_state": state, "server_state_changed_at": backend["updated_at"],
                          "last_health_check_status": check})
    return 200, _page("backend_servers_stats", stats, req)


# --- certificates --------------------------------------------------------------------------

def _certificate_view(lab: Lab, certificate: dict) -> dict:
    return {**_public(certificate), "lb": _lb_view(lab, lab.objects("lb")[certificate["_lb_id"]])}


def _read_certificate(lab: Lab, certificate: dict) -> dict:
    _advance(lab, certificate)
    if certificate["status"] == "ready" and not certificate["fingerprint"]:  # just issued
        issued = datetime.now(timezone.utc)
        certificate.update(fingerprint=hashlib.sha1(certificate["id"].encode()).hexdigest(),
                           not_valid_before=issued.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           not_valid_after=(issued + timedelta(days=90)).strftime("%Y-%m-%dT%H:%M:%SZ"))
        lab.store.save()
    return _certificate_view(lab, certificate)


def _create_certificate(lab: Lab, req: Request):
    body = req.json
    letsencrypt = body.get("letsencrypt")
    if not letsencrypt or not letsencrypt.get("common_name"):
        raise invalid("letsencrypt", "the lab issues Let's Encrypt certificates only: letsencrypt.common_name "
                      "is required")
    lb = _changeable_lb(lab, req, req.params["id"])
    certificate_id, stamp = new_id(), now()
    certificate = {"id": certificate_id, "type": "letsencrypt",
                   "name": body.get("name") or f"lb-cert-{certificate_id[:8]}",
                   "common_name": letsencrypt["common_name"],
                   "subject_alternative_name": letsencrypt.get("subject_alternative_name") or [],
                   "fingerprint": "", "not_valid_before": UNSET_TIME, "not_valid_after": UNSET_TIME,
                   "status": "pending", "status_details": None, "created_at": stamp, "updated_at": stamp,
                   "_lb_id": lb["id"], "_zone": lb["zone"]}
    lab.objects("lb_certificate")[certificate_id] = certificate
    lab.store.meta[certificate_id] = {"upcoming": ["ready"]}
    return _saved(lab, _certificate_view(lab, certificate), lb["id"])


def _certificate(lab: Lab, req: Request) -> dict:
    return _find(lab, "lb_certificate", req.params["id"], "certificate", req.params["zone"])


def _list_certificates(lab: Lab, req: Request):
    lb, name = _lb(lab, req, req.params["id"]), req.arg("name")
    found = [_read_certificate(lab, certificate) for certificate in lab.objects("lb_certificate").values()
             if certificate["_lb_id"] == lb["id"] and (not name or name in certificate["name"])]
    return 200, _page("certificates", found, req)


def _update_certificate(lab: Lab, req: Request):
    certificate = _certificate(lab, req)
    if req.json.get("name"):
        certificate["name"] = req.json["name"]
    return _saved(lab, _certificate_view(lab, _stamp(certificate)))


def _delete_certificate(lab: Lab, req: Request):
    certificate = _certificate(lab, req)
    users = [frontend["id"] for frontend in lab.objects("lb_frontend").values()
             if certificate["id"] in frontend["certificate_ids"]]
    if users:
        raise invalid("certificate_id", f"the certificate is still used by {', '.join(users)}",
                      reason="precondition_failed")
    _changeable_lb(lab, req, certificate["_lb_id"])
    del lab.objects("lb_certificate")[certificate["id"]]
    lab.store.meta.pop(certificate["id"], None)
    lab.store.save()
    _apply(lab, certificate["_lb_id"])
    return 204, None


# --- frontends and their ACLs --------------------------------------------------------------

def _frontend(lab: Lab, req: Request, frontend_id: str) -> dict:
    return _find(lab, "lb_frontend", frontend_id, "frontend", req.params["zone"])


def _frontend_view(lab: Lab, frontend: dict) -> dict:
    certificates = [_certificate_view(lab, lab.objects("lb_certificate")[certificate_id])
                    for certificate_id in frontend["certificate_ids"]]
    return {**_public(frontend), "backend": _backend_view(lab, lab.objects("lb_backend")[frontend["_backend_id"]]),
            "lb": _lb_view(lab, lab.objects("lb")[frontend["_lb_id"]]),
            "certificate": certificates[0] if certificates else None}


def _frontend_fields(lab: Lab, req: Request, lb_id: str) -> dict:
    """The frontend a create or update request describes (the API replaces it whole)."""
    body = req.json
    port = body.get("inbound_port")
    if not isinstance(port, int) or not 1 <= port <= 65535:
        raise invalid("inbound_port", "a port between 1 and 65535 is required")
    backend = _backend(lab, req, body.get("backend_id") or "")
    certificate_ids = body.get("certificate_ids") or ([body["certificate_id"]] if body.get("certificate_id") else [])
    for certificate_id in certificate_ids:
        if _find(lab, "lb_certificate", certificate_id, "certificate", req.params["zone"])["_lb_id"] != lb_id:
            raise invalid("certificate_ids", f"certificate {certificate_id} belongs to another load balancer")
    if backend["_lb_id"] != lb_id:
        raise invalid("backend_id", "the backend belongs to another load balancer")
    return {"name": body.get("name"), "inbound_port": port, "_backend_id": backend["id"],
            "timeout_client": _ms(body.get("timeout_client")), "certificate_ids": certificate_ids,
            "enable_http3": bool(body.get("enable_http3")),
            "connection_rate_limit": body.get("connection_rate_limit") or None,
            "enable_access_logs": bool(body.get("enable_access_logs"))}


def _create_frontend(lab: Lab, req: Request):
    lb = _lb(lab, req, req.params["id"])
    fields = _frontend_fields(lab, req, lb["id"])
    _changeable_lb(lab, req, lb["id"])
    frontend_id, stamp = new_id(), now()
    frontend = {"id": frontend_id, **fields, "name": fields["name"] or f"lb-frt-{frontend_id[:8]}",
                "created_at": stamp, "updated_at": stamp, "_lb_id": lb["id"], "_zone": lb["zone"]}
    lab.objects("lb_frontend")[frontend_id] = frontend
    return _saved(lab, _frontend_view(lab, frontend), lb["id"])


def _list_frontends(lab: Lab, req: Request):
    lb, name = _lb(lab, req, req.params["id"]), req.arg("name")
    found = [_frontend_view(lab, frontend) for frontend in lab.objects("lb_frontend").values()
             if frontend["_lb_id"] == lb["id"] and (not name or name in frontend["name"])]
    return 200, _page("frontends", found, req)


def _update_frontend(lab: Lab, req: Request):
    frontend = _frontend(lab, req, req.params["id"])
    fields = _frontend_fields(lab, req, frontend["_lb_id"])
    _changeable_lb(lab, req, frontend["_lb_id"])
    frontend.update({**fields, "name": fields["name"] or frontend["name"]})
    return _saved(lab, _frontend_view(lab, _stamp(frontend)), frontend["_lb_id"])


def _delete_frontend(lab: Lab, req: Request):
    frontend = _frontend(lab, req, req.params["id"])
    _changeable_lb(lab, req, frontend["_lb_id"])
    # Its ACLs and routes go with it.
    for acl_id in [acl["id"] for acl in lab.objects("lb_acl").values() if acl["_frontend_id"] == frontend["id"]]:
        del lab.objects("lb_acl")[acl_id]
    for route_id in [found["id"] for found in lab.objects("lb_route").values()
                     if found["frontend_id"] == frontend["id"]]:
        del lab.objects("lb_route")[route_id]
    del lab.objects("lb_frontend")[frontend["id"]]
    lab.store.save()
    _apply(lab, frontend["_lb_id"])
    return 204, None


def _acl_view(lab: Lab, acl: dict) -> dict:
    return {**_public(acl), "frontend": _frontend_view(lab, lab.objects("lb_frontend")[acl["_frontend_id"]])}


def _acl_fields(body: dict) -> dict:
    if not (body.get("action") or {}).get("type"):
        raise invalid("action", "an action type is required")
    match = body.get("match") or {}
    return {"name": body.get("name"), "description": body.get("description") or "", "index": body.get("index", 0),
            "action": {"type": body["action"]["type"], "redirect": body["action"].get("redirect")},
            "match": {"ip_subnet": match.get("ip_subnet") or [],
                      "ips_edge_services": bool(match.get("ips_edge_services")),
                      "http_filter": match.get("http_filter") or "acl_http_filter_none",
                      "http_filter_value": match.get("http_filter_value") or [],
                      "http_filter_option": match.get("http_filter_option"), "invert": bool(match.get("invert"))}}


def _create_acl(lab: Lab, req: Request):
    frontend = _frontend(lab, req, req.params["id"])
    fields = _acl_fields(req.json)
    _changeable_lb(lab, req, frontend["_lb_id"])
    acl_id, stamp = new_id(), now()
    acl = {"id": acl_id, **fields, "name": fields["name"] or f"lb-acl-{acl_id[:8]}", "created_at": stamp,
           "updated_at": stamp, "_frontend_id": frontend["id"], "_lb_id": frontend["_lb_id"],
           "_zone": frontend["_zone"]}
    lab.objects("lb_acl")[acl_id] = acl
    return _saved(lab, _acl_view(lab, acl), acl["_lb_id"])


def _list_acls(lab: Lab, req: Request):
    frontend = _frontend(lab, req, req.params["id"])
    found = [_acl_view(lab, acl) for acl in lab.objects("lb_acl").values() if acl["_frontend_id"] == frontend["id"]]
    return 200, _page("acls", found, req)


def _acl(lab: Lab, req: Request) -> dict:
    return _find(lab, "lb_acl", req.params["id"], "acl", req.params["zone"])


def _update_acl(lab: Lab, req: Request):
    acl = _acl(lab, req)
    fields = _acl_fields(req.json)
    _changeable_lb(lab, req, acl["_lb_id"])
    acl.update({**fields, "name": fields["name"] or acl["name"]})
    return _saved(lab, _acl_view(lab, _stamp(acl)), acl["_lb_id"])


def _delete_acl(lab: Lab, req: Request):
    acl = _acl(lab, req)
    _changeable_lb(lab, req, acl["_lb_id"])
    del lab.objects("lb_acl")[acl["id"]]
    lab.store.save()
    _apply(lab, acl["_lb_id"])
    return 204, None


# --- routes --------------------------------------------------------------------------------

def _route_fields(lab: Lab, req: Request, frontend: dict) -> dict:
    body = req.json
    backend = _backend(lab, req, body.get("backend_id") or "")
    if backend["_lb_id"] != frontend["_lb_id"]:
        raise invalid("backend_id", "the backend belongs to another load balancer")
    sent = body.get("match") or {}
    conditions = {key: sent[key] for key in ("sni", "host_header", "path_begin") if sent.get(key) is not None}
    if len(conditions) != 1:
        raise invalid("match", "exactly one of sni, host_header, path_begin is required")
    return {"backend_id": backend["id"],
            "match": {**conditions, "match_subdomains": bool(sent.get("match_subdomains"))}}


def _route(lab: Lab, req: Request) -> dict:
    # The real API names the wrong resource in this 404, as recorded.
    return _find(lab, "lb_route", req.params["id"], "privateNetwork", req.params["zone"])


def _create_route(lab: Lab, req: Request):
    frontend = _frontend(lab, req, req.json.get("frontend_id") or "")
    fields = _route_fields(lab, req, frontend)
    _changeable_lb(lab, req, frontend["_lb_id"])
    stamp = now()
    found = {"id": new_id(), "frontend_id": frontend["id"], **fields, "created_at": stamp, "updated_at": stamp,
             "_lb_id": frontend["_lb_id"], "_zone": frontend["_zone"]}
    lab.objects("lb_route")[found["id"]] = found
    return _saved(lab, _public(found), found["_lb_id"])


def _list_routes(lab: Lab, req: Request):
    zone, wanted = req.params["zone"], req.arg("frontend_id")
    found = [_public(found) for found in lab.objects("lb_route").values()
             if found["_zone"] == zone and wanted in (None, found["frontend_id"])]
    return 200, _page("routes", found, req)


def _update_route(lab: Lab, req: Request):
    found = _route(lab, req)
    fields = _route_fields(lab, req, lab.objects("lb_frontend")[found["frontend_id"]])
    _changeable_lb(lab, req, found["_lb_id"])
    found.update(fields)
    return _saved(lab, _public(_stamp(found)), found["_lb_id"])


def _delete_route(lab: Lab, req: Request):
    found = _route(lab, req)
    _changeable_lb(lab, req, found["_lb_id"])
    del lab.objects("lb_route")[found["id"]]
    lab.store.save()
    _apply(lab, found["_lb_id"])
    return 204, None


def register(lab: Lab) -> None:
    def read(collection: str, thing: str, view):
        return lambda lab, req: (200, view(lab, _find(lab, collection, req.params["id"], thing, req.params["zone"])))

    lab.add(
        route("POST", ZONE + "/lbs", _create_lb),
        route("GET", ZONE + "/lbs", _list_lbs),
        route("GET", ZONE + "/lbs/{id}", read("lb", "lbs", _read_lb)),
        route("PUT", ZONE + "/lbs/{id}", _update_lb),
        route("DELETE", ZONE + "/lbs/{id}", _delete_lb),
        route("POST", ZONE + "/lbs/{id}/migrate", _migrate_lb),
        route("GET", ZONE + "/lbs/{id}/private-networks", _list_attachments),
        route("POST", ZONE + "/lbs/{id}/attach-private-network", _attach),
        route("POST", ZONE + "/lbs/{id}/detach-private-network", _detach),
        route("GET", ZONE + "/lbs/{id}/backend-stats", _backend_stats),
        route("POST", ZONE + "/ips", _create_ip),
        route("GET", ZONE + "/ips", _list_ips),
        route("GET", ZONE + "/ips/{id}", read("lb_ip", "ips", lambda lab, ip: _public(ip))),
        route("PATCH", ZONE + "/ips/{id}", _update_ip),
        route("DELETE", ZONE + "/ips/{id}", _release_ip),
        route("POST", ZONE + "/lbs/{id}/backends", _create_backend),
        route("GET", ZONE + "/lbs/{id}/backends", _list_backends),
        route("GET", ZONE + "/backends/{id}", read("lb_backend", "backend", _backend_view)),
        route("PUT", ZONE + "/backends/{id}", _update_backend),
        route("DELETE", ZONE + "/backends/{id}", _delete_backend),
        route("PUT", ZONE + "/backends/{id}/servers", _set_servers),
        route("PUT", ZONE + "/backends/{id}/healthcheck", _update_health_check),
        route("POST", ZONE + "/lbs/{id}/certificates", _create_certificate),
        route("GET", ZONE + "/lbs/{id}/certificates", _list_certificates),
        route("GET", ZONE + "/certificates/{id}", read("lb_certificate", "certificate", _read_certificate)),
        route("PUT", ZONE + "/certificates/{id}", _update_certificate),
        route("DELETE", ZONE + "/certificates/{id}", _delete_certificate),
        route("POST", ZONE + "/lbs/{id}/frontends", _create_frontend),
        route("GET", ZONE + "/lbs/{id}/frontends", _list_frontends),
        route("GET", ZONE + "/frontends/{id}", read("lb_frontend", "frontend", _frontend_view)),
        route("PUT", ZONE + "/frontends/{id}", _update_frontend),
        route("DELETE", ZONE + "/frontends/{id}", _delete_frontend),
        route("POST", ZONE + "/frontends/{id}/acls", _create_acl),
        route("GET", ZONE + "/frontends/{id}/acls", _list_acls),
        route("GET", ZONE + "/acls/{id}", read("lb_acl", "acl", _acl_view)),
        route("PUT", ZONE + "/acls/{id}", _update_acl),
        route("DELETE", ZONE + "/acls/{id}", _delete_acl),
        route("POST", ZONE + "/routes", _create_route),
        route("GET", ZONE + "/routes", _list_routes),
        route("GET", ZONE + "/routes/{id}", read("lb_route", "privateNetwork", lambda lab, found: _public(found))),
        route("PUT", ZONE + "/routes/{id}", _update_route),
        route("DELETE", ZONE + "/routes/{id}", _delete_route),
    )
