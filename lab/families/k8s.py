"""Kubernetes Kapsule API (k8s/v1): clusters, their pools and nodes, versions, cluster types.

Statuses as recorded: a cluster is `creating`, then `pool_required` until it has a pool,
then `ready` (`updating` after a change); a pool is `scaling` until its nodes are up, then
`ready`. Deleting answers the object in `deleting`, then it is gone (404); a cluster takes
its pools and nodes with it. A node of a cluster on a private network has an IPv4 and an
IPv6 address there, booked in IPAM under the node's name (what the provider looks up).

The kubeconfig's server (and the cluster's `cluster_url`) is https://127.0.0.1:<the lab's
API port + 3>, the loopback address where a local Kubernetes API server belongs; every
cluster of a lab shares it. The kubeconfig carries a token per cluster and, when the lab
has one, the lab's CA.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import string

import yaml

from lab.api import Kind, Lab, Request, invalid, new_id, not_found, now, route
from lab.families import ipam
from lab.runner import Ports

KUBE_API_PORT_OFFSET = 3

_KUBELET_ARGS = {
    "containerLogMaxFiles": "uint16", "containerLogMaxSize": "quantity", "cpuCFSQuota": "bool",
    "cpuCFSQuotaPeriod": "duration", "cpuManagerPolicy": "enum:none|static",
    "cpuManagerPolicyOptions": "map[string]string", "enableDebuggingHandlers": "bool",
    "evictionHard": "map[string]string", "evictionMinimumReclaim": "map[string]string",
    "imageGCHighThresholdPercent": "uint32", "imageGCLowThresholdPercent": "uint32", "maxParallelImagePulls": "int32",
    "maxPods": "uint16", "registryBurst": "int32", "registryPullQPS": "int32", "serializeImagePulls": "bool"}
_GATES = ["HPAScaleToZero", "CPUManagerPolicyAlphaOptions", "ImageVolume", "MutatingAdmissionPolicy"]
_GATES_1_33 = ["HPAScaleToZero", "DRAAdminAccess", "DynamicResourceAllocation", "PodLevelResources",
               "CPUManagerPolicyAlphaOptions", "ImageVolume"]
_CNIS = ["cilium", "cilium_native", "calico", "kilo", "none"]
# The newest list the provider's recordings show (fr-par, August 2026): name, released,
# deprecated, end of life, CNIs, feature gates. 1.32 is no longer offered, so a
# configuration asking for it fails as it would against the real API.
VERSIONS = (
    ("1.36.1", "2026-07-07", "2027-07-07", "2027-09-07", _CNIS, _GATES),
    ("1.35.3", "2026-01-19", "2027-01-19", "2027-03-19", _CNIS, _GATES),
    ("1.34.6", "2025-09-29", "2026-09-29", "2026-11-29", _CNIS, _GATES),
    ("1.33.10", "2025-09-04", "2026-09-04", "2026-11-04", [c for c in _CNIS if c != "cilium_native"], _GATES_1_33),
)

# name, max nodes, commitment, SLA, resiliency, control plane memory, dedicated, max etcd size
CLUSTER_TYPES = (
    ("kapsule", 150, "0s", 0, "standard", 4_000_000_000, False, 55_000_000),
    ("kapsule-dedicated-4", 250, "2592000s", 99.5, "high_availability", 4_000_000_000, True, 200_000_000),
    ("kapsule-dedicated-8", 500, "2592000s", 99.5, "high_availability", 8_000_000_000, True, 200_000_000),
    ("kapsule-dedicated-16", 500, "2592000s", 99.5, "high_availability", 16_000_000_000, True, 200_000_000),
)

# Node types with local storage boot from an l_ssd of their whole local volume (the
# instance catalogue's volumes_constraint.max_size, as recorded); others from a 20 GB sbs_5k.
_LOCAL_ROOT_VOLUME = {"DEV1-S": 20, "DEV1-M": 40, "DEV1-L": 80, "DEV1-XL": 120, "GP1-XS": 150}
GB = 1_000_000_000

_AUTOSCALER_DEFAULTS = {
    "scale_down_disabled": False, "scale_down_delay_after_add": "10m", "estimator": "binpacking",
    "expander": "random", "ignore_daemonsets_utilization": False, "balance_similar_node_groups": False,
    "expendable_pods_priority_cutoff": 0, "scale_down_unneeded_time": "10m",
    "scale_down_utilization_threshold": 0.5, "max_graceful_termination_sec": 0,
    "skip_nodes_with_local_storage": False, "log_level": 2}
_OIDC_DEFAULTS = {"issuer_url": "", "client_id": "", "username_claim": "", "username_prefix": "", "groups_claim": [],
                  "groups_prefix": "", "required_claim": []}


def _unset(value: object) -> bool:
    """The SDK sends an enum's zero value (`unknown`, `unknown_estimator`) for "not set"."""
    return value is None or (isinstance(value, str) and value.startswith("unknown"))


