"""Jobs on the lab's cluster, as a node's kubelet and the job controller run them, with
pod logs the real API server serves (`kubectl logs`, `read_namespaced_pod_log`).

- **the node**: one Node object, `lab-node-0`, whose kubelet endpoint is this module's
  HTTPS server on 127.0.0.1 (its certificate from the lab CA; the API server does not
  check it, as it does not without --kubelet-certificate-authority). The API server
  proxies /containerLogs/<namespace>/<pod>/<container> to it; it answers the pod's
  output so far.
- **the job controller**: a Job the lab has not started gets one Pod object, bound to
  the node (nothing schedules here), labelled `job-name` and `controller-uid` as the
  controller labels it; the Job's status turns active. The pod's container runs as a
  stand-in process of the Ciel image (lab/dataplane/standin.py), with its env and
  envFrom (ConfigMaps, Secrets) read from the API: only APP_MODE=migrate runs this way
  (`ciel db migrate`'s Jobs; the Deployments' pods are lab/kubernetes/nodes.py's). When
  it exits, the pod turns Succeeded or Failed with its exit code, and the Job Complete or
  Failed with the conditions the controller sets (SuccessCriteriaMet / FailureTarget
  first); past activeDeadlineSeconds the process is stopped and the Job fails with
  DeadlineExceeded. backoffLimit is taken as 0: a failed pod is not retried.
"""

from __future__ import annotations

import base64
import logging
import re
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from lab.dataplane.apps import image_tag

NODE = "lab-node-0"
LOG = logging.getLogger("lab.kubernetes")
CONTAINER_LOGS = re.compile(r"^/containerLogs/([a-z0-9-]+)/([a-z0-9.-]+)/([a-z0-9-]+)$")


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _LogServer(ThreadingHTTPServer):
    daemon_threads = True


