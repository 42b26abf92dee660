"""The lab's data plane: what runs, on loopback, in place of Scaleway's machines.

The emulated API (lab/api.py, lab/families/) holds what the user asked for; the runtime
makes it real enough to carry traffic: one HAProxy per load balancer, configured from the
LB API's objects and reloaded gracefully on every change (lab/dataplane/haproxy.py); one
stand-in app process per running instance (lab/dataplane/apps.py); a Kubernetes API
server for Kapsule clusters (lab/kubernetes/). A Lab without a runtime (most API tests)
answers the same, with every backend server reported healthy.
"""

from __future__ import annotations

from pathlib import Path

from lab.processes import Supervisor


class Runtime:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.supervisor = Supervisor(directory)
        self.load_balancers = None  # lab.dataplane.haproxy.LoadBalancerPlane
        self.apps = None  # lab.dataplane.apps.AppPlane
        self.kubernetes = None  # lab.kubernetes.* (API server and the stand-in for kubelets)

    def stop(self) -> None:
        for part in (self.kubernetes, self.apps, self.load_balancers):
            if part is not None and hasattr(part, "stop"):
                part.stop()
        self.supervisor.stop_all()
