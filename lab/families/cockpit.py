"""Cockpit API (cockpit/v1): data sources, tokens, and the alert manager with its
contact points and Scaleway's preconfigured alert rules.

A token's secret key is answered once, by its creation; the lab keeps only its SHA-256
(as IAM does for API keys), which the logs data plane checks: the lab's proxy serves each
logs source's host (`logs_source`) with the Loki API of lab/dataplane/logs.py, letting a
token in (`logs_access`) by its scopes, project and region.
"""

from __future__ import annotations

import hashlib
import re

from lab.api import Handler, Kind, Lab, Request, invalid, new_id, not_found, route

API = "/cockpit/v1/regions/{region}"

# Retention bounds and defaults per data source type (what GET /config answers).
RETENTION = {"metrics": (1, 1825, 31), "logs": (1, 1825, 7), "traces": (1, 1825, 7)}

TOKEN_SCOPES = {"read_only_metrics", "write_only_metrics", "full_access_metrics_rules", "read_only_logs",
                "write_only_logs", "full_access_logs_rules", "full_access_alert_manager", "read_only_traces",
                "write_only_traces"}

# Scaleway's preconfigured alert rules for the products this project runs (the real catalog
# is longer): rule id, name, product, family, display name, display description, duration, rule.
PRECONFIGURED_RULES = (
    ("1c16c699-e00e-4be8-b05d-d8cd2797f2a7", "InstanceHighCPUUsage", "Instance", "Compute", "High CPU usage",
     "> 90 % for 10 minutes", "10m",
     "(rate(instance_server_cpu_seconds_total[1m])) / instance_server_vcpu_count > 0.9"),
    ("d3974dcd-0f02-47cf-a266-67223e579390", "APIServerHighCPUUsage", "Kubernetes", "Containers",
     "High api-server CPU usage", "> 90 % for 10 minutes", "10m",
     'kubernetes_cluster_k8s_shoot_controlplane_cpu_usage{component="api-server"} > 0.9'),
    ("09396fbe-bddc-47a3-8072-c4246bef03c1", "APIServerHighMemoryUsage", "Kubernetes", "Containers",
     "High api-server memory usage", "> 90 % for 10 minutes", "10m",
     'kubernetes_cluster_k8s_shoot_controlplane_memory_usage_bytes{component="api-server"} > 0.9'),
    ("dc9b67ae-baa6-4a37-907d-2a6c31304561", "NodesNotReady", "Kubernetes", "Containers", "Nodes not ready",
     "> 0 for 10 minutes", "10m", "kubernetes_cluster_k8s_shoot_nodes - kubernetes_cluster_k8s_shoot_nodes_ready > 0"),
    ("d1b1b4a0-7215-494b-9d81-796e52c7ed0e", "LBBackendDown", "LB", "Load Balancer", "Backend down",
     "All servers for a given Backend are down", "5m",
     'load_balancer_lb_backend_status{state="DOWN", backend_name!=""} > 0'),
    ("feb64cef-c855-4230-a74e-813515fdb357", "LBBackendServerDown", "LB", "Load Balancer", "Backend server down",
     "1 or several Backend server(s) is/are down", "5m",
     'load_balancer_lb_backend_agg_server_check_status{state="DOWN", backend_name!=""} > 0'),
    ("835bd0fc-57ea-43cf-ba2f-2b637e85eedb", "LBHighBandwidthLoad", "LB", "Load Balancer", "High bandwidth usage",
     "> 80 % for 10 minutes", "10m",
     "load_balancer_lb_bandwidth_in_usage > 0.8 or load_balancer_lb_bandwidth_out_usage > 0.8"),
    ("769bd543-6030-4540-bd2d-5e2d0604e767", "LBHighCPULoad", "LB", "Load Balancer", "High CPU usage",
     "> 80 % for 10 minutes", "10m", "load_balancer_lb_cpu_usage > 0.8"),
    ("fcf06e62-22ee-4e86-9b16-3cc9708e1b07", "LBHighConnectionLoad", "LB", "Load Balancer", "High connection usage",
     "> 80 % for 10 minutes", "10m", "load_balancer_lb_connection_usage > 0.8"),
    ("89d456d0-8614-40a2-b0a6-682ea25e98b6", "LBHighMemoryLoad", "LB", "Load Balancer", "High memory usage",
     "> 80 % for 10 minutes", "10m", "load_balancer_lb_memory_usage > 0.8"),
    ("f5e3c109-91b3-4586-b580-9f86529c1df8", "HighCpuUsage", "Redis", "Managed Databases", "High CPU usage",
     "> 80 % for 10 minutes", "10m", '1 - avg(irate(rkv_cluster_node_cpu_seconds_total{mode="idle"}[5m])) > 0.8'),
    ("3c5b3a41-69de-43ed-9217-e3002d687c53", "HighMemoryUsage", "Redis", "Managed Databases", "High memory usage",
     "> 80 % for 10 minutes", "10m",
     "1 - rkv_cluster_node_memory_MemAvailable_bytes / rkv_cluster_node_memory_MemTotal_bytes > 0.8"),
    ("615245e6-3882-4d99-8798-d17ca1c95645", "PostgreSQLHighCPULoad", "PostgreSQL", "Managed Databases",
     "High CPU usage", "> 80 % for 10 minutes", "10m",
     '1 - avg(irate(rdb_instance_postgresql_node_cpu_seconds_total{mode="idle"}[5m])) > 0.8'),
    ("c8991f90-facb-436c-b4ab-6aa13822a451", "PostgreSQLHighStorageUsage", "PostgreSQL", "Managed Databases",
     "High storage usage", "> 80 % for 10 minutes", "10m",
     "1 - rdb_instance_postgresql_node_filesystem_avail_bytes / rdb_instance_postgresql_node_filesystem_size_bytes"
     " > 0.8"),
    ("6c6843af-1815-46df-9e52-6feafcf31fd7", "PostgresqlTooManyConnections", "PostgreSQL", "Managed Databases",
     "Too many connections", "> 80 % for 10 minutes", "10m",
     "rdb_instance_postgresql_pg_stat_database_numbackends / rdb_instance_postgresql_pg_settings_max_connections"
     " > 0.8"),
)
RULE_IDS = {rule[0] for rule in PRECONFIGURED_RULES}