def _merge(current: dict, sent: dict | None) -> dict:
    return {**current, **{key: value for key, value in (sent or {}).items() if not _unset(value)}}


def _without_unset_filters(req: Request) -> Request:
    query = {name: values for name, values in req.query.items() if not _unset(values[0])}
    return Request(req.method, req.path, query, req.body, req.params)


def _version_numbers(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split("."))


def _version(region: str, name: str, released: str, deprecated: str, end: str, cnis: list, gates: list) -> dict:
    return {"region": region, "name": name, "label": f"Kubernetes {name}", "available_cnis": cnis,
            "available_container_runtimes": ["containerd"], "available_feature_gates": gates,
            "available_admission_plugins": ["AlwaysPullImages", "PodNodeSelector", "PodTolerationRestriction"],
            "available_kubelet_args": _KUBELET_ARGS, "deprecated_at": f"{deprecated}T00:00:00Z",
            "end_of_life_at": f"{end}T00:00:00Z", "released_at": f"{released}T00:00:00Z"}


def _find_version(region: str, name: str) -> dict | None:
    for row in VERSIONS:
        if row[0] == name:
            return _version(region, *row)
    return None


def _offered_version(region: str, name: str) -> dict:
    version = _find_version(region, name)
    if version is None:
        raise invalid("version", f"version {name!r} is not available; available: {', '.join(v[0] for v in VERSIONS)}")
    return version


def _cluster_type(row: tuple) -> dict:
    name, max_nodes, commitment, sla, resiliency, memory, dedicated, etcd = row
    return {"name": name, "region": "", "availability": "available", "max_nodes": max_nodes,
            "commitment_delay": commitment, "sla": sla, "resiliency": resiliency, "memory": memory,
            "dedicated": dedicated, "audit_logs_supported": dedicated, "max_etcd_size": etcd}


def kube_api_url(lab: Lab) -> str:
    """https://127.0.0.1:<API port + 3>; the ports are in lab.json, next to the state file."""
    api_port = Ports().api
    if lab.store.path and (lab.store.path.parent / "lab.json").exists():
        api_port = json.loads((lab.store.path.parent / "lab.json").read_text())["api"]
    return f"https://127.0.0.1:{api_port + KUBE_API_PORT_OFFSET}"


# --- clusters -----------------------------------------------------------------------------


