"""What Kapsule's nodes and cloud controller do, for the lab's real Kubernetes API server.

There is no kubelet, scheduler or controller manager here: the API server stores and
validates objects, and this loop stands in for the rest, read from the API as they would:
- **kubelets**: each Deployment's replicas run as stand-in app processes ("pods") on
  loopback addresses of POD_LOOPBACK, one per replica, with the mode (APP_MODE) and image
  tag of its pod template; a changed template starts new pods, waits until they answer
  their readiness path, then stops the old ones (SIGTERM, they drain). The Deployment's
  status reports them as the deployment controller would, so the kubernetes provider's
  rollout wait and the cutover's readiness checks read real numbers.
- **cloud controller**: a Service of type LoadBalancer with Scaleway's private-LB
  annotations gets its private load balancer at the reserved IPAM address the annotation
  names (on that address's loopback stand-in, lab/addresses.py): an HAProxy spreading to
  the ready pods and checking their health path, reloaded gracefully when pods change.
  The Service's status then shows that address, as the CCM sets it.

A Deployment's pods are not created as Pod objects (nothing would run them). Jobs are
lab/kubernetes/jobs.py's: their pods are Pod objects, on a Node whose kubelet serves their
logs.
"""

from __future__ import annotations

import hashlib
import http.client
import ipaddress
import json
import logging
import os
import shutil
import signal
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

from lab.addresses import loopback_for
from lab.dataplane.apps import image_tag

POD_LOOPBACKS = ipaddress.ip_network("127.64.0.0/11")  # one /16 of it per lab, chosen by its port
PRIVATE_LB = "service.beta.kubernetes.io/scw-loadbalancer-"
LOG = logging.getLogger("lab.kubernetes")
# A faulty cluster for rehearsals: while this file exists in the lab folder, every
# cluster pod's health path answers 503.
CLUSTER_FAULT_FILE = "faults/cluster-api.unhealthy"


@dataclass
class Pod:
    name: str  # also the backend name the stand-in answers with
    address: str
    port: int
    template: str  # hash of the pod template it runs
    mode: str


@dataclass
class Workload:
    pods: list[Pod] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)  # its pod template's, for Service selectors


def _template_hash(template: dict) -> str:
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _container(template: dict) -> dict:
    return ((template.get("spec") or {}).get("containers") or [{}])[0]


def _env(container: dict, name: str) -> str | None:
    return next((item.get("value") for item in container.get("env") or [] if item.get("name") == name), None)


def _answers(address: str, port: int, path: str) -> bool:
    connection = http.client.HTTPConnection(address, port, timeout=1)
    try:
        connection.request("GET", path)
        return connection.getresponse().status == 200
    except OSError:
        return False
    finally:
        connection.close()