SOURCES = "data source"  # the kinds' collections (their resource names)
TOKENS = "token"
DIGESTS = "cockpit_token_secret_digests"  # SHA-256 of each token's secret key → the token's ID
LOGS_HOST = re.compile(r"^([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
                       r"\.logs\.cockpit\.([a-z]{2}-[a-z]{3})\.scw\.cloud$")
# What each use of a logs source asks of a token.
LOGS_SCOPES = {"push": "write_only_logs", "query": "read_only_logs"}

# The lab this process serves: the proxy beside it serves its logs sources.
_serving: list[Lab] = []


# --- data sources and tokens ----------------------------------------------------------------

def _data_source(lab: Lab, req: Request) -> dict:
    body, region = req.json, req.params["region"]
    source_type = body.get("type") or "metrics"
    if source_type not in RETENTION:
        raise invalid("type", f"unknown data source type {source_type!r}")
    retention = _retention(source_type, body.get("retention_days") or RETENTION[source_type][2])
    source_id = new_id()
    return {"id": source_id, "project_id": body.get("project_id"), "name": body.get("name") or f"{source_type}-source",
            "url": f"https://{source_id}.{source_type}.cockpit.{region}.scw.cloud", "type": source_type,
            "origin": "custom", "synchronized_with_grafana": False, "retention_days": retention,
            "current_month_usage": 0}


def _retention(source_type: str, days: int) -> int:
    low, high, _ = RETENTION[source_type]
    if not low <= days <= high:
        raise invalid("retention_days", f"must be between {low} and {high} days")
    return days


def _update_data_source(kind: Kind) -> Handler:
    def handler(lab: Lab, req: Request) -> tuple[int, dict]:
        if req.json.get("retention_days") is not None:  # checked before anything changes
            _retention(lab.get(kind, req.params["id"])["type"], req.json["retention_days"])
        return 200, lab.update(kind, req)
    return handler