def _cluster(lab: Lab, req: Request) -> dict:
    body, region = req.json, req.params["region"]
    version = _offered_version(region, body.get("version") or "")
    cni = body.get("cni") or "cilium"
    if cni not in version["available_cnis"]:
        raise invalid("cni", f"{cni} is not available for Kubernetes {version['name']}")
    kind = body.get("type") or "kapsule"
    if not any(kind == row[0] for row in CLUSTER_TYPES):
        raise invalid("type", f"unknown cluster type {kind!r}")
    network_id = body.get("private_network_id")
    if network_id:
        lab.get("private_network", network_id)
    cluster_id, stamp = new_id(), now()
    auto_upgrade = body.get("auto_upgrade") or {}
    window = _merge({"start_hour": 0, "day": "any"}, auto_upgrade.get("maintenance_window"))
    lab.store.meta[cluster_id] = {"token": _new_token()}
    if lab.runtime is not None:  # the cluster's API server: started with the first cluster
        lab.runtime.ensure_kubernetes(lab)
    return {"id": cluster_id, "type": kind, "name": body.get("name") or f"k8s-{cluster_id[:8]}",
            "description": body.get("description") or "", "version": version["name"], "cni": cni,
            "project_id": body.get("project_id"), "tags": body.get("tags") or [],
            "cluster_url": kube_api_url(lab), "dns_wildcard": f"*.{cluster_id}.nodes.k8s.{region}.scw.cloud",
            "autoscaler_config": _merge(_AUTOSCALER_DEFAULTS, body.get("autoscaler_config")),
            "auto_upgrade": {"enabled": bool(auto_upgrade.get("enable")), "maintenance_window": window},
            "upgrade_available": _upgrade_available(version["name"]),
            "feature_gates": body.get("feature_gates") or [], "admission_plugins": body.get("admission_plugins") or [],
            "open_id_connect_config": _merge(_OIDC_DEFAULTS, body.get("open_id_connect_config")),
            "apiserver_cert_sans": body.get("apiserver_cert_sans") or [], "private_network_id": network_id,
            "created_at": stamp, "updated_at": stamp, "commitment_ends_at": stamp, "acl_available": True,
            "iam_nodes_group_id": new_id(),
            "pod_cidr": body.get("pod_cidr") or "100.64.0.0/15",
            "service_cidr": body.get("service_cidr") or "10.32.0.0/20",
            "service_dns_ip": body.get("service_dns_ip") or "10.32.0.10"}


def _upgrade_available(version: str) -> bool:
    return any(_version_numbers(row[0]) > _version_numbers(version) for row in VERSIONS)


def _settled_cluster_status(lab: Lab, cluster_id: str, leaving_pool: str | None = None) -> str:
    has_pool = any(pool["cluster_id"] == cluster_id and pool["id"] != leaving_pool
                   for pool in lab.objects("pool").values())
    return "ready" if has_pool else "pool_required"


def _refresh_cluster_status(lab: Lab, cluster_id: str, leaving_pool: str | None = None) -> None:
    """A pool came or went: a settled cluster changes status now, a transient one when it settles."""
    cluster = lab.objects("cluster").get(cluster_id)
    if cluster is None:
        return
    status = _settled_cluster_status(lab, cluster_id, leaving_pool)
    meta = lab.store.meta.get(cluster_id, {})
    if meta.get("reads_left", 0) > 0:
        meta["settles_to"] = status
    else:
        cluster["status"] = status


def _cluster_changed(lab: Lab, cluster: dict, req: Request) -> None:
    body = req.json
    cluster["autoscaler_config"] = _merge(cluster["autoscaler_config"], body.get("autoscaler_config"))
    cluster["open_id_connect_config"] = _merge(cluster["open_id_connect_config"], body.get("open_id_connect_config"))
    auto_upgrade = body.get("auto_upgrade") or {}
    if not _unset(auto_upgrade.get("enable")):
        cluster["auto_upgrade"]["enabled"] = auto_upgrade["enable"]
    cluster["auto_upgrade"]["maintenance_window"] = _merge(cluster["auto_upgrade"]["maintenance_window"],
                                                           auto_upgrade.get("maintenance_window"))
    _become_transient(lab, cluster, "updating")


def _become_transient(lab: Lab, cluster: dict, status: str) -> None:
    lab.set_transient(lab.kinds["cluster"], cluster, status)
    lab.store.meta[cluster["id"]]["settles_to"] = _settled_cluster_status(lab, cluster["id"])


