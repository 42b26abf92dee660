"""Domain API (domain/v2beta1): DNS zones and their records.

Records change through one PATCH of the zone's records (a list of add/set/delete/clear
changes) and are read by listing them. Writing a record under a zone the lab does not
hold creates that zone, as the real API does unless told not to; the lab's zones are
`active` (their delegation is assumed). A zone the lab does not hold answers its own 404.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone

from lab.api import ApiError, Lab, Request, invalid, new_id, route
from lab.runner import LAB_PROJECT_ID

API = "/domain/v2beta1/dns-zones"
NAME_SERVERS = ("ns0.dom.scw.cloud", "ns1.dom.scw.cloud")
RECORD_FIELDS = ("data", "name", "priority", "ttl", "type", "comment", "geo_ip_config", "http_service_config",
                 "weighted_config", "view_config")


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")  # this API's dates have no fraction


def _zone_not_found() -> ApiError:
    return ApiError(404, {"message": "subdomain not found"})


def _zone(lab: Lab, name: str) -> dict:
    found = lab.objects("dns_zone").get(name)
    if found is None:
        raise _zone_not_found()
    return found


def _new_zone(name: str) -> dict:
    """A zone as the lab holds it: what the API shows of it, and its records by id. Record
    writes name no project, so the zone belongs to the lab's."""
    labels = name.split(".")
    stamp = _stamp()
    zone = {"zone": {"domain": ".".join(labels[-2:]), "subdomain": ".".join(labels[:-2]), "ns": list(NAME_SERVERS),
                     "ns_default": list(NAME_SERVERS), "ns_master": [], "status": "active", "message": None,
                     "updated_at": stamp, "project_id": LAB_PROJECT_ID, "linked_products": []},
            "records": {}}
    for server in NAME_SERVERS:  # every zone starts with its name servers at the apex
        record = {"id": new_id(), "data": f"{server}.", "name": "", "priority": 0, "ttl": 1800, "type": "NS",
                  "comment": None, "updated_at": stamp}
        zone["records"][record["id"]] = record
    return zone


def _record(body: dict, record_id: str | None = None) -> dict:
    record = {key: body.get(key) for key in RECORD_FIELDS if body.get(key) is not None}
    record.setdefault("comment", None)
    record.setdefault("priority", 0)
    record.setdefault("name", "")
    if not record.get("type") or not record.get("data"):
        raise invalid("records", "a record needs a type and data")
    if record["type"] in ("A", "AAAA"):
        version = 4 if record["type"] == "A" else 6
        try:
            valid = ipaddress.ip_address(record["data"]).version == version
        except ValueError:
            valid = False
        if not valid:
            raise invalid("data", f"{record['data']!r} is not an IPv{version} address for an {record['type']} record")
    record.setdefault("ttl", 3600)
    if not 60 <= record["ttl"] <= 2592000:
        raise invalid("ttl", "ttl must be between 60 and 2592000")
    return {**record, "id": record_id or new_id(), "updated_at": _stamp()}


def _matching(records: dict, change: dict) -> list[str]:
    """The ids a set/delete change designates: by id, or by name and type (and data/ttl if given)."""
    if change.get("id"):
        if change["id"] not in records:
            raise ApiError(404, {"message": "record not found"})
        return [change["id"]]
    fields = change.get("id_fields") or {}
    return [record_id for record_id, record in records.items()
            if record["name"] == fields.get("name", "") and record["type"] == fields.get("type")
            and fields.get("data") in (None, record["data"]) and fields.get("ttl") in (None, record["ttl"])]


def _update_records(lab: Lab, req: Request) -> tuple[int, dict]:
    name, body = req.params["zone"], req.json
    if name not in lab.objects("dns_zone") and body.get("disallow_new_zone_creation"):
        raise _zone_not_found()
    zone = lab.objects("dns_zone").get(name) or _new_zone(name)
    records = dict(zone["records"])  # a copy: a change that fails leaves the zone as it was (or absent)
    changed = []
    for change in body.get("changes") or []:
        if change.get("add"):
            added = [_record(item) for item in change["add"].get("records") or []]
        elif change.get("set"):
            for record_id in _matching(records, change["set"]):
                del records[record_id]
            new_records = change["set"].get("records") or []
            # Set by id keeps the record's id (as recorded).
            keep_id = change["set"].get("id") if len(new_records) == 1 else None
            added = [_record(item, keep_id) for item in new_records]
        elif change.get("delete"):
            for record_id in _matching(records, change["delete"]):
                del records[record_id]
            added = []
        elif "clear" in change:
            records = {record_id: record for record_id, record in records.items()
                       if (record["name"], record["type"]) == ("", "NS")}
            added = []
        else:
            raise invalid("changes", "a change is one of add, set, delete, clear")
        records.update({record["id"]: record for record in added})
        changed += added
    zone["records"] = records
    zone["zone"]["updated_at"] = _stamp()
    lab.objects("dns_zone")[name] = zone
    lab.store.save()
    return 200, {"records": list(records.values()) if body.get("return_all_records") else changed}


def _list_records(lab: Lab, req: Request) -> tuple[int, dict]:
    zone = _zone(lab, req.params["zone"])
    wanted_name, wanted_type, wanted_id = req.arg("name", ""), req.arg("type", "unknown"), req.arg("id")
    found = [record for record in zone["records"].values()
             if wanted_name in ("", record["name"]) and wanted_type in ("unknown", record["type"])
             and wanted_id in (None, record["id"])]
    found.sort(key=lambda record: (record["name"], record["type"], record["data"]),
               reverse=req.arg("order_by") == "name_desc")
    page = int(req.arg("page", "1") or 1)
    return 200, {"records": found if page == 1 else [], "total_count": len(found)}


def _list_zones(lab: Lab, req: Request) -> tuple[int, dict]:
    wanted = (set(req.query.get("dns_zones", [])) | {req.arg("dns_zone")}) - {None, ""}
    found = []
    for name, zone in sorted(lab.objects("dns_zone").items()):
        view = zone["zone"]
        if wanted and name not in wanted:
            continue
        if req.arg("domain") not in (None, "", view["domain"]):
            continue
        if req.arg("project_id") not in (None, view["project_id"]):
            continue
        found.append(view)
    page = int(req.arg("page", "1") or 1)
    return 200, {"dns_zones": found if page == 1 else [], "total_count": len(found)}


def register(lab: Lab) -> None:
    lab.add(route("PATCH", API + "/{zone}/records", _update_records),
            route("GET", API + "/{zone}/records", _list_records),
            route("GET", API, _list_zones))
