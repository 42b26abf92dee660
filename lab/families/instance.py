"""Instance API (instance/v1, instance/v2alpha1, zones) and what servers stand on: the server
types catalogue, the Marketplace's local images (marketplace/v2), the SBS root volumes
(block/v1).

As recorded, against the real API:
- a server is created `stopped`, booting from an `sbs_volume` the API makes from the image
  (`<image name>_sbs_volume_0`, 10 GB, sbs_5k); the provider then powers it on.
- actions pass through transient states, each answered to one read: poweron
  starting → running, poweroff stopping → stopped, stop_in_place stopping →
  "stopped in place" (the API's spelling, spaces included), reboot stopping → starting →
  running, terminate stopping → gone (404), leaving the root volume detached for the caller
  to delete. An action the current state does not allow, or deleting a server that is not
  stopped, is refused (400 invalid_request_error).
- the instance/v1 API wraps objects (`{"server": {...}}`), answers creations with 201 and
  spells dates `+00:00` and statuses `state`; instance/v2alpha1 (private NICs, placement
  groups) and block/v1 answer bare objects with `status` and `Z` dates.
- a private NIC is `attaching` until the provider's waiter has polled once, then
  `available`. It holds the reserved IPAM IPs it is created with (they stay reserved when
  it goes); created without, it books an IPv4 and an IPv6 address that go with it.
- a security group is `syncing` for one read after a change; with enable_default_security
  it carries six non-editable outbound rules dropping SMTP.

Transient states are answered once and then move on, per object, in the lab's state (see
`_answer`): the framework's `Kind` settles on the read itself, which would hide them from
a waiter that polls a separate endpoint after an action.

With a data plane (`lab.runtime.apps`, lab/dataplane/apps.py), a running server runs a
stand-in of the app its user data describes, on the loopback address standing for its
private NIC's address: started when the server settles into running (or gets a NIC while
running), drained when a poweroff, stop_in_place, reboot or terminate begins, and the
server is not seen stopped (or gone) until the drain has ended.
"""

from __future__ import annotations

import ipaddress
import random
import uuid
from datetime import datetime, timezone

from lab.api import ApiError, Lab, Request, invalid, matches, new_id, not_found, now, route, transient

GB = 1_000_000_000
ZONES = ("fr-par-1", "fr-par-2", "fr-par-3", "nl-ams-1", "nl-ams-2", "nl-ams-3", "pl-waw-1", "pl-waw-2", "pl-waw-3",
         "it-mil-1")

# As recorded (fr-par-1, 2026): vCPUs, RAM (GiB), local storage (GB, 0: block storage only),
# hourly price (EUR), internet bandwidth (bit/s), block bandwidth (B/s). Every type also
# boots from block storage, which the provider asks for (marketplace type instance_sbs).
SERVER_TYPES = {
    "DEV1-S": (2, 2, 20, 0.008976, 200_000_000, 104_857_600),
    "DEV1-M": (3, 4, 40, 0.020196, 300_000_000, 157_286_400),
    "DEV1-L": (4, 8, 80, 0.04284, 400_000_000, 209_715_200),
    "DEV1-XL": (4, 12, 120, 0.065076, 500_000_000, 262_144_000),
    "PLAY2-PICO": (1, 2, 0, 0.01428, 100_000_000, 41_943_040),
    "PLAY2-NANO": (2, 4, 0, 0.02754, 200_000_000, 83_886_080),
    "PLAY2-MICRO": (4, 8, 0, 0.05508, 400_000_000, 167_772_160),
    "PRO2-XXS": (2, 8, 0, 0.0561, 350_000_000, 131_072_000),
    "PRO2-XS": (4, 16, 0, 0.1122, 700_000_000, 262_144_000),
    "PRO2-S": (8, 32, 0, 0.22338, 1_500_000_000, 524_288_000),
    "PRO2-M": (16, 64, 0, 0.44676, 3_000_000_000, 1_048_576_000),
    "GP1-XS": (4, 16, 150, 0.09282, 500_000_000, 314_572_800),
    "GP1-S": (8, 32, 300, 0.19074, 800_000_000, 524_288_000),
    "GP1-M": (16, 64, 600, 0.38352, 1_500_000_000, 838_860_800),
}

# Marketplace labels the lab offers, x86_64 and block-booted (instance_sbs) only: asked for
# an image with a local (l_ssd) root volume, the lab finds none and the provider says so.
IMAGES = {
    "debian_bookworm": "Debian Bookworm",
    "debian_bullseye": "Debian Bullseye",
    "ubuntu_focal": "Ubuntu 20.04 Focal Fossa",
    "ubuntu_jammy": "Ubuntu 22.04 Jammy Jellyfish",
    "ubuntu_noble": "Ubuntu 24.04 Noble Numbat",
}
IMAGE_TYPE = "instance_sbs"
IMAGES_OWNER = "51b656e3-4865-41e8-adbc-0c45bdd780db"  # Scaleway's organization, owner of public images
IMAGES_PUBLISHED = "2026-05-12T15:20:10.934226+00:00"
# Image ids are stable across restarts and labs, as the real ones are across calls.
_IMAGE_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "https://lab.ciel.invalid/marketplace")
ROOT_VOLUME_SIZE = 10 * GB

ALLOWED_ACTIONS = {
    "stopped": ["poweron", "backup"],
    "starting": ["stop_in_place", "backup"],
    "running": ["poweroff", "terminate", "reboot", "stop_in_place", "backup"],
    "stopping": ["stop_in_place", "backup"],
    "stopped in place": ["poweron", "poweroff", "terminate", "reboot", "backup"],
}
GONE = None  # a step after which the object no longer exists
# The (state, state_detail) an action passes through, one read each.
ACTION_STEPS = {
    "poweron": [("starting", "allocating node"), ("running", "booting kernel")],
    "poweroff": [("stopping", "stopping"), ("stopped", "")],
    "stop_in_place": [("stopping", "stopping in place"), ("stopped in place", "stopped in place")],
    "reboot": [("stopping", "rebooting"), ("starting", "rebooting"), ("running", "booting kernel")],
    "terminate": [("stopping", "terminating"), GONE],
}