def _upgrade(lab: Lab, req: Request) -> tuple[int, dict]:
    cluster = lab.get("cluster", req.params["id"])
    target = _offered_version(cluster["region"], req.json.get("version") or "")["name"]
    if _version_numbers(target) < _version_numbers(cluster["version"]):
        raise invalid("version", f"cannot downgrade from {cluster['version']} to {target}")
    cluster["version"] = target
    cluster["upgrade_available"] = _upgrade_available(target)
    if req.json.get("upgrade_pools"):
        for pool in _pools_of(lab, cluster["id"]):
            pool["version"] = target
    _become_transient(lab, cluster, "updating")
    lab.store.save()
    return 200, cluster


def _set_type(lab: Lab, req: Request) -> tuple[int, dict]:
    cluster = lab.get("cluster", req.params["id"])
    kind = req.json.get("type") or ""
    if kind not in [row["name"] for row in _available_types(cluster)]:
        raise invalid("type", f"cannot change the type of a {cluster['type']} cluster to {kind!r}")
    cluster["type"] = kind
    _become_transient(lab, cluster, "updating")
    lab.store.save()
    return 200, cluster


def _available_types(cluster: dict) -> list[dict]:
    """The cluster's own type and the bigger ones: a type change never shrinks the control plane."""
    names = [row[0] for row in CLUSTER_TYPES]
    return [_cluster_type(row) for row in CLUSTER_TYPES[names.index(cluster["type"]):]]


def _delete_cluster(lab: Lab, cluster: dict) -> None:
    for pool in _pools_of(lab, cluster["id"]):
        _drop_nodes(lab, pool["id"])
        del lab.objects("pool")[pool["id"]]
        lab.store.meta.pop(pool["id"], None)
    cluster["status"] = "deleting"


def _kubeconfig(lab: Lab, req: Request) -> tuple[int, dict]:
    cluster = lab.get("cluster", req.params["id"])
    name = cluster["name"]
    server = {"server": cluster["cluster_url"]}
    ca = lab.store.path.parent / "ca.pem" if lab.store.path else None
    if ca and ca.exists():
        server["certificate-authority-data"] = base64.b64encode(ca.read_bytes()).decode()
    config = {"apiVersion": "v1", "clusters": [{"name": name, "cluster": server}],
              "contexts": [{"name": f"admin@{name}", "context": {"cluster": name, "user": f"{name}-admin"}}],
              "current-context": f"admin@{name}", "kind": "Config", "preferences": {},
              "users": [{"name": f"{name}-admin", "user": {"token": lab.store.meta[cluster["id"]]["token"]}}]}
    return 200, {"name": "kubeconfig", "content_type": "application/octet-stream",
                 "content": base64.b64encode(yaml.safe_dump(config, sort_keys=False).encode()).decode()}


# --- the API server's token webhook ---------------------------------------------------------

KUBE_ADMIN_USER = "kapsule-admin"
KUBE_ADMIN_GROUPS = ["system:masters", "system:authenticated"]


def _new_token() -> str:
    return "".join(secrets.choice(string.ascii_letters) for _ in range(56))


def lab_controller_token(lab: Lab) -> str:
    """The token of the lab's own stand-in for nodes and cloud controller (lab/kubernetes/
    nodes.py): made once per lab, valid whatever clusters come and go."""
    meta = lab.store.meta.setdefault("lab-controllers", {})
    if "token" not in meta:
        meta["token"] = _new_token()
        lab.store.save()
    return meta["token"]


def _token_review(lab: Lab, req: Request) -> tuple[int, dict]:
    """The lab's kube-apiserver asks here who a bearer token is (TokenReview, as its
    --authentication-token-webhook-config-file says): tokens are made per cluster at any
    time, so a static token file could not follow. A live cluster's token is its admin."""
    body = req.json
    token = str((body.get("spec") or {}).get("token") or "")
    owner = next((cluster_id for cluster_id in lab.objects("cluster")
                  if token and hmac.compare_digest(str(lab.store.meta.get(cluster_id, {}).get("token", "")), token)),
                 None)
    if owner is None and token and hmac.compare_digest(lab_controller_token(lab), token):
        owner = "lab-controllers"
    status: dict = {"authenticated": owner is not None}
    if owner is not None:
        status["user"] = {"username": KUBE_ADMIN_USER, "uid": f"kapsule-admin-{owner}", "groups": KUBE_ADMIN_GROUPS}
    return 200, {"apiVersion": body.get("apiVersion") or "authentication.k8s.io/v1", "kind": "TokenReview",
                 "status": status}


