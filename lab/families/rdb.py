"""Managed Database API (rdb/v1): instances, their databases, users, privileges, settings
and endpoints, read replicas, and the engines catalogue.

Statuses as recorded: an instance is `provisioning` once created, `configuring` after its
settings or an endpoint's removal, `initializing` after an endpoint is added or an upgrade;
a read replica is `provisioning`, then `initializing` after an endpoint is added. Changes
to a busy instance are refused (409 transient_state). Deleting answers the object in
`deleting`, then it is gone (404).

Settings are replaced by a PUT (the provider sends the whole map): what was set is read
back exactly, and an instance nobody configured reads its engine's defaults, sized to its
node, as the recordings show.

A private network endpoint with `ipam_config` gets its address from IPAM (the ipam family),
released when the endpoint goes; one with a `service_ip` (static) stays outside IPAM.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import NamedTuple

from lab.api import ApiError, Kind, Lab, Request, invalid, new_id, not_found, now, route, transient
from lab.families import ipam

API = "/rdb/v1/regions/{region}"
GB = 1_000_000_000
LOCAL_VOLUME_BYTES = 5 * GB  # what an lssd volume holds on the recorded DEV node
# Built by the routes below (not the generic create). Stored as "rdb_…" so that no other family's
# collection meets them; errors name them "instance" and "read_replica", as the API does.
INSTANCE = Kind("rdb/v1", "regions", "instances", "instances", "rdb_instance", lambda lab, req: {},
                statuses=("provisioning", "ready"))
REPLICA = Kind("rdb/v1", "regions", "read-replicas", "read_replicas", "rdb_read_replica", lambda lab, req: {},
               statuses=("provisioning", "ready"))

# Node offers: (vCPUs, memory in GiB); DEV nodes share their vCPUs.
NODE_TYPES = {
    "DB-DEV-S": (2, 2), "DB-DEV-M": (3, 4), "DB-DEV-L": (4, 8), "DB-DEV-XL": (4, 12),
    "DB-PLAY2-PICO": (1, 2), "DB-PLAY2-NANO": (2, 4),
    "DB-PRO2-XXS": (2, 8), "DB-PRO2-XS": (4, 16), "DB-PRO2-S": (8, 32), "DB-PRO2-M": (16, 64),
    "DB-GP-XS": (4, 16), "DB-GP-S": (8, 32), "DB-GP-M": (16, 64),
}
VOLUME_CLASSES = {"lssd": "lssd", "bssd": "bssd", "sbs_5k": "sbs", "sbs_15k": "sbs"}

# The integer settings the lab knows: name → (catalogue default, min, max, unit, hot configurable, description).
_POSTGRESQL_SETTINGS = {
    "effective_cache_size": ("4096", 64, 1048576, "MB", True, "Planner's assumption about the size of the data cache."),
    "maintenance_work_mem": ("64", 1, 2097151, "MB", True, "Maximum memory for maintenance operations."),
    "max_connections": ("100", 50, 10000, None, False, "Maximum number of concurrent connections."),
    "max_parallel_workers": ("8", 0, 1024, None, True, "Maximum number of active parallel workers."),
    "max_parallel_workers_per_gather": ("2", 0, 1024, None, True, "Maximum parallel processes per executor node."),
    "work_mem": ("4", 1, 2097151, "MB", True, "Maximum memory for query workspaces."),
    "temp_buffers": ("8", 1, 1073741823, "MB", True, "Maximum temporary buffers per session."),
    "statement_timeout": ("0", 0, 2147483647, "ms", True, "Maximum duration of any statement."),
    "idle_in_transaction_session_timeout": ("0", 0, 2147483647, "ms", True, "Maximum idle time in a transaction."),
    "log_min_duration_statement": ("-1", -1, 2147483647, "ms", True, "Statements slower than this are logged."),
}
_MYSQL_SETTINGS = {
    "max_connections": ("100", 50, 10000, None, True, "Maximum simultaneous client connections."),
    "connect_timeout": ("10", 10, 300, None, True, "Seconds the server waits for a connect packet."),
}
_MYSQL_INIT_SETTINGS = {
    "lower_case_table_names": ("0", 0, 1, None, False, "1: table names are stored in lowercase."),
}


class Engine(NamedTuple):
    versions: tuple[tuple[str, str, bool], ...]  # (version, end of life, disabled), newest first
    settings: dict
    init_settings: dict
    port: int


ENGINES = {
    "PostgreSQL": Engine((("17", "2029-11-08", False), ("16", "2028-11-09", False), ("15", "2027-11-11", False),
                          ("14", "2026-11-12", False), ("13", "2025-11-13", True)), _POSTGRESQL_SETTINGS, {}, 5432),
    "MySQL": Engine((("8", "2028-04-01", False),), _MYSQL_SETTINGS, _MYSQL_INIT_SETTINGS, 3306),
}
PERMISSIONS = ("readonly", "readwrite", "all", "custom", "none")


# --- the catalogue ------------------------------------------------------------------------


def _engine_of(name: str) -> tuple[str, Engine]:
    """("PostgreSQL", its catalogue entry) for "PostgreSQL-16", or a 400 naming the offered versions."""
    family, _, version = (name or "").partition("-")
    for engine, entry in ENGINES.items():
        if engine.lower() == family.lower() and any(v == version and not off for v, _, off in entry.versions):
            return engine, entry
    offered = [f"{engine}-{v}" for engine, entry in ENGINES.items() for v, _, off in entry.versions if not off]
    raise invalid("engine", f"engine {name!r} is not available; available: {', '.join(offered)}")


def _setting_specs(specs: dict) -> list[dict]:
    return [{"default_value": default, "description": text, "float_max": None, "float_min": None,
             "hot_configurable": hot, "int_max": high, "int_min": low, "name": name, "property_type": "INT",
             "string_constraint": None, "unit": unit}
            for name, (default, low, high, unit, hot, text) in sorted(specs.items())]


def _engines(lab: Lab, req: Request) -> tuple[int, dict]:
    region, wanted_name, wanted_version = req.params["region"], req.arg("name"), req.arg("version")
    engines = []
    for engine, entry in ENGINES.items():
        if wanted_name and wanted_name.lower() != engine.lower():
            continue
        engines.append({
            "logo_url": f"https://s3.nl-ams.scw.cloud/scw-rdb-logos/{engine.lower()}.svg", "name": engine,
            "region": region,
            "versions": [{"available_init_settings": _setting_specs(entry.init_settings),
                          "available_settings": _setting_specs(entry.settings), "beta": False, "disabled": disabled,
                          "end_of_life": f"{end}T00:00:00Z", "name": f"{engine}-{version}", "version": version}
                         for version, end, disabled in entry.versions if wanted_version in (None, version)]})
    return 200, {"engines": engines, "total_count": len(engines)}


def _checked_settings(sent: list | None, specs: dict, field: str) -> list[dict]:
    settings = []
    for setting in sent or []:
        name, value = setting.get("name"), str(setting.get("value"))
        if name not in specs:
            raise invalid(field, f"setting {name!r} is not available for this engine")
        _, low, high, *_ = specs[name]
        if not re.fullmatch(r"-?\d+", value) or not low <= int(value) <= high:
            raise invalid(field, f"setting {name!r} must be an integer between {low} and {high}, not {value!r}")
        settings.append({"name": name, "value": value})
    return sorted(settings, key=lambda setting: setting["name"])


def _default_settings(engine: str, node_type: str) -> list[dict]:
    """What a fresh instance reads once ready: its engine's settings sized to its node."""
    if engine != "PostgreSQL":
        return [{"name": "max_connections", "value": "100"}]
    vcpus, memory_gib = NODE_TYPES[node_type.upper()]
    memory_mb = memory_gib * 1024
    workers = 0 if node_type.upper().startswith("DB-DEV") else vcpus  # DEV nodes share their vCPUs
    values = {"effective_cache_size": memory_mb * 65 // 100, "maintenance_work_mem": memory_mb * 75 // 1000,
              "max_connections": 100, "max_parallel_workers": workers,
              "max_parallel_workers_per_gather": workers // 2, "work_mem": 4}
    return [{"name": name, "value": str(value)} for name, value in sorted(values.items())]


def check_password(password: str) -> None:
    """Scaleway's rule for database passwords: 8 to 128 characters, mixing cases, digits and symbols."""
    classes = (r"[a-z]", r"[A-Z]", r"\d", r"[^a-zA-Z\d]")
    if not 8 <= len(password or "") <= 128 or not all(re.search(pattern, password) for pattern in classes):
        raise invalid("password", "the password must be 8 to 128 characters long and contain at least one lower case "
                             "letter, one upper case letter, one digit and one special character")


# --- addresses and certificates (also the redis family's) ---------------------------------


def ipv4_subnet(lab: Lab, private_network_id: str) -> ipaddress.IPv4Network:
    network = lab.objects("private_network").get(private_network_id)
    if network is None:
        raise not_found("private_network", private_network_id)
    for subnet in network["subnets"]:
        parsed = ipaddress.ip_network(subnet["subnet"])
        if parsed.version == 4:
            return parsed
    raise invalid("private_network_id", "the private network has no IPv4 subnet")


def reserve_address(lab: Lab, *, region: str, private_network_id: str, project_id: str,
                    resource: dict) -> tuple[str, str]:
    """An IPAM address for a managed service: ("10.0.0.2/24", the IPAM IP's id), tagged as recorded."""
    ip = ipam.reserve(lab, region=region, private_network_id=private_network_id, project_id=project_id,
                      resource={**resource, "mac_address": ipam.new_mac()}, tags=["managed", "scwdbaas"])
    return ip["address"], ip["id"]


def release_address(lab: Lab, ipam_ip_id: str | None) -> None:
    if ipam_ip_id in lab.objects(ipam.COLLECTION):
        ipam.release(lab, ipam_ip_id)


def certificate_file(common_name: str) -> str:
    """A self-signed server certificate, base64-encoded PEM as the certificate endpoints answer it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.ORGANIZATION_NAME, "Scaleway"),
                      x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])
    start = datetime.now(timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(start)
                   .not_valid_after(start + timedelta(days=3650))
                   .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
                   .sign(key, hashes.SHA256()))
    return base64.b64encode(certificate.public_bytes(serialization.Encoding.PEM)).decode()


def public_address(seed: str) -> str:
    number = uuid.UUID(seed).int
    return f"51.159.{number >> 8 & 0xff}.{number % 254 + 1}"


# --- endpoints ----------------------------------------------------------------------------


def _endpoint(lab: Lab, spec: dict, owner: dict, port: int) -> dict:
    """An endpoint built from its spec; `owner` is the instance or replica (id, name, region, project)."""
    endpoint_id = new_id()
    if "private_network" in spec:
        network = spec["private_network"] or {}
        network_id, static = network.get("private_network_id"), network.get("service_ip")
        if static:
            subnet = ipv4_subnet(lab, network_id)
            address = ipaddress.ip_interface(static)
            if address.ip not in subnet:
                raise invalid("service_ip", f"{static} is not in the private network's subnet {subnet}")
            service_ip, ipam_ip_id, mode = static, None, "static"
        elif network.get("ipam_config") is not None:
            service_ip, ipam_ip_id = reserve_address(
                lab, region=owner["region"], private_network_id=network_id, project_id=owner.get("project_id"),
                resource={"id": owner["id"], "type": "rdb_instance", "name": owner.get("name", owner["id"])})
            mode = "ipam"
        else:
            raise invalid("private_network", "one of service_ip or ipam_config is required")
        lab.store.meta[endpoint_id] = {"ipam_ip_id": ipam_ip_id}
        return {"id": endpoint_id, "ip": service_ip.split("/")[0], "name": None, "port": port,
                "private_network": {"private_network_id": network_id, "provisioning_mode": mode,
                                    "service_ip": service_ip, "zone": f"{owner['region']}-1"}}
    if "load_balancer" in spec:
        return {"id": endpoint_id, "ip": public_address(endpoint_id), "load_balancer": {}, "name": None,
                "port": 1024 + uuid.UUID(endpoint_id).int % 60000}
    if "direct_access" in spec:
        return {"direct_access": {}, "id": endpoint_id, "ip": public_address(endpoint_id), "name": None,
                "port": port}
    raise invalid("endpoint_spec", "one of private_network, load_balancer or direct_access is required")


def _forget_endpoint(lab: Lab, endpoint: dict) -> None:
    release_address(lab, lab.store.meta.pop(endpoint["id"], {}).get("ipam_ip_id"))


def _endpoints(lab: Lab, specs: list[dict], owner: dict, port: int) -> list[dict]:
    """All the endpoints of `specs`, or none: a refused one releases the addresses booked before it."""
    built: list[dict] = []
    try:
        for spec in specs:
            built.append(_endpoint(lab, spec, owner, port))
    except ApiError:
        for endpoint in built:
            _forget_endpoint(lab, endpoint)
        raise
    return built


def _engine_port(instance: dict) -> int:
    return _engine_of(instance["engine"])[1].port


# --- instances ----------------------------------------------------------------------------


def _instance_of(lab: Lab, instance_id: str) -> dict:
    return lab.get(INSTANCE, instance_id, resource="instance")


def _ready_instance(lab: Lab, instance_id: str) -> dict:
    return lab.get_settled(INSTANCE, instance_id, resource="instance")


def _instance_view(lab: Lab, instance: dict) -> dict:
    """The instance as the API shows it: with its replicas and the legacy `endpoint` (the public one)."""
    public = next((endpoint for endpoint in instance["endpoints"] if "load_balancer" in endpoint), None)
    replicas = [_replica_view(replica) for replica in lab.objects(REPLICA).values()
                if replica["instance_id"] == instance["id"]]
    view = {key: value for key, value in instance.items() if key != "updated_at"}  # rdb objects have none
    return {**view, "endpoint": public, "read_replicas": replicas}


def _backup_schedule(disabled: bool, frequency: int, retention: int) -> dict:
    next_run = None if disabled else (datetime.now(timezone.utc) + timedelta(hours=frequency)).strftime(
        "%Y-%m-%dT%H:%M:%S.%fZ")
    return {"disabled": disabled, "frequency": frequency, "next_run_at": next_run, "retention": retention}


def _volume(body: dict) -> dict:
    volume_type = body.get("volume_type") or "lssd"
    if volume_type not in VOLUME_CLASSES:
        raise invalid("volume_type", f"unknown volume type {volume_type!r}")
    size = int(body.get("volume_size") or 0)
    if volume_type == "lssd":
        size = LOCAL_VOLUME_BYTES
    elif size < 5 * GB or size % (5 * GB):
        raise invalid("volume_size", "a block volume holds a multiple of 5 GB, 5 GB at least")
    return {"class": VOLUME_CLASSES[volume_type], "size": size, "type": volume_type}


def _check_node_type(node_type: str) -> None:
    if (node_type or "").upper() not in NODE_TYPES:
        raise invalid("node_type", f"unknown node type {node_type!r}")


def _create_instance(lab: Lab, req: Request) -> tuple[int, dict]:
    body, region = req.json, req.params["region"]
    engine, entry = _engine_of(body.get("engine"))
    _check_node_type(body.get("node_type"))
    if body.get("user_name"):
        check_password(body.get("password"))
    instance_id, project = new_id(), body.get("project_id")
    instance = {
        "backup_same_region": bool(body.get("backup_same_region")),
        "backup_schedule": _backup_schedule(bool(body.get("disable_backup")), 24, 7),
        "created_at": now(), "encryption": {"enabled": bool((body.get("encryption") or {}).get("enabled"))},
        "endpoints": [], "engine": body["engine"], "id": instance_id,
        "init_settings": _checked_settings(body.get("init_settings"), entry.init_settings, "init_settings"),
        "is_ha_cluster": bool(body.get("is_ha_cluster")),
        "logs_policy": {"max_age_retention": 30, "total_disk_retention": None}, "maintenances": [],
        "name": body.get("name") or f"rdb-{instance_id[:8]}", "node_type": body["node_type"],
        "organization_id": project, "project_id": project, "region": region,
        "settings": _default_settings(engine, body["node_type"]),
        "tags": body.get("tags") or [], "upgradable_version": _upgradable_versions(body["engine"]),
        "volume": _volume(body)}
    # Without an endpoint asked for, the instance gets a public one (as recorded).
    instance["endpoints"] = _endpoints(lab, body.get("init_endpoints") or [{"load_balancer": {}}], instance,
                                       entry.port)
    lab.objects(INSTANCE)[instance_id] = instance
    lab.set_transient(INSTANCE, instance)
    lab.store.meta[instance_id]["certificate"] = certificate_file(f"rw-{instance_id}.rdb.{region}.scw.cloud")
    if body.get("user_name"):
        admin = {"is_admin": True, "name": body["user_name"]}
        lab.objects("rdb_user")[f"{instance_id}/{admin['name']}"] = admin
    lab.store.save()
    return 200, _instance_view(lab, instance)


def _upgradable_versions(engine_name: str) -> list[dict]:
    engine, entry = _engine_of(engine_name)
    current = float(engine_name.partition("-")[2])
    return [{"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"rdb/{engine}-{version}")), "minor_version": f"{version}.0",
             "name": f"{engine}-{version}", "version": version}
            for version, _, disabled in reversed(entry.versions) if not disabled and float(version) > current]


def _read_instance(lab: Lab, req: Request) -> tuple[int, dict]:
    instance = _instance_of(lab, req.params["id"])
    lab.settle(INSTANCE, instance)
    return 200, _instance_view(lab, instance)


def _list_instances(lab: Lab, req: Request) -> tuple[int, dict]:
    listed = lab.list(INSTANCE, req)
    return 200, {**listed, "instances": [_instance_view(lab, instance) for instance in listed["instances"]]}


def _update_instance(lab: Lab, req: Request) -> tuple[int, dict]:
    instance, body = _ready_instance(lab, req.params["id"]), req.json
    schedule = instance["backup_schedule"]
    disabled = body.get("is_backup_schedule_disabled")
    disabled = schedule["disabled"] if disabled is None else disabled
    frequency = int(body.get("backup_schedule_frequency") or schedule["frequency"])
    retention = int(body.get("backup_schedule_retention") or schedule["retention"])
    if not 1 <= retention <= 365:
        raise invalid("backup_schedule_retention", "the retention is 1 to 365 days")
    instance["backup_schedule"] = _backup_schedule(bool(disabled), frequency, retention)
    for field in ("name", "tags", "backup_same_region"):
        if body.get(field) is not None:
            instance[field] = body[field]
    if body.get("logs_policy"):
        instance["logs_policy"] = {**instance["logs_policy"], **{key: value for key, value in
                                                                 body["logs_policy"].items() if value is not None}}
    lab.store.save()
    return 200, _instance_view(lab, instance)


def _delete_instance(lab: Lab, req: Request) -> tuple[int, dict]:
    instance = _ready_instance(lab, req.params["id"])
    for replica in [r for r in lab.objects(REPLICA).values() if r["instance_id"] == instance["id"]]:
        _forget_replica(lab, replica)
    view = _instance_view(lab, instance)
    for endpoint in instance["endpoints"]:
        _forget_endpoint(lab, endpoint)
    for collection in ("rdb_user", "rdb_database", "rdb_privilege"):
        children = lab.objects(collection)
        for key in [key for key in children if key.startswith(instance["id"] + "/")]:
            del children[key]
    del lab.objects(INSTANCE)[instance["id"]]
    lab.store.meta.pop(instance["id"], None)
    lab.store.save()
    return 200, {**view, "status": "deleting"}


def _upgrade_instance(lab: Lab, req: Request) -> tuple[int, dict]:
    instance, body = _ready_instance(lab, req.params["id"]), req.json
    if body.get("major_upgrade_workflow") or body.get("upgradable_version_id"):
        raise invalid("major_upgrade_workflow", "the lab does not emulate major version upgrades")
    node_type = body.get("node_type") or instance["node_type"]
    _check_node_type(node_type)
    volume = _volume({"volume_type": body.get("volume_type") or instance["volume"]["type"],
                      "volume_size": body.get("volume_size") or instance["volume"]["size"]})
    if volume["size"] < instance["volume"]["size"]:
        raise invalid("volume_size", "a volume cannot shrink")
    instance.update(node_type=node_type, volume=volume)
    if body.get("enable_ha") is not None:
        instance["is_ha_cluster"] = bool(body["enable_ha"])
    if body.get("enable_encryption"):
        instance["encryption"] = {"enabled": True}
    lab.set_transient(INSTANCE, instance, "initializing")
    lab.store.save()
    return 200, _instance_view(lab, instance)


def _certificate(lab: Lab, req: Request) -> tuple[int, dict]:
    instance = _instance_of(lab, req.params["id"])
    return 200, {"content": lab.store.meta[instance["id"]]["certificate"], "content_type": "application/x-pem-file",
                 "name": "ssl_certificate"}


# --- settings -----------------------------------------------------------------------------


def _change_settings(lab: Lab, req: Request) -> tuple[int, dict]:
    """PUT replaces the settings, POST adds to them, DELETE removes some (back to defaults)."""
    instance = _ready_instance(lab, req.params["id"])
    engine, entry = _engine_of(instance["engine"])
    current = {setting["name"]: setting for setting in instance["settings"]}
    if req.method == "DELETE":
        defaults = {setting["name"]: setting for setting in _default_settings(engine, instance["node_type"])}
        for name in req.json.get("setting_names") or []:
            current.pop(name, None)
            if name in defaults:
                current[name] = defaults[name]
    else:
        sent = {setting["name"]: setting
                for setting in _checked_settings(req.json.get("settings"), entry.settings, "settings")}
        current = sent if req.method == "PUT" else {**current, **sent}
    instance["settings"] = sorted(current.values(), key=lambda setting: setting["name"])
    lab.set_transient(INSTANCE, instance, "configuring")
    lab.store.save()
    return 200, {"settings": instance["settings"]}


# --- instance endpoints -------------------------------------------------------------------


def _add_endpoint(lab: Lab, req: Request) -> tuple[int, dict]:
    instance = _ready_instance(lab, req.params["id"])
    spec = req.json.get("endpoint_spec") or {}
    for kind in ("private_network", "load_balancer"):
        if kind in spec and any(kind in endpoint for endpoint in instance["endpoints"]):
            raise invalid("endpoint_spec", f"the instance already has a {kind} endpoint")
    endpoint = _endpoint(lab, spec, instance, _engine_port(instance))
    instance["endpoints"].append(endpoint)
    lab.set_transient(INSTANCE, instance, "initializing")
    lab.store.save()
    return 200, endpoint


def _endpoint_owner(lab: Lab, endpoint_id: str) -> tuple[Kind, dict, dict]:
    for kind in (INSTANCE, REPLICA):
        for owner in lab.objects(kind).values():
            for endpoint in owner["endpoints"]:
                if endpoint["id"] == endpoint_id:
                    return kind, owner, endpoint
    raise not_found("endpoint", endpoint_id)


def _get_endpoint(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, _endpoint_owner(lab, req.params["id"])[2]


def _delete_endpoint(lab: Lab, req: Request) -> tuple[int, None]:
    kind, owner, endpoint = _endpoint_owner(lab, req.params["id"])
    if owner["status"] != "ready":
        raise transient("instance" if kind is INSTANCE else "read_replica", owner["id"], owner["status"])
    owner["endpoints"].remove(endpoint)
    _forget_endpoint(lab, endpoint)
    lab.set_transient(kind, owner, "configuring")
    lab.store.save()
    return 204, None


# --- databases, users, privileges ---------------------------------------------------------


def _children(lab: Lab, collection: str, instance_id: str) -> list[dict]:
    """The databases or users of an instance (keyed "<instance id>/<name>"), by name."""
    prefix = instance_id + "/"
    return sorted((child for key, child in lab.objects(collection).items() if key.startswith(prefix)),
                  key=lambda child: child["name"])


def _listed(lab: Lab, req: Request, collection: str, key: str) -> tuple[int, dict]:
    _instance_of(lab, req.params["id"])
    wanted = req.arg("name")
    found = [child for child in _children(lab, collection, req.params["id"]) if wanted in (None, child["name"])]
    return 200, {key: found, "total_count": len(found)}


def _check_name(name: str | None, what: str) -> str:
    if not name or len(name) > 63 or not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_$-]*", name):
        raise invalid("name", f"{name!r} is not a valid {what} name")
    return name


def _create_database(lab: Lab, req: Request) -> tuple[int, dict]:
    instance = _ready_instance(lab, req.params["id"])
    name = _check_name(req.json.get("name"), "database")
    key = f"{instance['id']}/{name}"
    if key in lab.objects("rdb_database"):
        raise invalid("name", f"database {name!r} already exists")
    # An empty PostgreSQL database weighs about 7.7 MB; the lab's never grow.
    database = {"managed": True, "name": name, "owner": "_rdb_superadmin", "size": 7_733_775}
    lab.objects("rdb_database")[key] = database
    lab.store.save()
    return 200, database


def _delete_child(collection: str, resource: str, privilege_field: str):
    """DELETE of a database or a user: its privileges go with it."""
    def handler(lab: Lab, req: Request) -> tuple[int, None]:
        instance = _ready_instance(lab, req.params["id"])
        key = f"{instance['id']}/{req.params['name']}"
        if lab.objects(collection).pop(key, None) is None:
            raise not_found(resource, req.params["name"])
        privileges = lab.objects("rdb_privilege")
        for privilege_key in [k for k, p in privileges.items()
                              if k.startswith(instance["id"] + "/") and p[privilege_field] == req.params["name"]]:
            del privileges[privilege_key]
        lab.store.save()
        return 204, None
    return handler


def _create_user(lab: Lab, req: Request) -> tuple[int, dict]:
    instance, body = _ready_instance(lab, req.params["id"]), req.json
    name = _check_name(body.get("name"), "user")
    check_password(body.get("password"))
    key = f"{instance['id']}/{name}"
    if key in lab.objects("rdb_user"):
        raise invalid("name", f"user {name!r} already exists")
    user = {"is_admin": bool(body.get("is_admin")), "name": name}
    lab.objects("rdb_user")[key] = user
    lab.store.save()
    return 200, user


def _update_user(lab: Lab, req: Request) -> tuple[int, dict]:
    instance, body = _ready_instance(lab, req.params["id"]), req.json
    user = lab.objects("rdb_user").get(f"{instance['id']}/{req.params['name']}")
    if user is None:
        raise not_found("user", req.params["name"])
    if body.get("password") is not None:
        check_password(body["password"])
    if body.get("is_admin") is not None:
        user["is_admin"] = bool(body["is_admin"])
    lab.store.save()
    return 200, user


def _set_privilege(lab: Lab, req: Request) -> tuple[int, dict]:
    instance, body = _ready_instance(lab, req.params["id"]), req.json
    database, user = body.get("database_name"), body.get("user_name")
    if f"{instance['id']}/{database}" not in lab.objects("rdb_database"):
        raise not_found("database", database)
    if f"{instance['id']}/{user}" not in lab.objects("rdb_user"):
        raise not_found("user", user)
    if body.get("permission") not in PERMISSIONS:
        raise invalid("permission", f"the permission is one of {', '.join(PERMISSIONS)}")
    privilege = {"database_name": database, "permission": body["permission"], "user_name": user}
    lab.objects("rdb_privilege")[f"{instance['id']}/{database}/{user}"] = privilege
    lab.store.save()
    return 200, privilege


def _list_privileges(lab: Lab, req: Request) -> tuple[int, dict]:
    """Every user on every database; `none` where nothing was granted."""
    instance = _instance_of(lab, req.params["id"])
    granted = lab.objects("rdb_privilege")
    found = [granted.get(f"{instance['id']}/{database['name']}/{user['name']}",
                         {"database_name": database["name"], "permission": "none", "user_name": user["name"]})
             for database in _children(lab, "rdb_database", instance["id"])
             for user in _children(lab, "rdb_user", instance["id"])
             if req.arg("database_name") in (None, database["name"]) and req.arg("user_name") in (None, user["name"])]
    found.sort(key=lambda privilege: (privilege["user_name"], privilege["database_name"]))
    return 200, {"privileges": found, "total_count": len(found)}


# --- read replicas ------------------------------------------------------------------------


def _replica_of(lab: Lab, replica_id: str) -> dict:
    return lab.get(REPLICA, replica_id, resource="read_replica")


def _ready_replica(lab: Lab, replica_id: str) -> dict:
    return lab.get_settled(REPLICA, replica_id, resource="read_replica")


def _replica_view(replica: dict) -> dict:
    return {key: value for key, value in replica.items() if key not in ("updated_at", "project_id")}


def _create_replica(lab: Lab, req: Request) -> tuple[int, dict]:
    body = req.json
    instance = _ready_instance(lab, body.get("instance_id") or "")
    replica = {"endpoints": [], "id": new_id(), "instance_id": instance["id"], "region": req.params["region"],
               "same_zone": body.get("same_zone", True) is not False, "project_id": instance["project_id"]}
    replica["endpoints"] = _endpoints(lab, body.get("endpoint_spec") or [{"direct_access": {}}], replica,
                                      _engine_port(instance))
    lab.objects(REPLICA)[replica["id"]] = replica
    lab.set_transient(REPLICA, replica)
    lab.store.save()
    return 200, _replica_view(replica)


def _read_replica(lab: Lab, req: Request) -> tuple[int, dict]:
    replica = _replica_of(lab, req.params["id"])
    lab.settle(REPLICA, replica)
    return 200, _replica_view(replica)


def _forget_replica(lab: Lab, replica: dict) -> None:
    for endpoint in replica["endpoints"]:
        _forget_endpoint(lab, endpoint)
    del lab.objects(REPLICA)[replica["id"]]
    lab.store.meta.pop(replica["id"], None)


def _delete_replica(lab: Lab, req: Request) -> tuple[int, dict]:
    replica = _ready_replica(lab, req.params["id"])
    _forget_replica(lab, replica)
    lab.store.save()
    return 200, {**_replica_view(replica), "status": "deleting"}


def _add_replica_endpoints(lab: Lab, req: Request) -> tuple[int, dict]:
    replica = _ready_replica(lab, req.params["id"])
    port = _engine_port(_instance_of(lab, replica["instance_id"]))
    replica["endpoints"] += _endpoints(lab, req.json.get("endpoint_spec") or [], replica, port)
    lab.set_transient(REPLICA, replica, "initializing")
    lab.store.save()
    return 200, _replica_view(replica)


def register(lab: Lab) -> None:
    lab.add_kind(INSTANCE, with_routes=False)
    lab.add_kind(REPLICA, with_routes=False)
    instance = API + "/instances/{id}"
    lab.add(route("GET", API + "/database-engines", _engines),
            route("POST", API + "/instances", _create_instance),
            route("GET", API + "/instances", _list_instances),
            route("GET", instance, _read_instance),
            route("PATCH", instance, _update_instance),
            route("DELETE", instance, _delete_instance),
            route("POST", instance + "/upgrade", _upgrade_instance),
            route("GET", instance + "/certificate", _certificate),
            *(route(method, instance + "/settings", _change_settings) for method in ("PUT", "POST", "DELETE")),
            route("POST", instance + "/endpoints", _add_endpoint),
            route("GET", API + "/endpoints/{id}", _get_endpoint),
            route("DELETE", API + "/endpoints/{id}", _delete_endpoint),
            route("GET", instance + "/databases", lambda lab, req: _listed(lab, req, "rdb_database", "databases")),
            route("POST", instance + "/databases", _create_database),
            route("DELETE", instance + "/databases/{name}", _delete_child("rdb_database", "database", "database_name")),
            route("GET", instance + "/users", lambda lab, req: _listed(lab, req, "rdb_user", "users")),
            route("POST", instance + "/users", _create_user),
            route("PATCH", instance + "/users/{name}", _update_user),
            route("DELETE", instance + "/users/{name}", _delete_child("rdb_user", "user", "user_name")),
            route("GET", instance + "/privileges", _list_privileges),
            route("PUT", instance + "/privileges", _set_privilege),
            route("POST", API + "/read-replicas", _create_replica),
            route("GET", API + "/read-replicas/{id}", _read_replica),
            route("DELETE", API + "/read-replicas/{id}", _delete_replica),
            route("POST", API + "/read-replicas/{id}/endpoints", _add_replica_endpoints))