# enable_default_security: the API drops outbound SMTP, with the same rule ids in every group.
SMTP_PORTS = (25, 465, 587)
RULE_PROTOCOLS = ("TCP", "UDP", "ICMP", "ANY")

SERVER, NIC, SECURITY_GROUP = "instance_server", "instance_private_nic", "instance_security_group"
PLACEMENT_GROUP, VOLUME, USER_DATA, RULES = "instance_placement_group", "volume", "instance_user_data", "instance_rules"


def _stamp() -> str:
    """instance/v1 dates: `2026-07-30T12:54:44.240446+00:00`."""
    return datetime.now(timezone.utc).isoformat()


def _mac(prefix: str) -> str:
    return prefix + ":" + ":".join(f"{random.randrange(256):02x}" for _ in range(3))


def _refused(message: str) -> ApiError:
    """What the API answers a request its resource's state forbids (the messages are the lab's)."""
    return ApiError(400, {"type": "invalid_request_error", "message": message})


def _first_page(req: Request) -> bool:
    """The first page holds everything; later ones are empty (the SDKs stop on an empty page)."""
    return int(req.arg("page", "1") or 1) == 1


def _page(req: Request, items: list) -> list:
    return items if _first_page(req) else []


def _csv(req: Request, name: str) -> list[str]:
    """instance/v1 list filters join their values with commas."""
    return [value for joined in req.query.get(name, []) for value in joined.split(",") if value]


# --- transient states ---------------------------------------------------------------------

def _schedule(lab: Lab, obj: dict, steps: list) -> None:
    """What `obj` becomes after each of its next reads: field updates, or GONE."""
    lab.store.meta.setdefault(obj["id"], {})["steps"] = steps


def _apps(lab: Lab):
    """The data plane's stand-in apps (lab.dataplane.apps.AppPlane), if the lab runs one."""
    runtime = getattr(lab, "runtime", None)
    return getattr(runtime, "apps", None) if runtime is not None else None


def _still_draining(lab: Lab, collection: str, obj: dict, step) -> bool:
    """A server's stand-in is still finishing its work: it is not stopped (or gone) yet."""
    apps = _apps(lab)
    stops = step is GONE or step.get("state") in ("stopped", "stopped in place")
    return collection == SERVER and stops and apps is not None and apps.draining(obj["id"])


def _answer(lab: Lab, collection: str, obj: dict, view: dict) -> dict:
    """Answer `view` (obj as it is now), then move obj one step along its transition."""
    meta = lab.store.meta.get(obj["id"], {})
    if meta.get("steps") and not _still_draining(lab, collection, obj, meta["steps"][0]):
        step = meta["steps"].pop(0)
        if step is GONE:
            _FORGET[collection](lab, obj)
        else:
            date_key, clock = _UPDATED[collection]
            obj.update(step, **{date_key: clock()})
            if collection == SERVER and step.get("state") == "running" and _apps(lab) is not None:
                _apps(lab).server_started(lab, obj)
        if not meta["steps"]:
            del meta["steps"]
            if not meta:
                lab.store.meta.pop(obj["id"], None)
        lab.store.save()
    return view


def _remove(lab: Lab, collection: str, obj: dict) -> None:
    lab.objects(collection).pop(obj["id"], None)
    lab.store.meta.pop(obj["id"], None)


def _zoned(lab: Lab, collection: str, req: Request, resource: str) -> dict:
    obj = lab.objects(collection).get(req.params["id"])
    if obj is None or obj["zone"] != req.params["zone"]:
        raise not_found(resource, req.params["id"])
    return obj


# --- catalogue: server types, Marketplace images ----------------------------------------

def _server_type(row: tuple) -> dict:
    ncpus, ram_gib, local_gb, hourly, bandwidth, block_bandwidth = row
    local = {"min_size": GB if local_gb else 0, "max_size": 800 * GB if local_gb else 0}
    return {"alt_names": [], "arch": "x86_64", "ncpus": ncpus, "ram": ram_gib * 2**30, "gpu": 0, "gpu_info": None,
            "mig_profile": None, "volumes_constraint": {"min_size": 0, "max_size": local_gb * GB},
            "per_volume_constraint": {"l_ssd": local}, "scratch_storage_max_size": 0,
            "scratch_storage_max_volumes_count": 0, "monthly_price": round(hourly * 730, 6), "hourly_price": hourly,
            "capabilities": {"boot_types": ["local", "rescue"], "placement_groups": True, "block_storage": True,
                             "hot_snapshots_local_volume": bool(local_gb), "private_network": 8,
                             "max_file_systems": 0},
            "network": {"ipv6_support": True, "sum_internal_bandwidth": bandwidth, "sum_internet_bandwidth": bandwidth,
                        "interfaces": [{"internal_bandwidth": bandwidth, "internet_bandwidth": bandwidth}]},
            "block_bandwidth": block_bandwidth, "end_of_service": False}


def _list_server_types(lab: Lab, req: Request) -> tuple[int, dict]:
    types = {name: _server_type(row) for name, row in SERVER_TYPES.items()}
    return 200, {"servers": types if _first_page(req) else {}, "total_count": len(types)}


def _server_types_availability(lab: Lab, req: Request) -> tuple[int, dict]:
    available = {name: {"availability": "available"} for name in SERVER_TYPES}
    return 200, {"servers": available if _first_page(req) else {}, "total_count": len(available)}


def _local_image(zone: str, label: str) -> dict:
    return {"id": str(uuid.uuid5(_IMAGE_IDS, f"{zone}/{label}/{IMAGE_TYPE}")), "arch": "x86_64", "zone": zone,
            "compatible_commercial_types": list(SERVER_TYPES), "label": label, "type": IMAGE_TYPE}


def _local_images() -> list[dict]:
    return [_local_image(zone, label) for label in IMAGES for zone in ZONES]