# --- pools and nodes ----------------------------------------------------------------------


def _pools_of(lab: Lab, cluster_id: str) -> list[dict]:
    return [pool for pool in lab.objects("pool").values() if pool["cluster_id"] == cluster_id]


def _pool(lab: Lab, req: Request) -> dict:
    body = req.json
    cluster = lab.get("cluster", req.params["cluster_id"])
    node_type = (body.get("node_type") or "").upper().replace("_", "-")
    if not node_type:
        raise invalid("node_type", "a node type is required")
    size = body.get("size", 1)
    min_size, max_size = body.get("min_size", size), body.get("max_size", size)
    if not min_size <= max_size or max_size < 1:
        raise invalid("max_size", f"max_size ({max_size}) must be at least 1 and at least min_size ({min_size})")
    if not min_size <= size <= max_size:
        raise invalid("size", f"size ({size}) must be between min_size ({min_size}) and max_size ({max_size})")
    volume_type = body.get("root_volume_type")
    if _unset(volume_type) or volume_type == "default_volume_type":
        volume_type = "l_ssd" if node_type in _LOCAL_ROOT_VOLUME else "sbs_5k"
    default_size = _LOCAL_ROOT_VOLUME.get(node_type, 20) * GB if volume_type == "l_ssd" else 20 * GB
    policy = _merge({"max_unavailable": 1, "max_surge": 0}, body.get("upgrade_policy"))
    pool = {"id": new_id(), "cluster_id": cluster["id"], "name": body.get("name") or f"pool-{new_id()[:8]}",
            "version": cluster["version"], "node_type": node_type.lower().replace("-", "_"),
            "autoscaling": bool(body.get("autoscaling")), "size": size, "min_size": min_size, "max_size": max_size,
            "container_runtime": body.get("container_runtime") or "containerd",
            "autohealing": bool(body.get("autohealing")), "tags": body.get("tags") or [],
            "placement_group_id": body.get("placement_group_id"), "kubelet_args": body.get("kubelet_args") or {},
            "upgrade_policy": policy, "zone": body.get("zone") or f"{req.params['region']}-1",
            "root_volume_type": volume_type, "root_volume_size": body.get("root_volume_size") or default_size,
            "public_ip_disabled": bool(body.get("public_ip_disabled")),
            "security_group_id": body.get("security_group_id") or new_id(), "labels": body.get("labels") or {},
            "taints": body.get("taints") or [], "startup_taints": body.get("startup_taints") or [],
            "error_message": None, "region": req.params["region"]}
    _resize(lab, pool, cluster)
    return pool


def _check_kubelet_args(req: Request) -> None:
    """Kapsule takes only the kubelet arguments its versions list (`available_kubelet_args`)."""
    unknown = sorted(set(req.json.get("kubelet_args") or {}) - set(_KUBELET_ARGS))
    if unknown:
        raise invalid("kubelet_args", f"kubelet args {', '.join(unknown)} are not available; available: "
                      f"{', '.join(sorted(_KUBELET_ARGS))}")


def _create_pool(lab: Lab, req: Request) -> tuple[int, dict]:
    _check_kubelet_args(req)
    pool = lab.create(lab.kinds["pool"], req)
    _refresh_cluster_status(lab, pool["cluster_id"])
    lab.store.save()
    return 200, pool


def _node_name(cluster: dict, pool: dict, node_id: str) -> str:
    # As recorded: scw-<cluster name>-<pool name>-<node id>, names cut at 17, 46 in all.
    return f"scw-{cluster['name'][:17]}-{pool['name'][:17]}-{node_id.replace('-', '')}"[:46]


