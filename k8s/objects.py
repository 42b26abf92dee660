"""Typed builders for the Kubernetes objects we run, producing plain manifests (dicts).

Each builder takes typed arguments and returns exactly what `kubectl apply` would take;
`k8s/render.py` writes them as YAML and `k8s/terraform.py` hands the very same objects
to the kubernetes provider, so the two paths cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field

Manifest = dict


def metadata(name: str, namespace: str | None, labels: dict[str, str], annotations: dict[str, str] | None = None) -> dict:
    meta: dict = {"name": name, "labels": dict(labels)}
    if namespace:
        meta["namespace"] = namespace
    if annotations:
        meta["annotations"] = dict(annotations)
    return meta


def namespace(name: str, labels: dict[str, str]) -> Manifest:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata(name, None, labels)}


def config_map(name: str, ns: str, labels: dict[str, str], data: dict[str, str]) -> Manifest:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata(name, ns, labels), "data": dict(data)}


def secret(name: str, ns: str, labels: dict[str, str], data: dict[str, str] | None, *, type_: str = "Opaque",
           annotations: dict[str, str] | None = None) -> Manifest:
    """data None: the object without values (rendered YAML never carries secrets)."""
    manifest: Manifest = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata(name, ns, labels, annotations),
                          "type": type_}
    if data is not None:
        manifest["stringData"] = dict(data)
    return manifest


@dataclass(frozen=True)
class Resources:
    cpu_request: str
    memory_request: str
    cpu_limit: str | None
    memory_limit: str

    def as_dict(self) -> dict:
        limits = {"memory": self.memory_limit}
        if self.cpu_limit:
            limits["cpu"] = self.cpu_limit
        return {"requests": {"cpu": self.cpu_request, "memory": self.memory_request}, "limits": limits}


@dataclass(frozen=True)
class Container:
    name: str
    image: str
    env: dict[str, str]
    env_from_config_maps: list[str]
    env_from_secrets: list[str]
    resources: Resources
    image_pull_policy: str  # IfNotPresent for a pinned tag, Always for a moving one (k8s/workloads.py)
    port: int | None = None
    readiness_path: str | None = None
    liveness_path: str | None = None
    pre_stop_sleep_seconds: int | None = None

    def as_dict(self) -> dict:
        container: dict = {
            "name": self.name,
            "image": self.image,
            "imagePullPolicy": self.image_pull_policy,
            "env": [{"name": key, "value": value} for key, value in sorted(self.env.items())],
            "envFrom": [{"configMapRef": {"name": name}} for name in self.env_from_config_maps]
            + [{"secretRef": {"name": name}} for name in self.env_from_secrets],
            "resources": self.resources.as_dict(),
            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
        }
        if self.port:
            container["ports"] = [{"name": "http", "containerPort": self.port, "protocol": "TCP"}]
        if self.readiness_path:
            container["readinessProbe"] = {"httpGet": {"path": self.readiness_path, "port": self.port},
                                           "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3}
        if self.liveness_path:
            container["livenessProbe"] = {"httpGet": {"path": self.liveness_path, "port": self.port},
                                          "initialDelaySeconds": 15, "periodSeconds": 10, "timeoutSeconds": 3,
                                          "failureThreshold": 3}
        if self.pre_stop_sleep_seconds:
            # Let endpoints and the LB stop sending traffic before SIGTERM arrives.
            container["lifecycle"] = {"preStop": {"exec": {"command": ["sleep", str(self.pre_stop_sleep_seconds)]}}}
        return container


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    ns: str
    labels: dict[str, str]
    replicas: int
    container: Container
    termination_grace_seconds: int
    image_pull_secret: str
    spread_over_nodes: bool = True
    annotations: dict[str, str] = field(default_factory=dict)
    pod_annotations: dict[str, str] = field(default_factory=dict)  # a change rolls the pods


def _pod_spec(container: Container, image_pull_secret: str, **settings) -> dict:
    """Every pod of ours: no service account token (the app never calls the Kubernetes
    API), the image pulled with the registry's secret, one container."""
    return {"automountServiceAccountToken": False, **settings, "imagePullSecrets": [{"name": image_pull_secret}],
            "containers": [container.as_dict()]}


def deployment(spec: DeploymentSpec) -> Manifest:
    selector = {"app.kubernetes.io/name": spec.labels["app.kubernetes.io/name"],
                "app.kubernetes.io/component": spec.labels["app.kubernetes.io/component"]}
    pod_spec = _pod_spec(spec.container, spec.image_pull_secret,
                         terminationGracePeriodSeconds=spec.termination_grace_seconds)
    if spec.spread_over_nodes:
        pod_spec["topologySpreadConstraints"] = [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": selector}}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(spec.name, spec.ns, spec.labels, spec.annotations or None),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector},
            # Never below the desired count during a rollout: surge one, then remove one.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": dict(spec.labels),
                                      **({"annotations": dict(spec.pod_annotations)} if spec.pod_annotations else {})},
                         "spec": pod_spec},
        },
    }


@dataclass(frozen=True)
class JobSpec:
    """A run to completion: one pod, never retried (a failed migration is for a person to read)."""

    name: str
    ns: str
    labels: dict[str, str]
    container: Container
    image_pull_secret: str
    deadline_seconds: int  # the pod is stopped after this long, and the Job fails
    kept_seconds: int = 7 * 24 * 3600  # then the finished Job and its pod (its log) go


def job(spec: JobSpec) -> Manifest:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(spec.name, spec.ns, spec.labels),
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": spec.deadline_seconds,
            "ttlSecondsAfterFinished": spec.kept_seconds,
            "template": {"metadata": {"labels": dict(spec.labels)},
                         "spec": _pod_spec(spec.container, spec.image_pull_secret, restartPolicy="Never")},
        },
    }


def pod_disruption_budget(name: str, ns: str, labels: dict[str, str], selector: dict[str, str], *,
                          max_unavailable: int) -> Manifest:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": metadata(name, ns, labels),
            "spec": {"maxUnavailable": max_unavailable, "selector": {"matchLabels": dict(selector)}}}


def cpu_autoscaler(name: str, ns: str, labels: dict[str, str], target: str, *, minimum: int, maximum: int,
                   cpu_percent: int) -> Manifest:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(name, ns, labels),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
            "minReplicas": minimum,
            "maxReplicas": maximum,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": cpu_percent}}}],
        },
    }


def service(name: str, ns: str, labels: dict[str, str], selector: dict[str, str], *, port: int, target_port: int,
            type_: str, annotations: dict[str, str]) -> Manifest:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, ns, labels, annotations),
        "spec": {"type": type_, "selector": dict(selector),
                 "ports": [{"name": "http", "port": port, "targetPort": target_port, "protocol": "TCP"}]},
    }


def network_policy(name: str, ns: str, labels: dict[str, str], pod_selector: dict[str, str], *,
                   ingress: list[dict] | None, egress: list[dict] | None) -> Manifest:
    """ingress/egress None: that direction is not governed by this policy; [] denies it all."""
    types, spec = [], {"podSelector": {"matchLabels": dict(pod_selector)} if pod_selector else {}}
    if ingress is not None:
        types.append("Ingress")
        spec["ingress"] = ingress
    if egress is not None:
        types.append("Egress")
        spec["egress"] = egress
    spec["policyTypes"] = types
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata(name, ns, labels),
            "spec": spec}