def _list_local_images(lab: Lab, req: Request) -> tuple[int, dict]:
    wanted = {"zone": req.arg("zone"), "label": req.arg("image_label"), "type": req.arg("type"),
              "id": req.arg("image_id"), "arch": req.arg("arch")}
    found = [image for image in _local_images()
             if all(value in (None, "") or image[key] == value for key, value in wanted.items())]
    return 200, {"local_images": _page(req, found), "total_count": len(found)}


def _get_local_image(lab: Lab, req: Request) -> tuple[int, dict]:
    for image in _local_images():
        if image["id"] == req.params["id"]:
            return 200, image
    raise not_found("local_image", req.params["id"])


def _image_snapshot(image: dict) -> str:
    """The id of the SBS snapshot a block-booted image's root volumes are made from."""
    return str(uuid.uuid5(_IMAGE_IDS, image["id"]))


def _server_image(image: dict) -> dict:
    """The image as a server shows it: the public image its root volume was made from."""
    return {"id": image["id"], "name": IMAGES[image["label"]], "organization": IMAGES_OWNER, "project": IMAGES_OWNER,
            "root_volume": {"volume_type": "sbs_snapshot", "id": _image_snapshot(image), "size": 0, "name": ""},
            "extra_volumes": {}, "public": True, "arch": image["arch"], "creation_date": IMAGES_PUBLISHED,
            "modification_date": IMAGES_PUBLISHED, "default_bootscript": None, "from_server": "",
            "state": "available", "tags": [], "zone": image["zone"]}


# --- block volumes (block/v1): the servers' root volumes -------------------------------

def _root_volume(lab: Lab, server: dict, image: dict, size: int) -> dict:
    stamp = now()
    volume = {"id": new_id(), "name": f"{IMAGES[image['label']]}_sbs_volume_0", "type": "sbs_5k", "size": size,
              "project_id": server["project"], "created_at": stamp, "updated_at": stamp,
              "references": [{"id": new_id(), "product_resource_type": SERVER, "product_resource_id": server["id"],
                              "created_at": stamp, "type": "exclusive", "status": "attached"}],
              "parent_snapshot_id": _image_snapshot(image), "status": "in_use", "tags": [],
              "specs": {"perf_iops": 5000, "class": "sbs"}, "last_detached_at": None, "kms_key_id": None,
              "zone": server["zone"]}
    lab.objects(VOLUME)[volume["id"]] = volume
    return volume


def _detach_volumes(lab: Lab, server: dict) -> None:
    for attached in server["volumes"].values():
        volume = lab.objects(VOLUME).get(attached["id"])
        if volume:
            stamp = now()
            volume.update(references=[], status="available", last_detached_at=stamp, updated_at=stamp)