def _resize(lab: Lab, pool: dict, cluster: dict) -> None:
    """Bring the pool's nodes to its size: new nodes are ready (the pool is `scaling` meanwhile)."""
    nodes = sorted((node for node in lab.objects("node").values() if node["pool_id"] == pool["id"]),
                   key=lambda node: node["created_at"])
    for node in nodes[pool["size"]:]:
        _remove_node(lab, node)
    for _ in range(len(nodes), pool["size"]):
        node_id, stamp = new_id(), now()
        name = _node_name(cluster, pool, node_id)
        # Public addresses from a documentation range: nothing may ever try to reach them.
        public = None if pool["public_ip_disabled"] else f"203.0.113.{(len(lab.objects('node')) % 250) + 1}"
        lab.objects("node")[node_id] = {
            "region": pool["region"], "id": node_id, "cluster_id": cluster["id"], "created_at": stamp,
            "updated_at": stamp, "pool_id": pool["id"], "status": "ready",
            "conditions": {"DiskPressure": "False", "MemoryPressure": "False", "PIDPressure": "False", "Ready": "True"},
            "name": name, "public_ip_v4": public, "public_ip_v6": None,
            "provider_id": f"scaleway://instance/{pool['zone']}/{new_id()}", "error_message": ""}
        if cluster["private_network_id"]:
            nic = {"type": "instance_private_nic", "id": new_id(), "mac_address": ipam.new_mac(), "name": name}
            lab.store.meta[node_id] = {"nic": nic["id"]}
            for is_ipv6 in (False, True):
                ipam.reserve(lab, region=pool["region"], private_network_id=cluster["private_network_id"],
                             project_id=cluster["project_id"], resource=nic, is_ipv6=is_ipv6)


def _remove_node(lab: Lab, node: dict) -> None:
    nic = lab.store.meta.pop(node["id"], {}).get("nic")
    for address in ipam.attached_to(lab, nic) if nic else []:
        ipam.release(lab, address["id"])
    del lab.objects("node")[node["id"]]


def _update_pool(lab: Lab, req: Request) -> tuple[int, dict]:
    _check_kubelet_args(req)
    pool, body = lab.get("pool", req.params["id"]), req.json
    min_size, max_size = (pool[name] if body.get(name) is None else body[name] for name in ("min_size", "max_size"))
    if not min_size <= max_size or max_size < 1:
        raise invalid("max_size", f"max_size ({max_size}) must be at least 1 and at least min_size ({min_size})")
    return 200, lab.update(lab.kinds["pool"], req)


def _pool_changed(lab: Lab, pool: dict, req: Request) -> None:
    pool["upgrade_policy"] = _merge(pool["upgrade_policy"], req.json.get("upgrade_policy"))
    if req.json.get("size") is not None:
        _resize(lab, pool, lab.get("cluster", pool["cluster_id"]))
        lab.set_transient(lab.kinds["pool"], pool)


def _drop_nodes(lab: Lab, pool_id: str) -> None:
    for node in [node for node in lab.objects("node").values() if node["pool_id"] == pool_id]:
        _remove_node(lab, node)


def _forget_pool(lab: Lab, pool: dict) -> None:
    pool["status"] = "deleting"
    _drop_nodes(lab, pool["id"])
    _refresh_cluster_status(lab, pool["cluster_id"], leaving_pool=pool["id"])


def _list_pools(lab: Lab, req: Request) -> tuple[int, dict]:
    lab.get("cluster", req.params["cluster_id"])
    return 200, lab.list(lab.kinds["pool"], _without_unset_filters(req))


def _list_nodes(lab: Lab, req: Request) -> tuple[int, dict]:
    lab.get("cluster", req.params["cluster_id"])
    query = _without_unset_filters(req)
    nodes = [node for node in lab.objects("node").values()
             if node["cluster_id"] == req.params["cluster_id"]
             and all(str(node.get(name)) == values[0] for name, values in query.query.items() if name in node)]
    nodes.sort(key=lambda node: node["created_at"])
    page = int(req.arg("page", "1") or 1)
    return 200, {"total_count": len(nodes), "nodes": nodes if page == 1 else []}