class Kubelet:
    """The node's kubelet endpoint, for pod logs only."""

    def __init__(self, core, authority) -> None:
        self.core = core
        self.logs: dict[tuple[str, str], Path] = {}  # (namespace, pod) → its container's output
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                match = CONTAINER_LOGS.match(self.path.split("?", 1)[0])
                path = owner.logs.get((match.group(1), match.group(2))) if match else None
                if path is None:
                    self._answer(404, b"no such container\n")
                    return
                self._answer(200, path.read_bytes() if path.exists() else b"")

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = _LogServer(("127.0.0.1", 0), Handler)
        self.server.socket = authority.context_for("127.0.0.1").wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, name="lab-kubelet", daemon=True).start()

    def register(self) -> None:
        """The Node, pointing at this endpoint (again after a lab restart: a new port)."""
        from kubernetes.client.exceptions import ApiException

        status = {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                  "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                  "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                                  "message": "the lab's stand-in kubelet (jobs and pod logs)"}]}
        try:
            self.core.create_node({"metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
                                   "status": status})
        except ApiException as error:
            if error.status != 409:
                raise
        self.core.patch_node_status(NODE, {"status": status})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class JobRunner:
    def __init__(self, api_client, runtime, authority) -> None:
        from kubernetes import client

        self.batch, self.core = client.BatchV1Api(api_client), client.CoreV1Api(api_client)
        self.runtime = runtime
        self.kubelet = Kubelet(self.core, authority)
        self.kubelet.register()
        self.running: dict[str, tuple[str, float, int | None]] = {}  # job key → (pod name, started, deadline)

    def stop(self) -> None:
        for key, (pod, _, _) in self.running.items():
            self.runtime.supervisor.stop(self._process(key.split("/")[0], pod), timeout=5)
        self.kubelet.stop()

    @staticmethod
    def _process(namespace: str, pod: str) -> str:
        return f"job-pod/{namespace}/{pod}"

    def reconcile(self) -> None:
        for job in self.batch.list_job_for_all_namespaces().items:
            key = f"{job.metadata.namespace}/{job.metadata.name}"
            finished = any(c.type in ("Complete", "Failed") and c.status == "True"
                           for c in (job.status.conditions or []))
            if finished:
                self.running.pop(key, None)
            elif key in self.running:
                self._watch(job, key)
            elif job.status.start_time is None:
                self._start(job, key)

    # --- the controller and the kubelet -------------------------------------------------------

    def _start(self, job, key: str) -> None:
        namespace, template = job.metadata.namespace, job.spec.template
        pod_name = f"{job.metadata.name}-{uuid.uuid4().hex[:5]}"
        labels = {**(template.metadata.labels or {}), "job-name": job.metadata.name,
                  "batch.kubernetes.io/job-name": job.metadata.name, "controller-uid": job.metadata.uid,
                  "batch.kubernetes.io/controller-uid": job.metadata.uid}
        spec = self.core.api_client.sanitize_for_serialization(template.spec)
        self.core.create_namespaced_pod(namespace, {
            "metadata": {"name": pod_name, "labels": labels, "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": job.metadata.name, "uid": job.metadata.uid,
                "controller": True, "blockOwnerDeletion": True}]},
            "spec": {**spec, "nodeName": NODE}})
        started = time.monotonic()
        self.batch.patch_namespaced_job_status(job.metadata.name, namespace,
                                               {"status": {"startTime": _now(), "active": 1}})
        container = template.spec.containers[0]
        environment = self._environment(namespace, container)
        self.running[key] = (pod_name, started, job.spec.active_deadline_seconds)
        process = self._process(namespace, pod_name)
        self.kubelet.logs[(namespace, pod_name)] = self.runtime.supervisor.logs / f"{process.replace('/', '_')}.log"
        if environment.get("APP_MODE") != "migrate":
            self._finish(job, key, exit_code=125, reason="Error",
                         message=f"the lab runs APP_MODE=migrate Jobs only, not {environment.get('APP_MODE')}")
            return
        env_file = self.runtime.directory / "pods" / f"{namespace}_{pod_name}.env"
        env_file.parent.mkdir(parents=True, exist_ok=True)
        env_file.touch(mode=0o600)
        env_file.write_text("".join(f"{name}={value}\n" for name, value in sorted(environment.items())))
        self.runtime.supervisor.start(process, [
            sys.executable, "-m", "lab.dataplane.standin", "--mode", "migrate", "--name", pod_name,
            "--version", image_tag(container.image or ""), "--env-file", str(env_file), "--lab-dir", str(self.runtime.directory)],
            env={"PYTHONUNBUFFERED": "1"})
        self.core.patch_namespaced_pod_status(pod_name, namespace, {"status": {
            "phase": "Running", "startTime": _now(), "containerStatuses": [_container_status(
                container, {"running": {"startedAt": _now()}})]}})

    def _environment(self, namespace: str, container) -> dict[str, str]:
        values: dict[str, str] = {}
        for source in container.env_from or []:
            if source.config_map_ref is not None:
                values.update(self.core.read_namespaced_config_map(source.config_map_ref.name, namespace).data or {})
            if source.secret_ref is not None:
                data = self.core.read_namespaced_secret(source.secret_ref.name, namespace).data or {}
                values.update({name: base64.b64decode(value).decode() for name, value in data.items()})
        for item in container.env or []:
            if item.value is not None:
                values[item.name] = item.value
        return values

    def _watch(self, job, key: str) -> None:
        pod_name, started, deadline = self.running[key]
        process = self.runtime.supervisor.get(self._process(job.metadata.namespace, pod_name))
        if process is None:
            return
        if process.poll() is None:
            if deadline and time.monotonic() - started > deadline:
                self.runtime.supervisor.stop(self._process(job.metadata.namespace, pod_name), timeout=5)
                self._finish(job, key, exit_code=137, reason="DeadlineExceeded",
                             message="Job was active longer than specified deadline")
            return
        code = process.returncode
        self._finish(job, key, exit_code=code, reason="Completed" if code == 0 else "Error",
                     message="" if code == 0 else "Job has reached the specified backoff limit")

    def _finish(self, job, key: str, *, exit_code: int, reason: str, message: str) -> None:
        namespace, name = job.metadata.namespace, job.metadata.name
        pod_name = self.running[key][0]
        container = job.spec.template.spec.containers[0]
        self.core.patch_namespaced_pod_status(pod_name, namespace, {"status": {
            "phase": "Succeeded" if exit_code == 0 else "Failed", "containerStatuses": [_container_status(
                container, {"terminated": {"exitCode": exit_code, "reason": reason, "finishedAt": _now()}})]}})
        if exit_code == 0:
            conditions = [{"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached",
                           "lastTransitionTime": _now()},
                          {"type": "Complete", "status": "True", "reason": "CompletionsReached",
                           "lastTransitionTime": _now()}]
            status = {"active": 0, "succeeded": 1, "completionTime": _now(), "conditions": conditions}
        else:
            failure = "DeadlineExceeded" if reason == "DeadlineExceeded" else "BackoffLimitExceeded"
            conditions = [{"type": "FailureTarget", "status": "True", "reason": failure, "message": message,
                           "lastTransitionTime": _now()},
                          {"type": "Failed", "status": "True", "reason": failure, "message": message,
                           "lastTransitionTime": _now()}]
            status = {"active": 0, "failed": 1, "conditions": conditions}
        self.batch.patch_namespaced_job_status(name, namespace, {"status": status})
        self.running.pop(key, None)
        LOG.warning("job %s: pod %s exited %s", key, pod_name, exit_code)


def _container_status(container, state: dict) -> dict:
    return {"name": container.name, "image": container.image or "", "imageID": "", "ready": False,
            "restartCount": 0, "state": state}