class ClusterNodes:
    def __init__(self, lab, runtime, api_client, *, poll_seconds: float = 1.0) -> None:
        from kubernetes import client

        self.lab, self.runtime, self.poll_seconds = lab, runtime, poll_seconds
        self.api = api_client
        self.apps, self.core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
        self.workloads: dict[str, Workload] = {}  # "namespace/name" → its pods
        self.services: dict[str, str] = {}  # "namespace/name" → the HAProxy config in effect
        pods = list(POD_LOOPBACKS.subnets(new_prefix=16))[runtime.api_port % 32]
        self.addresses = (str(host) for host in pods.hosts())
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.fault_file = runtime.directory / CLUSTER_FAULT_FILE
        from lab.kubernetes.jobs import JobRunner
        from lab.objectstorage import Authority

        self.jobs = JobRunner(api_client, runtime, Authority(runtime.directory))  # and the node their pods run on

    # --- the loop --------------------------------------------------------------------------

    def start(self) -> None:
        self.thread = threading.Thread(target=self._loop, name="lab-cluster-nodes", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread:
            self.thread.join(timeout=30)
        for workload in self.workloads.values():
            for pod in workload.pods:
                self.runtime.supervisor.stop(self._process(pod), timeout=5)
        self.jobs.stop()

    def _loop(self) -> None:
        while not self.stopping.is_set():
            try:
                self.reconcile()
            except Exception as error:  # the API server restarting, a half-written object: next round
                LOG.warning("cluster nodes: %s", error)
            self.stopping.wait(self.poll_seconds)

    def reconcile(self) -> None:
        seen = set()
        for deployment in self.apps.list_deployment_for_all_namespaces().items:
            key = f"{deployment.metadata.namespace}/{deployment.metadata.name}"
            seen.add(key)
            self._run_deployment(key, self.api.sanitize_for_serialization(deployment))
        for key in set(self.workloads) - seen:  # deleted Deployments: their pods go
            for pod in self.workloads.pop(key).pods:
                self.runtime.supervisor.stop(self._process(pod))
        self._refresh_services()
        self.jobs.reconcile()

    # --- kubelets ---------------------------------------------------------------------------

    @staticmethod
    def _process(pod: Pod) -> str:
        return f"pod/{pod.name}"

    def _start_pod(self, key: str, template: dict, template_hash: str, index: int) -> Pod:
        container = _container(template)
        mode = _env(container, "APP_MODE") or "api"
        name = f"cluster-{key.split('/')[1]}-{template_hash[:5]}-{index}"
        pod = Pod(name=name, address=next(self.addresses), port=int((container.get("ports") or [{}])[0]
                                                                      .get("containerPort") or 8080),
                  template=template_hash, mode=mode)
        self._run_container(pod, container)
        return pod

    def _run_container(self, pod: Pod, container: dict) -> None:
        """Start (or, as the kubelet does with restartPolicy Always, restart) the pod's app."""
        queue = self._queue()
        self.fault_file.parent.mkdir(exist_ok=True)
        self.runtime.supervisor.start(self._process(pod), [
            sys.executable, "-m", "lab.dataplane.standin", "--mode", pod.mode, "--bind", pod.address,
            "--port", str(pod.port), "--name", pod.name, "--version", image_tag(container.get("image") or ""),
            "--fault-file", str(self.fault_file),
            "--queue-dir", str(queue)])

    def _queue(self) -> Path:
        """The media queue the cluster's workers share with the instances' (one SQS queue):
        the lab's queue of the cluster's private network."""
        with self.lab.store.lock:
            networks = [c.get("private_network_id") for c in self.lab.objects("cluster").values()]
        network = next((n for n in networks if n), None)
        if network and self.runtime.apps is not None:
            return self.runtime.apps.queue_dir(network)
        queue = self.runtime.directory / "queues" / "cluster"
        queue.mkdir(parents=True, exist_ok=True)
        return queue

    def _ready(self, pod: Pod, template: dict) -> bool:
        if not self.runtime.supervisor.running(self._process(pod)):
            return False
        if pod.mode != "api":
            return True
        probe = _container(template).get("readinessProbe") or {}
        path = (probe.get("httpGet") or {}).get("path") or "/health"
        return _answers(pod.address, pod.port, path)

    def _run_deployment(self, key: str, deployment: dict) -> None:
        spec, template = deployment["spec"], deployment["spec"]["template"]
        wanted, current = int(spec.get("replicas", 1)), _template_hash(template)
        workload = self.workloads.setdefault(key, Workload())
        workload.labels = (template.get("metadata") or {}).get("labels") or {}
        new = [pod for pod in workload.pods if pod.template == current]
        old = [pod for pod in workload.pods if pod.template != current]
        for surplus in new[wanted:]:
            self.runtime.supervisor.stop(self._process(surplus))
            workload.pods.remove(surplus)
        new = new[:wanted]
        for index in range(len(new), wanted):
            pod = self._start_pod(key, template, current, index)
            workload.pods.append(pod)
            new.append(pod)
        for pod in new:
            if not self.runtime.supervisor.running(self._process(pod)):
                LOG.warning("pod %s exited: restarting it", pod.name)
                self._run_container(pod, _container(template))
        ready = [pod for pod in new if self._ready(pod, template)]
        if old and len(ready) == wanted:
            # The new pods serve: take the old ones out of the private LB first, then stop them.
            workload.pods = new
            self._refresh_services()
            for pod in old:
                self.runtime.supervisor.stop(self._process(pod))
        self._report(deployment, wanted, len(new), len(ready), len(workload.pods))

    def _report(self, deployment: dict, wanted: int, updated: int, ready: int, total: int) -> None:
        meta = deployment["metadata"]
        status = {"observedGeneration": meta.get("generation", 1), "replicas": total, "updatedReplicas": updated,
                  "readyReplicas": ready, "availableReplicas": ready,
                  "unavailableReplicas": max(wanted - ready, 0),
                  "conditions": [
                      {"type": "Available", "status": "True" if ready >= wanted else "False",
                       "reason": "MinimumReplicasAvailable" if ready >= wanted else "MinimumReplicasUnavailable",
                       "message": f"{ready}/{wanted} replicas available"},
                      {"type": "Progressing", "status": "True",
                       "reason": "NewReplicaSetAvailable" if ready >= wanted else "ReplicaSetUpdated",
                       "message": "rolled out by the lab's stand-in nodes"}]}
        if {k: v for k, v in (deployment.get("status") or {}).items() if k != "conditions"} == \
                {k: v for k, v in status.items() if k != "conditions"}:
            return
        self.apps.patch_namespaced_deployment_status(meta["name"], meta["namespace"], {"status": status})

    # --- cloud controller ---------------------------------------------------------------------

    def _refresh_services(self) -> None:
        for service in self.core.list_service_for_all_namespaces().items:
            if service.spec.type == "LoadBalancer":
                self._run_service(self.api.sanitize_for_serialization(service))

    def _pods_for(self, namespace: str, selector: dict) -> list[Pod]:
        """Ready-or-not pods of the Deployments whose pod labels match the selector."""
        pods = []
        for key, workload in self.workloads.items():
            if not key.startswith(f"{namespace}/"):
                continue
            if selector and all(workload.labels.get(k) == v for k, v in selector.items()):
                pods += workload.pods
        return pods

    def _ingress_address(self, annotations: dict) -> str | None:
        ip_id = (annotations.get(f"{PRIVATE_LB}private-ip-ids") or "").split(",")[0].split("/")[-1]
        if not ip_id:
            return None
        with self.lab.store.lock:
            found = self.lab.objects("ip").get(ip_id)
        return str(found["address"]).split("/")[0] if found else None

    def _run_service(self, service: dict) -> None:
        meta, spec = service["metadata"], service["spec"]
        annotations = meta.get("annotations") or {}
        address = self._ingress_address(annotations)
        if address is None:
            return  # a public LB or an address not (yet) reserved: the lab serves private ones only
        port = spec["ports"][0]
        pods = self._pods_for(meta["namespace"], spec.get("selector") or {})
        uri = annotations.get(f"{PRIVATE_LB}health-check-http-uri") or "/health"
        key = f"{meta['namespace']}/{meta['name']}"
        config = _haproxy_config(loopback_for(address), int(port["port"]), pods, uri)
        if self.services.get(key) != config:
            self._apply_private_lb(key, config)
            self.services[key] = config
        ingress = (service.get("status") or {}).get("loadBalancer", {}).get("ingress") or []
        if [entry.get("ip") for entry in ingress] != [address]:
            self.core.patch_namespaced_service_status(meta["name"], meta["namespace"],
                                                      {"status": {"loadBalancer": {"ingress": [{"ip": address}]}}})

    def _apply_private_lb(self, key: str, config: str) -> None:
        directory = self.runtime.directory / "private-lb"
        directory.mkdir(exist_ok=True)
        path = directory / f"{key.replace('/', '_')}.cfg"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(config)
        os.replace(tmp, path)
        name = f"private-lb/{key}"
        process = self.runtime.supervisor.get(name)
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGUSR2)  # master-worker reload: old connections finish on the old worker
            return
        haproxy = shutil.which("haproxy")
        if haproxy is None:
            raise RuntimeError("haproxy is not installed: run ./setup.sh --test-tools")
        self.runtime.supervisor.start(name, [haproxy, "-W", "-db", "-f", str(path)])


def _haproxy_config(bind: str, port: int, pods: list[Pod], health_uri: str) -> str:
    servers = "\n".join(f"    server {pod.name} {pod.address}:{pod.port} check" for pod in pods
                        if pod.mode == "api")
    return f"""global
    hard-stop-after 60s

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    option redispatch
    retries 2

frontend private_lb
    bind {bind}:{port}
    default_backend pods

backend pods
    option httpchk GET {health_uri}
    default-server inter 1s fall 2 rise 1
{servers}
"""