def _get_node(lab: Lab, req: Request) -> tuple[int, dict]:
    node = lab.objects("node").get(req.params["id"])
    if node is None:
        raise not_found("node", req.params["id"])
    return 200, node


# --- catalogue ----------------------------------------------------------------------------


def _list_versions(lab: Lab, req: Request) -> tuple[int, dict]:
    return 200, {"versions": [_version(req.params["region"], *row) for row in VERSIONS]}


def _get_version(lab: Lab, req: Request) -> tuple[int, dict]:
    version = _find_version(req.params["region"], req.params["name"])
    if version is None:
        raise not_found("version", req.params["name"])
    return 200, version


def _cluster_types(lab: Lab, req: Request) -> tuple[int, dict]:
    types = [_cluster_type(row) for row in CLUSTER_TYPES]
    return 200, {"cluster_types": types, "total_count": len(types)}


def _cluster_available_types(lab: Lab, req: Request) -> tuple[int, dict]:
    types = _available_types(lab.get("cluster", req.params["id"]))
    return 200, {"cluster_types": types, "total_count": len(types)}


def register(lab: Lab) -> None:
    clusters = lab.add_kind(Kind(
        "k8s/v1", "regions", "clusters", "clusters", "cluster", _cluster, statuses=("creating", "pool_required"),
        # Its API server must answer (and give Services addresses) before it is more than `creating`.
        hold_transient=lambda lab, cluster: lab.runtime is not None and not lab.runtime.kubernetes_settled(),
        updatable=("name", "description", "tags", "feature_gates", "admission_plugins", "apiserver_cert_sans"),
        delete_status=200, on_update=_cluster_changed, on_delete=_delete_cluster), with_routes=False)
    pools = lab.add_kind(Kind(
        "k8s/v1", "regions", "pools", "pools", "pool", _pool, statuses=("scaling", "ready"),
        updatable=("autoscaling", "autohealing", "size", "min_size", "max_size", "tags", "kubelet_args"),
        delete_status=200, on_update=_pool_changed, on_delete=_forget_pool,
        list_filter=lambda pool, req: pool["cluster_id"] == req.params["cluster_id"]), with_routes=False)
    region = "/k8s/v1/regions/{region}"
    cluster = region + "/clusters/{id}"
    lab.add(
        route("POST", clusters.base, lambda lab, req: (200, lab.create(clusters, req))),
        route("GET", clusters.base, lambda lab, req: (200, lab.list(clusters, _without_unset_filters(req)))),
        route("GET", cluster, lambda lab, req: (200, lab.read(clusters, req.params["id"]))),
        route("PATCH", cluster, lambda lab, req: (200, lab.update(clusters, req))),
        route("DELETE", cluster, lambda lab, req: lab.delete(clusters, req)),
        route("GET", cluster + "/kubeconfig", _kubeconfig),
        route("POST", cluster + "/upgrade", _upgrade),
        route("POST", cluster + "/set-type", _set_type),
        route("GET", cluster + "/available-types", _cluster_available_types),
        route("POST", region + "/clusters/{cluster_id}/pools", _create_pool),
        route("GET", region + "/clusters/{cluster_id}/pools", _list_pools),
        route("GET", region + "/clusters/{cluster_id}/nodes", _list_nodes),
        route("GET", pools.base + "/{id}", lambda lab, req: (200, lab.read(pools, req.params["id"]))),
        route("PATCH", pools.base + "/{id}", _update_pool),
        route("DELETE", pools.base + "/{id}", lambda lab, req: lab.delete(pools, req)),
        route("GET", region + "/nodes/{id}", _get_node),
        route("GET", region + "/versions", _list_versions),
        route("GET", region + "/versions/{name}", _get_version),
        route("GET", region + "/cluster-types", _cluster_types),
        route("POST", "/lab/v1/tokenreview", _token_review),
    )
