"""The cluster side, through the official kubernetes client: readiness and worker scale."""

from __future__ import annotations

import time
from collections.abc import Callable

from foundation.errors import CielError

NAMESPACE = "ciel"


def api_client(host: str, token: str, ca_file: str | None):
    """A `kubernetes` ApiClient for the cluster, as its kubeconfig describes it."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = host
    configuration.api_key = {"authorization": f"Bearer {token}"}
    if ca_file:
        configuration.ssl_ca_cert = ca_file
    else:
        configuration.verify_ssl = False  # only for plain-HTTP test servers
    return client.ApiClient(configuration)


class ClusterSide:
    def __init__(self, api_client, *, log: Callable[[str], None], namespace: str = NAMESPACE,
                 poll_seconds: float = 2.0) -> None:
        from kubernetes import client

        self.apps = client.AppsV1Api(api_client)
        self.log, self.namespace, self.poll_seconds = log, namespace, poll_seconds

    @classmethod
    def connect(cls, host: str, token: str, ca_file: str | None, *, log: Callable[[str], None]) -> "ClusterSide":
        return cls(api_client(host, token, ca_file), log=log)

    def readiness(self, name: str) -> tuple[int, int]:
        """(ready replicas, desired replicas) of a Deployment."""
        self.log(f"  K8S GET deployment {self.namespace}/{name}")
        deployment = self.apps.read_namespaced_deployment(name=name, namespace=self.namespace)
        return (deployment.status.ready_replicas or 0, deployment.spec.replicas or 0)

    def scale_at_least(self, name: str, replicas: int) -> None:
        ready, desired = self.readiness(name)
        if desired >= replicas:
            return
        self.log(f"  K8S PATCH deployment {self.namespace}/{name} scale replicas={replicas}")
        self.apps.patch_namespaced_deployment_scale(name=name, namespace=self.namespace,
                                                    body={"spec": {"replicas": replicas}})

    def wait_ready(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            ready, desired = self.readiness(name)
            if desired and ready >= desired:
                return
            if time.monotonic() > deadline:
                raise CielError(f"deployment {name}: {ready}/{desired} ready after {timeout:.0f}s")
            time.sleep(self.poll_seconds)