def _get_volume(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, _zoned(lab, VOLUME, req, "volume")


def _list_volumes(lab: Lab, req: Request) -> tuple[int, dict]:
    attached_to = req.arg("product_resource_id")
    found = [volume for volume in lab.objects(VOLUME).values()
             if volume["zone"] == req.params["zone"] and matches(volume, req)
             and (not attached_to or any(r["product_resource_id"] == attached_to for r in volume["references"]))]
    return 200, {"volumes": _page(req, found), "total_count": len(found)}


def _update_volume(lab: Lab, req: Request) -> tuple[int, dict]:
    volume = _zoned(lab, VOLUME, req, "volume")
    body = req.json
    if body.get("size") is not None:
        if body["size"] < volume["size"]:
            raise invalid("size", "a volume can only grow")
        volume["size"] = body["size"]
    if body.get("perf_iops") is not None:
        volume["specs"]["perf_iops"] = body["perf_iops"]
        volume["type"] = f"sbs_{body['perf_iops'] // 1000}k"
    for key in ("name", "tags"):
        if body.get(key) is not None:
            volume[key] = body[key]
    volume["updated_at"] = now()
    lab.store.save()
    return 200, volume


def _delete_volume(lab: Lab, req: Request) -> tuple[int, None]:
    volume = _zoned(lab, VOLUME, req, "volume")
    if volume["references"]:
        raise ApiError(412, {"type": "precondition_failed", "message": "precondition is not respected",
                             "precondition": "resource_still_in_use",
                             "help_message": "the volume is attached to a server: detach it first"})
    _remove(lab, VOLUME, volume)
    lab.store.save()
    return 204, None


def _no_local_volume(lab: Lab, req: Request) -> tuple[int, dict]:
    """The lab's servers have block volumes only; the provider asks here first."""
    raise not_found("instance_volume", req.params["id"])


# --- security groups (instance/v1) -------------------------------------------------------

def _rule(rule_id: str, direction: str, action: str, protocol: str, ip_range: str, port_from: int | None,
          port_to: int | None, position: int, editable: bool, zone: str) -> dict:
    return {"id": rule_id, "protocol": protocol, "direction": direction, "ip_range": ip_range, "dest_ip_range": None,
            "dest_port_from": port_from, "dest_port_to": port_to, "position": position, "editable": editable,
            "action": action, "zone": zone}


def _default_rules(zone: str) -> list[dict]:
    smtp = [(ip_range, port) for ip_range in ("0.0.0.0/0", "::/0") for port in SMTP_PORTS]
    return [_rule(f"11111111-2222-4333-8444-{position:012d}", "outbound", "drop", "TCP", ip_range, port, None,
                  position, False, zone) for position, (ip_range, port) in enumerate(smtp, start=1)]


def _ip_range(text: object) -> str:
    """As the API answers it: a single address without its /32 (or /128)."""
    try:
        network = ipaddress.ip_network(str(text), strict=False)
    except ValueError:
        raise invalid("rules.ip_range", f"{text} is not an IP range") from None
    return str(network.network_address) if network.prefixlen == network.max_prefixlen else str(network)


def _editable_rules(sent: list[dict], kept: list[dict], zone: str) -> list[dict]:
    """Positions count per direction, after the group's non-editable rules."""
    position = {direction: sum(rule["direction"] == direction for rule in kept)
                for direction in ("inbound", "outbound")}
    rules = []
    for rule in sent:
        direction, action, protocol = rule.get("direction"), rule.get("action"), rule.get("protocol") or "TCP"
        if direction not in position or action not in ("accept", "drop") or protocol not in RULE_PROTOCOLS:
            raise invalid("rules", f"invalid rule {rule}")
        position[direction] += 1
        port_from, port_to = rule.get("dest_port_from"), rule.get("dest_port_to")
        rules.append(_rule(new_id(), direction, action, protocol, _ip_range(rule.get("ip_range") or "0.0.0.0/0"),
                           port_from, None if port_to == port_from else port_to, position[direction], True, zone))
    return rules


def _group_rules(lab: Lab, group: dict) -> list[dict]:
    return lab.objects(RULES).setdefault(group["id"], {"rules": []})["rules"]


def _set_default_security(lab: Lab, group: dict, enabled: bool) -> None:
    editable = [rule for rule in _group_rules(lab, group) if rule["editable"]]
    lab.objects(RULES)[group["id"]] = {"rules": (_default_rules(group["zone"]) if enabled else []) + editable}
    group["enable_default_security"] = enabled


def _security_group_view(lab: Lab, group: dict) -> dict:
    servers = [{"id": server["id"], "name": server["name"]} for server in lab.objects(SERVER).values()
               if server["security_group"]["id"] == group["id"]]
    return {**group, "servers": servers}


def _new_security_group(lab: Lab, zone: str, project: str, body: dict, project_default: bool = False) -> dict:
    stamp = _stamp()
    group = {"id": new_id(), "creation_date": stamp, "modification_date": stamp,
             "name": body.get("name") or f"sg-{new_id()[:8]}", "description": body.get("description") or None,
             "organization": project, "project": project, "stateful": bool(body.get("stateful", True)),
             "inbound_default_policy": body.get("inbound_default_policy") or "accept",
             "outbound_default_policy": body.get("outbound_default_policy") or "accept",
             "organization_default": False, "project_default": project_default, "enable_default_security": True,
             "state": "available", "tags": body.get("tags") or [], "zone": zone}
    lab.objects(SECURITY_GROUP)[group["id"]] = group
    _set_default_security(lab, group, body.get("enable_default_security") is not False)
    return group


def _default_security_group(lab: Lab, zone: str, project: str) -> dict:
    for group in lab.objects(SECURITY_GROUP).values():
        if group["project_default"] and group["zone"] == zone and group["project"] == project:
            return group
    return _new_security_group(lab, zone, project, {"name": "Default security group"}, project_default=True)


def _create_security_group(lab: Lab, req: Request) -> tuple[int, dict]:
    project = req.json.get("project") or req.json.get("organization")
    if not project:
        raise invalid("project", "a project is required")
    group = _new_security_group(lab, req.params["zone"], project, req.json)
    lab.store.save()
    return 201, {"security_group": _security_group_view(lab, group)}


def _get_security_group(lab: Lab, req: Request) -> tuple[int, dict]:
    group = _zoned(lab, SECURITY_GROUP, req, SECURITY_GROUP)
    return 200, {"security_group": _answer(lab, SECURITY_GROUP, group, _security_group_view(lab, group))}


def _list_security_groups(lab: Lab, req: Request) -> tuple[int, dict]:
    tags, project_default = _csv(req, "tags"), req.arg("project_default")
    found = [_security_group_view(lab, group) for group in lab.objects(SECURITY_GROUP).values()
             if group["zone"] == req.params["zone"] and req.arg("name", "") in group["name"]
             and req.arg("project", group["project"]) == group["project"] and all(t in group["tags"] for t in tags)
             and project_default in (None, str(group["project_default"]).lower())]
    return 200, {"security_groups": _page(req, found), "total_count": len(found)}


def _update_security_group(lab: Lab, req: Request) -> tuple[int, dict]:
    group = _zoned(lab, SECURITY_GROUP, req, SECURITY_GROUP)
    body, before = req.json, dict(group)
    for key in ("name", "stateful", "tags"):
        if body.get(key) is not None:
            group[key] = body[key]
    if body.get("description") is not None:
        group["description"] = body["description"] or None  # the API answers null for no description
    for key in ("inbound_default_policy", "outbound_default_policy"):
        if body.get(key) in ("accept", "drop"):
            group[key] = body[key]
    if body.get("enable_default_security") is not None:
        _set_default_security(lab, group, bool(body["enable_default_security"]))
    if group != before:  # as recorded: an update that changes nothing leaves the group available
        group.update(state="syncing", modification_date=_stamp())
        _schedule(lab, group, [{"state": "available"}])
    lab.store.save()
    return 200, {"security_group": _security_group_view(lab, group)}


def _delete_security_group(lab: Lab, req: Request) -> tuple[int, None]:
    group = _zoned(lab, SECURITY_GROUP, req, SECURITY_GROUP)
    if _security_group_view(lab, group)["servers"]:
        raise _refused("group is in use by servers")
    _remove(lab, SECURITY_GROUP, group)
    lab.objects(RULES).pop(group["id"], None)
    lab.store.save()
    return 204, None


def _list_rules(lab: Lab, req: Request) -> tuple[int, dict]:
    rules = _group_rules(lab, _zoned(lab, SECURITY_GROUP, req, SECURITY_GROUP))
    return 200, {"rules": _page(req, rules), "total_count": len(rules)}


def _set_rules(lab: Lab, req: Request) -> tuple[int, dict]:
    """PUT: the sent rules replace the group's editable ones."""
    group = _zoned(lab, SECURITY_GROUP, req, SECURITY_GROUP)
    kept = [rule for rule in _group_rules(lab, group) if not rule["editable"]]
    rules = kept + _editable_rules(req.json.get("rules") or [], kept, group["zone"])
    lab.objects(RULES)[group["id"]] = {"rules": rules}
    group["modification_date"] = _stamp()
    lab.store.save()
    return 200, {"rules": rules}


# --- placement groups (instance/v2alpha1, and v1 for policy_mode/policy_respected) ------

def _placement_group_v2(group: dict) -> dict:
    return {key: value for key, value in group.items() if key != "policy_mode"}


def _placement_group_v1(group: dict) -> dict:
    # max_availability and low_latency are both met while the lab has hypervisors to spare.
    return {"id": group["id"], "name": group["name"], "organization": group["project_id"],
            "project": group["project_id"], "policy_mode": group["policy_mode"], "policy_type": group["policy_type"],
            "policy_respected": True, "tags": group["tags"], "zone": group["zone"]}


def _create_placement_group(lab: Lab, req: Request) -> tuple[int, dict]:
    body, stamp = req.json, now()
    if not body.get("project_id"):
        raise invalid("project_id", "a project is required")
    group = {"project_id": body["project_id"], "name": body.get("name") or f"pg-{new_id()[:8]}", "id": new_id(),
             "policy_type": body.get("policy_type") or "max_availability", "tags": body.get("tags") or [],
             "created_at": stamp, "updated_at": stamp, "zone": req.params["zone"], "policy_mode": "optional"}
    lab.objects(PLACEMENT_GROUP)[group["id"]] = group
    lab.store.save()
    return 200, _placement_group_v2(group)


def _get_placement_group(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, _placement_group_v2(_zoned(lab, PLACEMENT_GROUP, req, PLACEMENT_GROUP))


def _list_placement_groups(lab: Lab, req: Request) -> tuple[int, dict]:
    found = [_placement_group_v2(group) for group in lab.objects(PLACEMENT_GROUP).values()
             if group["zone"] == req.params["zone"] and matches(group, req)]
    return 200, {"placement_groups": _page(req, found), "total_count": len(found)}


def _change_placement_group(group: dict, body: dict, fields: tuple[str, ...]) -> None:
    for key in fields:
        if body.get(key) is not None:
            group[key] = body[key]
    group["updated_at"] = now()


def _update_placement_group(lab: Lab, req: Request) -> tuple[int, dict]:
    group = _zoned(lab, PLACEMENT_GROUP, req, PLACEMENT_GROUP)
    _change_placement_group(group, req.json, ("name", "policy_type", "tags"))
    lab.store.save()
    return 200, _placement_group_v2(group)


def _delete_placement_group(lab: Lab, req: Request) -> tuple[int, None]:
    _remove(lab, PLACEMENT_GROUP, _zoned(lab, PLACEMENT_GROUP, req, PLACEMENT_GROUP))
    lab.store.save()
    return 204, None


def _get_placement_group_v1(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, {"placement_group": _placement_group_v1(_zoned(lab, PLACEMENT_GROUP, req, PLACEMENT_GROUP))}


def _update_placement_group_v1(lab: Lab, req: Request) -> tuple[int, dict]:
    group = _zoned(lab, PLACEMENT_GROUP, req, PLACEMENT_GROUP)
    if req.json.get("policy_mode") not in (None, "optional", "enforced"):
        raise invalid("policy_mode", "policy_mode is optional or enforced")
    _change_placement_group(group, req.json, ("name", "policy_mode", "policy_type", "tags"))
    lab.store.save()
    return 200, {"placement_group": _placement_group_v1(group)}


# --- servers (instance/v1) ---------------------------------------------------------------

def _nics_of(lab: Lab, server: dict) -> list[dict]:
    return [nic for nic in lab.objects(NIC).values() if nic["server_id"] == server["id"]]


def _nic_v1(nic: dict) -> dict:
    return {"id": nic["id"], "private_network_id": nic["private_network_id"], "server_id": nic["server_id"],
            "mac_address": nic["mac_address"], "state": nic["status"],
            "creation_date": nic["created_at"].replace("Z", "+00:00"),
            "modification_date": nic["updated_at"].replace("Z", "+00:00"), "zone": nic["zone"], "tags": nic["tags"],
            "ipam_ip_ids": nic["ip_ids"]}


def _server_view(lab: Lab, server: dict) -> dict:
    """The server as the API shows it: its groups and NICs as they are now (it stores the
    placement group's id only)."""
    group = lab.objects(SECURITY_GROUP).get(server["security_group"]["id"])
    placement = lab.objects(PLACEMENT_GROUP).get(server["placement_group"] or "")
    # No admin password is ever encrypted for a Linux server: the keys are there, null.
    return {"admin_password_encryption_ssh_key_id": None, "admin_password_encrypted_value": None,
            **server, "security_group": {"id": server["security_group"]["id"],
                                         "name": group["name"] if group else server["security_group"]["name"]},
            "allowed_actions": ALLOWED_ACTIONS[server["state"]],
            "placement_group": _placement_group_v1(placement) if placement else None,
            "private_nics": [_nic_v1(nic) for nic in _nics_of(lab, server)]}


def _project_of(body: dict) -> str:
    project = body.get("project") or body.get("organization")
    if not project:
        raise invalid("project", "a project is required")
    return project


def _image_for(zone: str, image_id: object, commercial_type: str) -> dict:
    for image in _local_images():
        if image["id"] == image_id and image["zone"] == zone:
            if commercial_type not in image["compatible_commercial_types"]:
                raise invalid("image", f"image {image_id} is not compatible with {commercial_type}")
            return image
    if not image_id:
        raise invalid("image", "the lab creates servers from a Marketplace image only")
    raise not_found("instance_image", str(image_id))


def _create_server(lab: Lab, req: Request) -> tuple[int, dict]:
    body, zone = req.json, req.params["zone"]
    commercial_type = body.get("commercial_type")
    if commercial_type not in SERVER_TYPES:
        raise invalid("commercial_type", f"unknown commercial type {commercial_type!r}")
    project = _project_of(body)
    image = _image_for(zone, body.get("image"), commercial_type)
    root = (body.get("volumes") or {}).get("0") or {}
    if root.get("volume_type") not in (None, "", "sbs_volume") or set(body.get("volumes") or {}) - {"0"}:
        raise invalid("volumes", "the lab boots servers from one sbs_volume made from their image")
    if body.get("security_group"):
        group = lab.get(SECURITY_GROUP, body["security_group"])
    else:
        group = _default_security_group(lab, zone, project)
    if body.get("placement_group"):
        lab.get(PLACEMENT_GROUP, body["placement_group"])
    name, stamp, server_id = body.get("name") or f"srv-{new_id()[:8]}", _stamp(), new_id()
    server = {"id": server_id, "name": name, "arch": "x86_64", "commercial_type": commercial_type,
              "boot_type": body.get("boot_type") or "local", "organization": project, "project": project,
              "hostname": name.lower().replace("_", "-"), "image": _server_image(image), "volumes": {},
              "tags": body.get("tags") or [], "state": "stopped", "protected": bool(body.get("protected")),
              "state_detail": "", "public_ip": None, "public_ips": [], "mac_address": _mac("de:00:00"),
              "routed_ip_enabled": True, "ipv6": None, "extra_networks": [],
              "dynamic_ip_required": bool(body.get("dynamic_ip_required", True)), "enable_ipv6": False,
              "private_ip": None, "creation_date": stamp, "modification_date": stamp, "bootscript": None,
              "security_group": {"id": group["id"], "name": group["name"]}, "location": None, "maintenances": [],
              "placement_group": body.get("placement_group"), "zone": zone, "filesystems": [],
              "end_of_service": False, "dns": f"{server_id}.pub.instances.scw.cloud"}
    volume = _root_volume(lab, server, image, root.get("size") or ROOT_VOLUME_SIZE)
    server["volumes"]["0"] = {"boot": bool(root.get("boot")), "volume_type": "sbs_volume", "id": volume["id"],
                              "state": "available", "zone": zone}
    lab.objects(SERVER)[server_id] = server
    lab.store.save()
    return 201, {"server": _server_view(lab, server)}


def _get_server(lab: Lab, req: Request) -> tuple[int, dict]:
    server = _zoned(lab, SERVER, req, SERVER)
    return 200, {"server": _answer(lab, SERVER, server, _server_view(lab, server))}


def _list_servers(lab: Lab, req: Request) -> tuple[int, dict]:
    tags, ids = _csv(req, "tags"), _csv(req, "servers")
    exact = {"project": req.arg("project"), "organization": req.arg("organization"), "state": req.arg("state"),
             "commercial_type": req.arg("commercial_type")}
    found = [_answer(lab, SERVER, server, _server_view(lab, server)) for server in list(lab.objects(SERVER).values())
             if server["zone"] == req.params["zone"] and req.arg("name", "") in server["name"]
             and all(value is None or server[key] == value for key, value in exact.items())
             and all(tag in server["tags"] for tag in tags) and (not ids or server["id"] in ids)]
    return 200, {"servers": _page(req, found), "total_count": len(found)}


def _update_server(lab: Lab, req: Request) -> tuple[int, dict]:
    server, body = _zoned(lab, SERVER, req, SERVER), req.json
    stopped = server["state"] == "stopped"
    templates = body.get("volumes")
    if templates is not None:
        if {template.get("id") for template in templates.values()} != {v["id"] for v in server["volumes"].values()}:
            raise invalid("volumes", "the lab does not attach or detach volumes")
        for index, template in templates.items():
            if template.get("boot") is not None and index in server["volumes"]:
                server["volumes"][index]["boot"] = template["boot"]
    if body.get("commercial_type") not in (None, server["commercial_type"]):
        if body["commercial_type"] not in SERVER_TYPES:
            raise invalid("commercial_type", f"unknown commercial type {body['commercial_type']!r}")
        if not stopped:
            raise _refused("server should be stopped to change its commercial type")
        server["commercial_type"] = body["commercial_type"]
    if "placement_group" in body and body["placement_group"] != server["placement_group"]:
        if body["placement_group"] is not None:
            lab.get(PLACEMENT_GROUP, body["placement_group"])
            if not stopped:
                raise _refused("server should be stopped to join a placement group")
        server["placement_group"] = body["placement_group"]
    if body.get("security_group"):
        group = lab.get(SECURITY_GROUP, body["security_group"]["id"])
        server["security_group"] = {"id": group["id"], "name": group["name"]}
    for key in ("name", "tags", "dynamic_ip_required", "protected", "boot_type"):
        if body.get(key) is not None:
            server[key] = body[key]
    server["modification_date"] = _stamp()
    lab.store.save()
    return 200, {"server": _server_view(lab, server)}


def _forget_server(lab: Lab, server: dict) -> None:
    """What goes with a server: its NICs (and their IPs' links), its user data; its block
    volumes stay, detached."""
    if _apps(lab) is not None:
        _apps(lab).server_deleted(lab, server)
    for nic in _nics_of(lab, server):
        _let_go_ips(lab, nic)
        _remove(lab, NIC, nic)
    _detach_volumes(lab, server)
    lab.objects(USER_DATA).pop(server["id"], None)
    _remove(lab, SERVER, server)


def _delete_server(lab: Lab, req: Request) -> tuple[int, None]:
    server = _zoned(lab, SERVER, req, SERVER)
    if server["state"] != "stopped":
        raise _refused(f"server should be stopped to be deleted (it is {server['state']})")
    if server["protected"]:
        raise _refused("server is protected")
    _forget_server(lab, server)
    lab.store.save()
    return 204, None


def _location(zone: str) -> dict:
    return {"zone_id": zone, "platform_id": "14", "cluster_id": str(random.randint(1, 99)),
            "hypervisor_id": str(random.randint(100, 999)), "node_id": str(random.randint(1, 199))}


def _steps(action: str, location: dict | None) -> list:
    """ACTION_STEPS as field updates: the server holds a node (its location) until it stops."""
    return [GONE if step is GONE else {"state": step[0], "state_detail": step[1],
                                       "location": None if step[0] == "stopped" else location}
            for step in ACTION_STEPS[action]]


def _server_action(lab: Lab, req: Request) -> tuple[int, dict]:
    server = _zoned(lab, SERVER, req, SERVER)
    action = req.json.get("action")
    if action not in ACTION_STEPS:
        raise invalid("action", f"the lab emulates the actions {', '.join(ACTION_STEPS)}, not {action!r}")
    if action not in ALLOWED_ACTIONS[server["state"]]:
        raise _refused(f"server should be {'stopped' if action == 'poweron' else 'running'} for {action} "
                       f"(it is {server['state']})")
    first, *rest = _steps(action, server["location"] or _location(server["zone"]))
    server.update(first, modification_date=_stamp())
    _schedule(lab, server, rest)
    lab.store.save()
    if action in ("poweroff", "stop_in_place", "reboot", "terminate") and _apps(lab) is not None:
        _apps(lab).server_stopping(lab, server)  # drains in the background: the action answers now
    return 202, {"task": {"id": "00000000-0000-0000-0000-000000000000", "description": "fake task",
                          "status": "pending", "href_from": f"/servers/{server['id']}/action",
                          "href_result": f"/servers/{server['id']}", "started_at": _stamp(), "terminated_at": None,
                          "progress": 0, "zone": server["zone"]}}


def _user_data(lab: Lab, req: Request) -> dict:
    server = _zoned(lab, SERVER, req, SERVER)
    return lab.objects(USER_DATA).setdefault(server["id"], {})


def _list_user_data(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, {"user_data": sorted(_user_data(lab, req))}


def _get_user_data(lab: Lab, req: Request) -> tuple[int, str]:
    values = _user_data(lab, req)
    if req.params["key"] not in values:
        raise not_found("instance_user_data", req.params["key"])
    return 200, values[req.params["key"]]


def _set_user_data(lab: Lab, req: Request) -> tuple[int, None]:
    """The body is the value itself, sent as text/plain."""
    if isinstance(req.body, (dict, list)):
        raise invalid("content", "user data is sent as text/plain")
    _user_data(lab, req)[req.params["key"]] = req.body or ""
    lab.store.save()
    return 204, None


def _delete_user_data(lab: Lab, req: Request) -> tuple[int, None]:
    if _user_data(lab, req).pop(req.params["key"], None) is None:
        raise not_found("instance_user_data", req.params["key"])
    lab.store.save()
    return 204, None


def _server_private_nics(lab: Lab, req: Request) -> tuple[int, dict]:
    nics = [_nic_v1(nic) for nic in _nics_of(lab, _zoned(lab, SERVER, req, SERVER))]
    return 200, {"private_nics": _page(req, nics), "total_count": len(nics)}


def _server_private_nic(lab: Lab, req: Request) -> tuple[int, dict]:
    for nic in _nics_of(lab, _zoned(lab, SERVER, req, SERVER)):
        if nic["id"] == req.params["nic_id"]:
            return 200, {"private_nic": _nic_v1(nic)}
    raise not_found("instance_private_nic", req.params["nic_id"])


# --- private NICs (instance/v2alpha1) and the IPAM IPs they hold -----------------------
# ipam.py is another family's module: imported where used, so this one loads on its own.

def _check_ips(lab: Lab, ip_ids: list[str], network: dict) -> None:
    from lab.families import ipam

    subnets = {subnet["id"] for subnet in network["subnets"]}
    for ip_id in ip_ids:
        ip = lab.get(ipam.COLLECTION, ip_id)
        if ip["resource"]:
            raise invalid("ip_ids", f"IP {ip_id} is already attached to {ip['resource']['type']} "
                                    f"{ip['resource']['id']}")
        if ip["source"].get("subnet_id") not in subnets:
            raise invalid("ip_ids", f"IP {ip_id} is not in private network {network['id']}")


def _hold_ips(lab: Lab, nic: dict, server: dict, network: dict, ip_ids: list[str]) -> list[str]:
    """Attach the reserved IPs the NIC is created with; without any, book an IPv4 and an IPv6
    address for it, as the API does (those go with the NIC)."""
    from lab.families import ipam

    resource = {"type": NIC, "id": nic["id"], "mac_address": nic["mac_address"], "name": server["name"]}
    if ip_ids:
        for ip_id in ip_ids:
            ipam.attach(lab, ip_id, resource)
        return ip_ids
    versions = {ipaddress.ip_network(subnet["subnet"]).version for subnet in network["subnets"]}
    booked = [ipam.reserve(lab, region=nic["zone"].rsplit("-", 1)[0], private_network_id=network["id"],
                           project_id=server["project"], resource=resource, is_ipv6=version == 6)["id"]
              for version in sorted(versions)]
    lab.store.meta.setdefault(nic["id"], {})["booked_ips"] = booked
    return booked


def _let_go_ips(lab: Lab, nic: dict) -> None:
    """Free the addresses booked for the NIC; the reserved ones stay, detached."""
    from lab.families import ipam

    booked = lab.store.meta.get(nic["id"], {}).get("booked_ips", [])
    for ip_id in nic["ip_ids"]:
        if ip_id not in lab.objects(ipam.COLLECTION):
            continue  # released through IPAM already
        if ip_id in booked:
            ipam.release(lab, ip_id)
        else:
            ipam.detach(lab, ip_id)


def _create_nic(lab: Lab, req: Request) -> tuple[int, dict]:
    body, zone = req.json, req.params["zone"]
    server = lab.objects(SERVER).get(body.get("server_id") or "")
    if server is None or server["zone"] != zone:
        raise not_found(SERVER, str(body.get("server_id")))
    network = lab.get("private_network", str(body.get("private_network_id")))
    if any(nic["private_network_id"] == network["id"] for nic in _nics_of(lab, server)):
        raise invalid("private_network_id", f"server {server['id']} is already in private network {network['id']}")
    _check_ips(lab, body.get("ip_ids") or [], network)
    stamp = now()
    nic = {"id": new_id(), "private_network_id": network["id"], "project_id": server["project"],
           "server_id": server["id"], "security_group_id": "", "mac_address": _mac("02:00:00"),
           "status": "attaching", "ip_ids": [], "tags": body.get("tags") or [], "created_at": stamp,
           "updated_at": stamp, "zone": zone}
    nic["ip_ids"] = _hold_ips(lab, nic, server, network, body.get("ip_ids") or [])
    # Still attaching at the waiter's first poll, as recorded; available at the next.
    _schedule(lab, nic, [{"status": "available"}])
    lab.objects(NIC)[nic["id"]] = nic
    lab.store.save()
    # The provider powers a server on before it creates its NICs: the app's address comes now.
    if server["state"] == "running" and _apps(lab) is not None:
        _apps(lab).server_started(lab, server)
    return 200, dict(nic)


def _get_nic(lab: Lab, req: Request) -> tuple[int, dict]:
    nic = _zoned(lab, NIC, req, NIC)
    return 200, _answer(lab, NIC, nic, dict(nic))


def _list_nics(lab: Lab, req: Request) -> tuple[int, dict]:
    filters = {"server_id": req.query.get("server_ids"), "private_network_id": req.query.get("private_network_ids")}
    tags = req.query.get("tags", [])
    found = [_answer(lab, NIC, nic, dict(nic)) for nic in list(lab.objects(NIC).values())
             if nic["zone"] == req.params["zone"] and req.arg("project_id", nic["project_id"]) == nic["project_id"]
             and all(not wanted or nic[key] in wanted for key, wanted in filters.items())
             and all(tag in nic["tags"] for tag in tags)]
    return 200, {"private_network_interfaces": _page(req, found), "total_count": len(found)}


def _update_nic(lab: Lab, req: Request) -> tuple[int, dict]:
    nic = _zoned(lab, NIC, req, NIC)
    if req.json.get("tags") is not None:
        nic.update(tags=req.json["tags"], updated_at=now())
        lab.store.save()
    return 200, dict(nic)


def _delete_nic(lab: Lab, req: Request) -> tuple[int, None]:
    nic = _zoned(lab, NIC, req, NIC)
    if nic["status"] != "available":
        raise transient(NIC, nic["id"], nic["status"])
    _let_go_ips(lab, nic)
    _remove(lab, NIC, nic)
    lab.store.save()
    server = lab.objects(SERVER).get(nic["server_id"])
    if server is not None and server["state"] == "running" and _apps(lab) is not None:
        _apps(lab).server_started(lab, server)  # follows the addresses left: moves, or stops
    return 204, None


# The date a step refreshes, in the API's format for that collection.
_UPDATED = {SERVER: ("modification_date", _stamp), SECURITY_GROUP: ("modification_date", _stamp),
            NIC: ("updated_at", now)}
_FORGET = {SERVER: _forget_server}


def register(lab: Lab) -> None:
    v1, v2 = "/instance/v1/zones/{zone}", "/instance/v2alpha1/zones/{zone}"
    lab.add(
        route("GET", f"{v1}/products/servers", _list_server_types),
        route("GET", f"{v1}/products/servers/availability", _server_types_availability),
        route("GET", "/marketplace/v2/local-images", _list_local_images),
        route("GET", "/marketplace/v2/local-images/{id}", _get_local_image),
        route("GET", f"{v1}/volumes/{{id}}", _no_local_volume),
        route("GET", "/block/v1/zones/{zone}/volumes", _list_volumes),
        route("GET", "/block/v1/zones/{zone}/volumes/{id}", _get_volume),
        route("PATCH", "/block/v1/zones/{zone}/volumes/{id}", _update_volume),
        route("DELETE", "/block/v1/zones/{zone}/volumes/{id}", _delete_volume),
        route("POST", f"{v1}/security_groups", _create_security_group),
        route("GET", f"{v1}/security_groups", _list_security_groups),
        route("GET", f"{v1}/security_groups/{{id}}", _get_security_group),
        route("PATCH", f"{v1}/security_groups/{{id}}", _update_security_group),
        route("DELETE", f"{v1}/security_groups/{{id}}", _delete_security_group),
        route("GET", f"{v1}/security_groups/{{id}}/rules", _list_rules),
        route("PUT", f"{v1}/security_groups/{{id}}/rules", _set_rules),
        route("POST", f"{v2}/placement-groups", _create_placement_group),
        route("GET", f"{v2}/placement-groups", _list_placement_groups),
        route("GET", f"{v2}/placement-groups/{{id}}", _get_placement_group),
        route("PATCH", f"{v2}/placement-groups/{{id}}", _update_placement_group),
        route("DELETE", f"{v2}/placement-groups/{{id}}", _delete_placement_group),
        route("GET", f"{v1}/placement_groups/{{id}}", _get_placement_group_v1),
        route("PATCH", f"{v1}/placement_groups/{{id}}", _update_placement_group_v1),
        route("POST", f"{v1}/servers", _create_server),
        route("GET", f"{v1}/servers", _list_servers),
        route("GET", f"{v1}/servers/{{id}}", _get_server),
        route("PATCH", f"{v1}/servers/{{id}}", _update_server),
        route("DELETE", f"{v1}/servers/{{id}}", _delete_server),
        route("POST", f"{v1}/servers/{{id}}/action", _server_action),
        route("GET", f"{v1}/servers/{{id}}/user_data", _list_user_data),
        route("GET", f"{v1}/servers/{{id}}/user_data/{{key}}", _get_user_data),
        route("PATCH", f"{v1}/servers/{{id}}/user_data/{{key}}", _set_user_data),
        route("DELETE", f"{v1}/servers/{{id}}/user_data/{{key}}", _delete_user_data),
        route("GET", f"{v1}/servers/{{id}}/private_nics", _server_private_nics),
        route("GET", f"{v1}/servers/{{id}}/private_nics/{{nic_id}}", _server_private_nic),
        route("POST", f"{v2}/private-network-interfaces", _create_nic),
        route("GET", f"{v2}/private-network-interfaces", _list_nics),
        route("GET", f"{v2}/private-network-interfaces/{{id}}", _get_nic),
        route("PATCH", f"{v2}/private-network-interfaces/{{id}}", _update_nic),
        route("DELETE", f"{v2}/private-network-interfaces/{{id}}", _delete_nic),
    )
