"""The lab's Kubernetes API server: a real kube-apiserver on its own etcd, on 127.0.0.1.

Every Kapsule cluster of a lab shares it (their kubeconfigs all name
https://127.0.0.1:<lab API port + 3>); what tells them apart is the bearer token, and the
lab makes a token per cluster whenever a cluster is created. A static token file could
not follow that, so the API server asks the lab who a token is: TokenReview through
--authentication-token-webhook-config-file, answered by POST /lab/v1/tokenreview
(lab/families/k8s.py). A live cluster's token is `kapsule-admin` in system:masters.

Ports, from the lab's API port: API server = api + 3, etcd client = api + 4, etcd peer =
api + 5. Files, in the lab folder: etcd/ (the data), kube-apiserver/ (serving certificate
signed by the lab CA, the service-account key made once, the webhook's kubeconfig), and
logs/kubernetes_*.log through the runtime's Supervisor.

No kube-controller-manager runs, so admission plugins that only make sense with its
controllers are off (see DISABLED_ADMISSION): without it a Pod would wait forever for a
`default` ServiceAccount, and a PVC for its protection finalizer to be lifted.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from lab.processes import Supervisor

API_SERVER_PORT_OFFSET = 3  # as lab.families.k8s.KUBE_API_PORT_OFFSET: the kubeconfig's port
ETCD_CLIENT_PORT_OFFSET = 4
ETCD_PEER_PORT_OFFSET = 5

# Kapsule's default service CIDR. Service IPs are API objects only: nothing routes them.
SERVICE_CLUSTER_IP_RANGE = "10.32.0.0/20"
KUBERNETES_SERVICE_IP = "10.32.0.1"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"
DISABLED_ADMISSION = ("ServiceAccount", "StorageObjectInUseProtection")
# How long the API server trusts a webhook answer: a deleted cluster's token stops working
# this soon after (the default is two minutes).
TOKEN_CACHE_TTL = "10s"

ETCD_PROCESS = "kubernetes/etcd"
API_SERVER_PROCESS = "kubernetes/kube-apiserver"


class LabToolMissing(RuntimeError):
    """kube-apiserver or etcd is not built: building takes minutes, so nothing does it implicitly."""


class KubeApiServer:
    def __init__(self, directory: Path, api_port: int, supervisor: Supervisor, *,
                 kube_apiserver: Path | None = None, etcd: Path | None = None) -> None:
        from toolchain import kubernetes_build

        self.directory = directory
        self.lab_api_port = api_port
        self.supervisor = supervisor
        self.kube_apiserver_binary = kube_apiserver or kubernetes_build.kube_apiserver_path()
        self.etcd_binary = etcd or kubernetes_build.etcd_path()
        self.port = api_port + API_SERVER_PORT_OFFSET
        self.etcd_client_port = api_port + ETCD_CLIENT_PORT_OFFSET
        self.etcd_peer_port = api_port + ETCD_PEER_PORT_OFFSET
        self.files = directory / "kube-apiserver"
        self.etcd_data = directory / "etcd"

    @property
    def api_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def ca_path(self) -> Path:
        return self.directory / "ca.pem"

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, etcd_timeout: float = 30.0) -> None:
        """Start etcd, wait until it is healthy, then start kube-apiserver (see wait_ready)."""
        missing = [str(path) for path in (self.kube_apiserver_binary, self.etcd_binary) if not path.exists()]
        if missing:
            from toolchain.kubernetes_build import BUILD_HINT

            raise LabToolMissing(f"not built: {', '.join(missing)}. Build them once (minutes, a few GiB of RAM) "
                                 f"with: {BUILD_HINT}")
        self.files.mkdir(parents=True, exist_ok=True)
        self._write_serving_certificate()
        self._ensure_service_account_key()
        self._write_webhook_config()
        self.supervisor.start(ETCD_PROCESS, self._etcd_argv())
        self._wait_for_etcd(etcd_timeout)
        self.supervisor.start(API_SERVER_PROCESS, self._api_server_argv())

    def wait_ready(self, timeout: float = 90.0) -> float:
        """Block until /readyz answers ok; returns the seconds waited. Raises with the log's tail."""
        context = ssl.create_default_context(cafile=str(self.ca_path))
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context))
        started = time.monotonic()
        last_answer = "no answer yet"
        while time.monotonic() - started < timeout:
            if not self.supervisor.running(API_SERVER_PROCESS):
                raise RuntimeError(f"kube-apiserver exited before it was ready:\n{self._log_tail(API_SERVER_PROCESS)}")
            try:
                with opener.open(f"{self.api_url}/readyz", timeout=2) as answer:
                    if answer.status == 200:
                        return time.monotonic() - started
            except urllib.error.HTTPError as error:  # 500 until every check passes, 403 before RBAC is bootstrapped
                last_answer = f"{error.code} {error.read()[-300:]!r}"
            except OSError as error:
                last_answer = str(error)
            time.sleep(0.25)
        raise TimeoutError(f"kube-apiserver not ready after {timeout:.0f} s (last: {last_answer}):\n"
                           f"{self._log_tail(API_SERVER_PROCESS)}")

    def stop(self) -> None:
        self.supervisor.stop(API_SERVER_PROCESS, timeout=15.0)
        self.supervisor.stop(ETCD_PROCESS, timeout=10.0)

    def running(self) -> bool:
        return self.supervisor.running(API_SERVER_PROCESS) and self.supervisor.running(ETCD_PROCESS)

    # --- clients -------------------------------------------------------------------------

    def admin_client(self, token: str):
        """A `kubernetes` ApiClient for this server, as a cluster's kubeconfig would make it."""
        return admin_client(self.api_url, token, self.ca_path)

    # --- processes -------------------------------------------------------------------------

    def _etcd_argv(self) -> list[str]:
        client, peer = f"http://127.0.0.1:{self.etcd_client_port}", f"http://127.0.0.1:{self.etcd_peer_port}"
        return [str(self.etcd_binary), "--name", "lab", "--data-dir", str(self.etcd_data),
                "--listen-client-urls", client, "--advertise-client-urls", client,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"lab={peer}", "--initial-cluster-state", "new",
                "--log-level", "warn"]

    def _api_server_argv(self) -> list[str]:
        files = self.files
        return [
            str(self.kube_apiserver_binary),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_client_port}",
            "--bind-address=127.0.0.1", f"--secure-port={self.port}",
            # Loopback is no valid endpoint address; with no reconciler none is written
            # (the `kubernetes` Service still exists, with its cluster IP).
            "--advertise-address=127.0.0.1", "--endpoint-reconciler-type=none",
            f"--tls-cert-file={files / 'serving.pem'}", f"--tls-private-key-file={files / 'serving-key.pem'}",
            f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={files / 'service-account.pem'}",
            f"--service-account-signing-key-file={files / 'service-account-key.pem'}",
            f"--authentication-token-webhook-config-file={files / 'token-webhook.kubeconfig'}",
            "--authentication-token-webhook-version=v1",
            f"--authentication-token-webhook-cache-ttl={TOKEN_CACHE_TTL}",
            "--authorization-mode=RBAC",
            f"--disable-admission-plugins={','.join(DISABLED_ADMISSION)}",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ]

    def _wait_for_etcd(self, timeout: float) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.supervisor.running(ETCD_PROCESS):
                raise RuntimeError(f"etcd exited:\n{self._log_tail(ETCD_PROCESS)}")
            try:
                with opener.open(f"http://127.0.0.1:{self.etcd_client_port}/health", timeout=2) as answer:
                    if json.load(answer).get("health") == "true":
                        return
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        raise TimeoutError(f"etcd not healthy after {timeout:.0f} s:\n{self._log_tail(ETCD_PROCESS)}")

    def _log_tail(self, name: str, size: int = 3000) -> str:
        log = self.supervisor.logs / f"{name.replace('/', '_')}.log"
        return log.read_text(errors="replace")[-size:] if log.exists() else "(no log)"

    # --- files ---------------------------------------------------------------------------

    def _write_serving_certificate(self) -> None:
        """A fresh leaf from the lab CA at each start (the CA may have been made anew)."""
        from lab.objectstorage import Authority

        authority = Authority(self.directory)
        key = ec.generate_private_key(ec.SECP256R1())
        names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                 "kubernetes.default.svc.cluster.local"]
        addresses = [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address(KUBERNETES_SERVICE_IP)]
        start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
            .issuer_name(authority.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName([*map(x509.DNSName, names), *map(x509.IPAddress, addresses)]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
                           critical=False)
            .sign(authority.key, hashes.SHA256()))
        _write_private(self.files / "serving-key.pem", _private_pem(key))
        (self.files / "serving.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))

    def _ensure_service_account_key(self) -> None:
        """Made once: tokens it signed stay valid across restarts, as on a real cluster."""
        private, public = self.files / "service-account-key.pem", self.files / "service-account.pem"
        if private.exists() and public.exists():
            return
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        _write_private(private, _private_pem(key))
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))

    def _write_webhook_config(self) -> None:
        """A kubeconfig naming the lab's API (plain HTTP on loopback) as the token reviewer."""
        url = f"http://127.0.0.1:{self.lab_api_port}/lab/v1/tokenreview"
        config = {"apiVersion": "v1", "kind": "Config",
                  "clusters": [{"name": "lab", "cluster": {"server": url}}],
                  "users": [{"name": "kube-apiserver", "user": {}}],
                  "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "kube-apiserver"}}],
                  "current-context": "lab"}
        (self.files / "token-webhook.kubeconfig").write_text(json.dumps(config, indent=1))


def admin_client(api_url: str, token: str, ca_file: Path):
    """A `kubernetes` ApiClient that authenticates with `token` and trusts only the lab CA."""
    import kubernetes.client

    # The lab's environment sets HTTPS_PROXY (for Object Storage); the API server is local.
    configuration = kubernetes.client.Configuration(host=api_url, no_proxy="127.0.0.1,localhost")
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    configuration.ssl_ca_cert = str(ca_file)
    configuration.verify_ssl = True
    return kubernetes.client.ApiClient(configuration)


def _private_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(data)