def _token(lab: Lab, req: Request) -> dict:
    body = req.json
    scopes = body.get("token_scopes") or []
    unknown = sorted(set(scopes) - TOKEN_SCOPES)
    if unknown:
        raise invalid("token_scopes", f"unknown scope(s): {', '.join(unknown)}")
    # The secret is only ever in the creation's response (see _create_token).
    return {"project_id": body.get("project_id"), "name": body.get("name"), "scopes": scopes, "secret_key": None}


def _digest(secret_key: str) -> str:
    return hashlib.sha256(secret_key.encode()).hexdigest()


def _create_token(kind: Kind) -> Handler:
    def handler(lab: Lab, req: Request) -> tuple[int, dict]:
        token = lab.create(kind, req)
        secret_key = new_id()
        lab.objects(DIGESTS)[_digest(secret_key)] = {"token_id": token["id"]}
        lab.store.save()
        return 200, {**token, "secret_key": secret_key}
    return handler


def _forget_secret(lab: Lab, token: dict) -> None:
    digests = lab.objects(DIGESTS)
    for digest in [digest for digest, entry in digests.items() if entry["token_id"] == token["id"]]:
        del digests[digest]


# --- the logs data plane's view -------------------------------------------------------------

def logs_source(host: str) -> dict | None:
    """The logs data source whose URL has this host, if the lab holds it; None otherwise
    (the proxy then refuses the host, as any other name)."""
    found = LOGS_HOST.match(host.lower())
    if not found:
        return None
    for lab in _serving:
        with lab.store.lock:
            source = lab.objects(SOURCES).get(found.group(1))
            if source is not None and source["type"] == "logs" and source.get("region") == found.group(2):
                return dict(source)
    return None


def logs_access(secret_key: str | None, source: dict, use: str) -> tuple[int, str] | None:
    """None if the token with this secret key may `use` ("push" or "query") the source: its
    scopes include the use's, in the source's project and region. Else (401 for no token the
    lab issued, 403 for a token that may not; message)."""
    scope = LOGS_SCOPES[use]
    for lab in _serving:
        with lab.store.lock:
            entry = lab.objects(DIGESTS).get(_digest(secret_key)) if secret_key else None
            token = lab.objects(TOKENS).get(entry["token_id"]) if entry else None
            if token is None:
                continue
            if token.get("project_id") != source.get("project_id") or token.get("region") != source.get("region"):
                return 403, (f"this token belongs to project {token.get('project_id')} in {token.get('region')}, "
                             f"not to the data source's ({source.get('project_id')} in {source.get('region')})")
            if scope not in token.get("scopes", []):
                return 403, f"this token may not {use} logs: it lacks the {scope} scope"
            return None
    return 401, "no Cockpit token has this secret key" if secret_key else "no Cockpit token given"


# --- alert manager ----------------------------------------------------------------------------

def _alert_manager(lab: Lab, req: Request) -> dict:
    """The project's alert manager in this region (every project has one, disabled at first)."""
    project = req.json.get("project_id") or req.arg("project_id")
    if not project:
        raise invalid("project_id", "project_id is required")
    key = f"{req.params['region']}/{project}"
    managers = lab.objects("cockpit_alert_manager")
    if key not in managers:
        # `rules`: the status of each preconfigured rule that is not plainly disabled.
        managers[key] = {"region": req.params["region"], "project_id": project, "enabled": False,
                         "host_id": new_id(), "legacy_managed_alerts": False, "contact_points": [], "rules": {}}
        lab.store.save()  # its URL's host must not change across a restart
    return managers[key]


def _manager_view(manager: dict) -> dict:
    active_rules = any(status in ("enabled", "enabling") for status in manager["rules"].values())
    url = f"https://{manager['host_id']}.alertmanager.cockpit.{manager['region']}.scw.cloud"
    return {"alert_manager_enabled": manager["enabled"], "alert_manager_url": url if manager["enabled"] else None,
            "managed_alerts_enabled": manager["legacy_managed_alerts"] or active_rules,
            "region": manager["region"]}


def _switch_manager(enabled: bool) -> Handler:
    def handler(lab: Lab, req: Request) -> tuple[int, dict]:
        manager = _alert_manager(lab, req)
        manager["enabled"] = enabled
        lab.store.save()
        return 200, _manager_view(manager)
    return handler


