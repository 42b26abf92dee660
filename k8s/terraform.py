"""Handing the manifests of k8s/workloads.py to the kubernetes provider.

Built-in kinds become the provider's typed resources (kubernetes_deployment_v1, ...),
which plan without contacting the cluster; the manifest is translated mechanically
(camelCase → snake_case, objects → single blocks, lists of objects → repeated blocks,
maps kept as maps). The engine's `validate` against the real provider schema checks the
translation. Kinds the provider does not type (KEDA's) use kubernetes_manifest, which
needs the cluster's API at plan time: they are left out of offline plans.
"""

from __future__ import annotations

import re

from cdktn import TerraformResource
from constructs import Construct

TYPED_RESOURCES = {
    "Namespace": "kubernetes_namespace_v1",
    "ConfigMap": "kubernetes_config_map_v1",
    "Secret": "kubernetes_secret_v1",
    "Deployment": "kubernetes_deployment_v1",
    "Service": "kubernetes_service_v1",
    "PodDisruptionBudget": "kubernetes_pod_disruption_budget_v1",
    "HorizontalPodAutoscaler": "kubernetes_horizontal_pod_autoscaler_v2",
    "NetworkPolicy": "kubernetes_network_policy_v1",
}

# Keys whose values are string maps in the provider schema, not blocks.
MAP_KEYS = {"labels", "annotations", "matchLabels", "data", "stringData", "nodeSelector", "limits", "requests",
            "selector@Service"}
# Kubernetes list fields whose provider block has a singular name (per kind where it differs).
SINGULAR = {"containers": "container", "volumes": "volume", "topologySpreadConstraints": "topology_spread_constraint",
            "metrics": "metric", "tolerations": "toleration", "ports": "port"}
SINGULAR_EXCEPTIONS = {("NetworkPolicy", "ports")}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def _field(kind: str, key: str) -> str:
    if key in SINGULAR and (kind, key) not in SINGULAR_EXCEPTIONS:
        return SINGULAR[key]
    return _snake(key)


def _convert(kind: str, value: dict) -> dict:
    converted: dict = {}
    for key, item in value.items():
        name = _field(kind, key)
        if key in MAP_KEYS or f"{key}@{kind}" in MAP_KEYS:
            converted[name] = dict(item)
        elif isinstance(item, dict):
            converted[name] = [_convert(kind, item)]
        elif isinstance(item, list) and item and isinstance(item[0], dict):
            converted[name] = [_convert(kind, element) for element in item]
        else:
            converted[name] = item
    return converted


def provider_arguments(manifest: dict) -> dict:
    """The typed resource's arguments for one manifest (metadata and spec as blocks)."""
    kind = manifest["kind"]
    # apiVersion and kind are the resource type itself; data maps are set below.
    body = _convert(kind, {k: v for k, v in manifest.items()
                           if k not in ("apiVersion", "kind", "stringData", "data", "type")})
    if kind == "Secret":
        body["data"] = dict(manifest.get("stringData", {}))  # the provider encodes to base64 itself
        body["type"] = manifest.get("type", "Opaque")
    if kind == "ConfigMap":
        body["data"] = dict(manifest.get("data", {}))
    if kind == "Deployment":
        # Apply returns once the rollout is complete (or fails): `deploy phase2` waits on it.
        body["wait_for_rollout"] = True
    if kind == "Service":
        body["wait_for_load_balancer"] = True
    return body


def resource_id(manifest: dict) -> str:
    return f"{_snake(manifest['kind'])}_{manifest['metadata']['name']}".replace("-", "_").replace(".", "_")


def add_manifests(scope: Construct, manifests: list[dict], *, typed_only: bool) -> list[TerraformResource]:
    """One provider resource per manifest; untyped kinds only when typed_only is False."""
    resources = []
    prerequisites: list[TerraformResource] = []  # the namespace, then configuration for workloads
    for manifest in manifests:
        kind = manifest["kind"]
        if kind in TYPED_RESOURCES:
            resource = TerraformResource(scope, resource_id(manifest), terraform_resource_type=TYPED_RESOURCES[kind])
            for key, value in provider_arguments(manifest).items():
                resource.add_override(key, value)
        elif typed_only:
            continue
        else:
            resource = TerraformResource(scope, resource_id(manifest), terraform_resource_type="kubernetes_manifest")
            resource.add_override("manifest", manifest)
        # What lives in the namespace waits for it; pods wait for their configuration.
        needed = prerequisites if kind in ("Deployment", "ScaledObject") else prerequisites[:1]
        if needed:
            resource.add_override("depends_on", [f"{r.terraform_resource_type}.{r.friendly_unique_id}" for r in needed])
        if kind in ("Namespace", "ConfigMap", "Secret"):
            prerequisites.append(resource)
        resources.append(resource)
    return resources
