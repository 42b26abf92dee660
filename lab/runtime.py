"""The lab's data plane: what runs, on loopback, in place of Scaleway's machines.

The emulated API (lab/api.py, lab/families/) holds what the user asked for; the runtime
makes it real enough to carry traffic: one HAProxy per load balancer, configured from the
LB API's objects and reloaded gracefully on every change (lab/dataplane/haproxy.py); one
stand-in app process per running instance (lab/dataplane/apps.py); a real Kubernetes API
server for the Kapsule clusters, started with the first cluster (a cluster takes a while
to create on Scaleway too), and the stand-in for their nodes and cloud controller
(lab/kubernetes/). A Lab without a runtime (API tests in-process) answers the same, with
every backend server reported healthy.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from lab.processes import Supervisor

LOG = logging.getLogger("lab.runtime")


class Runtime:
    def __init__(self, directory: Path, api_port: int = 0) -> None:
        self.directory = directory
        self.api_port = api_port
        self.supervisor = Supervisor(directory)
        self.load_balancers = None  # lab.dataplane.haproxy.LoadBalancerPlane
        self.apps = None  # lab.dataplane.apps.AppPlane
        self.kubernetes = None  # lab.kubernetes.apiserver.KubeApiServer, once a cluster exists
        self.nodes = None  # lab.kubernetes.nodes.ClusterNodes, once the API server is ready
        self.kubernetes_error = ""  # why the API server is not running, for the lab's log and status
        self._kubernetes_lock = threading.Lock()

    @classmethod
    def start(cls, lab, directory: Path, api_port: int, proxy_port: int | None = None) -> "Runtime":
        """The whole data plane for `lab`, brought in line with what its state holds (a
        restarted lab serves its load balancers and running servers again). `proxy_port`:
        the lab's HTTPS proxy, which the machines' Alloy pushes their logs through."""
        from lab.dataplane.apps import AppPlane
        from lab.dataplane.haproxy import LoadBalancerPlane

        runtime = cls(directory, api_port)
        runtime.load_balancers = LoadBalancerPlane(runtime.supervisor, directory)
        runtime.apps = AppPlane(runtime.supervisor, directory, api_url=f"http://127.0.0.1:{api_port}",
                                proxy_url=f"http://127.0.0.1:{proxy_port}" if proxy_port else None,
                                ca_file=directory / "ca.pem")
        lab.runtime = runtime
        with lab.store.lock:
            runtime.load_balancers.apply_all(lab)
            has_cluster = bool(lab.objects("cluster"))
        runtime.apps.resume(lab)
        if has_cluster:
            runtime.ensure_kubernetes(lab)
        return runtime

    def ensure_kubernetes(self, lab) -> None:
        """Start the Kubernetes API server and the nodes' stand-in, in the background (the
        API answers the cluster's creation at once; the server is ready seconds later)."""
        with self._kubernetes_lock:
            if self.kubernetes is not None:
                return
            from lab.kubernetes.apiserver import KubeApiServer

            self.kubernetes = KubeApiServer(self.directory, self.api_port, self.supervisor)
        threading.Thread(target=self._start_kubernetes, args=(lab,), name="lab-kubernetes", daemon=True).start()

    def _start_kubernetes(self, lab) -> None:
        from lab.kubernetes.nodes import ClusterNodes

        try:
            self.kubernetes.start()
            seconds = self.kubernetes.wait_ready()
            api_client = self.kubernetes.admin_client(lab_token(lab))
            seconds += _wait_for_service_addresses(api_client)
            LOG.warning("kube-apiserver ready on %s after %.1fs", self.kubernetes.api_url, seconds)
            self.nodes = ClusterNodes(lab, self, api_client)
            self.nodes.start()
        except Exception as error:  # the API server missing or failing: the API family still answers
            self.kubernetes_error = str(error)
            LOG.error("the lab's Kubernetes API server did not start: %s", error)

    def kubernetes_settled(self) -> bool:
        """The API server serves (the nodes' stand-in runs), or has failed for good (its
        error is logged; the API does not wait for it forever)."""
        return self.nodes is not None or bool(self.kubernetes_error)

    def stop(self) -> None:
        for part in (self.nodes, self.kubernetes, self.apps, self.load_balancers):
            if part is not None:
                part.stop()
        self.supervisor.stop_all()


def _wait_for_service_addresses(api_client, timeout: float = 60.0) -> float:
    """Seconds until Services can get a cluster IP: /readyz answers before the API server's
    own controller has made its default ServiceCIDR ready, and a Service created meanwhile
    is refused ("range is full")."""
    from kubernetes import client

    networking, started = client.NetworkingV1Api(api_client), time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            conditions = networking.read_service_cidr("kubernetes").status.conditions or []
            if any(c.type == "Ready" and c.status == "True" for c in conditions):
                break
        except Exception:  # not created yet
            pass
        time.sleep(0.25)
    return time.monotonic() - started


def lab_token(lab) -> str:
    """The token the lab's own controllers use with its API server (lab/families/k8s.py
    accepts it in its TokenReview)."""
    from lab.families.k8s import lab_controller_token

    return lab_controller_token(lab)