def _switch_legacy_managed_alerts(enabled: bool) -> Handler:
    def handler(lab: Lab, req: Request) -> tuple[int, dict]:
        manager = _alert_manager(lab, req)
        manager["legacy_managed_alerts"] = enabled
        lab.store.save()
        return 200, _manager_view(manager)
    return handler


def _get_manager(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, _manager_view(_alert_manager(lab, req))


def _rule_ids(req: Request) -> list[str]:
    rule_ids = req.json.get("rule_ids") or []
    unknown = sorted(set(rule_ids) - RULE_IDS)
    if unknown:
        raise invalid("rule_ids", f"no preconfigured alert rule {', '.join(unknown)}")
    return sorted(set(rule_ids))


def _enable_rules(lab: Lab, req: Request) -> tuple[int, dict]:
    manager, rule_ids = _alert_manager(lab, req), _rule_ids(req)
    for rule_id in rule_ids:
        if manager["rules"].get(rule_id) not in ("enabled", "enabling"):
            manager["rules"][rule_id] = "enabling"
    lab.store.save()
    return 200, {"enabled_rule_ids": rule_ids}


def _disable_rules(lab: Lab, req: Request) -> tuple[int, dict]:
    manager, rule_ids = _alert_manager(lab, req), _rule_ids(req)
    for rule_id in rule_ids:
        if rule_id in manager["rules"]:
            manager["rules"][rule_id] = "disabling"
    lab.store.save()
    return 200, {"disabled_rule_ids": rule_ids}


def _alert(region: str, rule: tuple, status: str) -> dict:
    rule_id, name, product, family, display_name, display_description, duration, expression = rule
    return {"region": region, "preconfigured": True, "name": name, "rule": expression, "duration": duration,
            "rule_status": status, "state": "unknown_state", "data_source_id": "",
            "annotations": {"rule_id": rule_id, "display_name": display_name,
                            "display_description": display_description, "family": family, "product": product,
                            "summary": f"{display_name} on {product} {{{{ $labels.resource_name }}}}"},
            "preconfigured_data": {"preconfigured_rule_id": rule_id, "display_name": display_name,
                                   "display_description": display_description, "product_name": product,
                                   "product_family": family}}


def _list_alerts(lab: Lab, req: Request) -> tuple[int, dict]:
    """The preconfigured rules with the project's status of each. Enabling and disabling
    are transient: a rule shows them in one listing, then has settled."""
    manager = _alert_manager(lab, req)
    wanted_status = req.arg("rule_status")
    alerts = []
    # Booleans arrive as "true" (Go SDK) or "True" (Python SDK); there are no custom alerts.
    if req.arg("is_preconfigured", "true").lower() == "true" and req.arg("data_source_id") in (None, ""):
        alerts = [_alert(manager["region"], rule, manager["rules"].get(rule[0], "disabled"))
                  for rule in PRECONFIGURED_RULES]
        alerts = [alert for alert in alerts if wanted_status in (None, alert["rule_status"])]
    for rule_id, status in list(manager["rules"].items()):
        if status == "enabling":
            manager["rules"][rule_id] = "enabled"
        elif status == "disabling":
            del manager["rules"][rule_id]
    lab.store.save()
    page = int(req.arg("page", "1") or 1)
    return 200, {"alerts": alerts if page == 1 else [], "total_count": len(alerts)}


# --- contact points -----------------------------------------------------------------------------

def _contact_view(manager: dict, contact: dict) -> dict:
    return {"email": {"to": contact["email"]}, "region": manager["region"],
            "send_resolved_notifications": contact["send_resolved_notifications"]}


def _email(req: Request) -> str:
    email = (req.json.get("email") or {}).get("to")
    if not email or "@" not in email:
        raise invalid("email.to", "a contact point needs an email address")
    return email


def _create_contact(lab: Lab, req: Request) -> tuple[int, dict]:
    manager, email = _alert_manager(lab, req), _email(req)
    for contact in manager["contact_points"]:
        if contact["email"] == email:  # one receiver per address
            return 200, _contact_view(manager, contact)
    contact = {"email": email, "send_resolved_notifications": req.json.get("send_resolved_notifications", True)}
    manager["contact_points"].append(contact)
    lab.store.save()
    return 200, _contact_view(manager, contact)


def _find_contact(manager: dict, email: str) -> dict:
    for contact in manager["contact_points"]:
        if contact["email"] == email:
            return contact
    raise not_found("contact_point", email)


def _update_contact(lab: Lab, req: Request) -> tuple[int, dict]:
    manager = _alert_manager(lab, req)
    contact = _find_contact(manager, _email(req))
    if req.json.get("send_resolved_notifications") is not None:
        contact["send_resolved_notifications"] = req.json["send_resolved_notifications"]
    lab.store.save()
    return 200, _contact_view(manager, contact)


def _delete_contact(lab: Lab, req: Request) -> tuple[int, None]:
    manager = _alert_manager(lab, req)
    manager["contact_points"].remove(_find_contact(manager, _email(req)))
    lab.store.save()
    return 204, None


def _list_contacts(lab: Lab, req: Request) -> tuple[int, dict]:
    manager = _alert_manager(lab, req)
    contacts = [_contact_view(manager, contact) for contact in manager["contact_points"]]
    page = int(req.arg("page", "1") or 1)
    return 200, {"contact_points": contacts if page == 1 else [], "total_count": len(contacts),
                 "has_additional_receivers": False, "has_additional_contact_points": False}


def _config(lab: Lab, req: Request) -> tuple[int, dict]:
    def bounds(source_type: str) -> dict:
        low, high, default = RETENTION[source_type]
        return {"min_days": low, "max_days": high, "default_days": default}
    return 200, {"custom_metrics_retention": bounds("metrics"), "custom_logs_retention": bounds("logs"),
                 "custom_traces_retention": bounds("traces"), "product_metrics_retention": bounds("metrics"),
                 "product_logs_retention": bounds("logs")}


def register(lab: Lab) -> None:
    _serving[:] = [lab]
    sources = lab.add_kind(Kind("cockpit/v1", "regions", "data-sources", "data_sources", SOURCES,
                                _data_source, updatable=("name", "retention_days")), with_routes=False)
    tokens = lab.add_kind(Kind("cockpit/v1", "regions", "tokens", "tokens", TOKENS, _token, on_delete=_forget_secret),
                          with_routes=False)
    lab.add(route("POST", sources.base, lambda lab, req: (200, lab.create(sources, req))),
            route("GET", sources.base, lambda lab, req: (200, lab.list(sources, req))),
            route("GET", sources.base + "/{id}", lambda lab, req: (200, lab.read(sources, req.params["id"]))),
            route("PATCH", sources.base + "/{id}", _update_data_source(sources)),
            route("DELETE", sources.base + "/{id}", lambda lab, req: lab.delete(sources, req)),
            route("POST", tokens.base, _create_token(tokens)),
            route("GET", tokens.base, lambda lab, req: (200, lab.list(tokens, req))),
            route("GET", tokens.base + "/{id}", lambda lab, req: (200, lab.read(tokens, req.params["id"]))),
            route("DELETE", tokens.base + "/{id}", lambda lab, req: lab.delete(tokens, req)),
            route("GET", API + "/config", _config),
            route("GET", API + "/alert-manager", _get_manager),
            route("POST", API + "/alert-manager/enable", _switch_manager(True)),
            route("POST", API + "/alert-manager/disable", _switch_manager(False)),
            route("POST", API + "/alert-manager/managed-alerts/enable", _switch_legacy_managed_alerts(True)),
            route("POST", API + "/alert-manager/managed-alerts/disable", _switch_legacy_managed_alerts(False)),
            route("POST", API + "/alert-manager/enable-alert-rules", _enable_rules),
            route("POST", API + "/alert-manager/disable-alert-rules", _disable_rules),
            route("GET", API + "/alerts", _list_alerts),
            route("GET", API + "/alert-manager/contact-points", _list_contacts),
            route("POST", API + "/alert-manager/contact-points", _create_contact),
            route("PATCH", API + "/alert-manager/contact-points", _update_contact),
            route("POST", API + "/alert-manager/contact-points/delete", _delete_contact))
