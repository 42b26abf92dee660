"""Edge layer: the SHARED public load balancer.

It keeps its public IP (and so DNS) across both phases and is the pivot of the cutover:
phase 1 and phase 2 are different backends of it. This construct creates the LB, its
frontends and the instance backend with its health check; phase 1 fills the backend's
servers, phase 2 adds its own backend.
"""

from __future__ import annotations

from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs.lb_health import (HEALTH_CHECK_DELAY_SECONDS, HEALTH_CHECK_MAX_RETRIES,
                                       HEALTH_CHECK_TIMEOUT_SECONDS, LB_CONNECT_RETRIES)
from infra.constructs.networking import Networking
from infra.providers import scaleway

APP_PORT = 8080
HEALTH_PATH = "/health"


class Edge(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, network: Networking) -> None:
        super().__init__(scope, id_)
        lb_module = scaleway("lb")
        lb_ip = scaleway("lb_ip")
        frontend = scaleway("lb_frontend")
        tags = config.tags("edge")

        self.ip = lb_ip.LbIp(self, "ip", zone=config.zone, tags=tags)
        self.lb = lb_module.Lb(
            self,
            "lb",
            name=f"ciel-{config.name}",
            type=config.lb_type,
            zone=config.zone,
            ip_ids=[self.ip.id],
            private_network=[lb_module.LbPrivateNetwork(private_network_id=network.private_network.id)],
            tags=tags,
        )
        self.cluster_backend = None
        # The API instances' private IPs are filled in by phase 1.
        self.instance_backend = self._health_checked_backend("instance_backend", "instances", APP_PORT, [])

        if config.enable_https:
            certificate = scaleway("lb_certificate")
            self.certificate = certificate.LbCertificate(
                self,
                "certificate",
                lb_id=self.lb.id,
                name=f"ciel-{config.name}-api",
                letsencrypt=certificate.LbCertificateLetsencrypt(common_name=config.api_hostname),
            )
            self.https_frontend = frontend.LbFrontend(
                self,
                "https_frontend",
                lb_id=self.lb.id,
                name="https",
                inbound_port=443,
                backend_id=self.instance_backend.id,
                certificate_ids=[self.certificate.id],
                timeout_client="60s",
            )
            # Plain HTTP only redirects: every request ends up on TLS.
            self.http_frontend = frontend.LbFrontend(
                self,
                "http_frontend",
                lb_id=self.lb.id,
                name="http-redirect",
                inbound_port=80,
                backend_id=self.instance_backend.id,
                acl=[frontend.LbFrontendAcl(
                    name="redirect-to-https",
                    action=frontend.LbFrontendAclAction(
                        type="redirect",
                        redirect=[frontend.LbFrontendAclActionRedirect(type="scheme", target="https", code=301)],
                    ),
                    match=frontend.LbFrontendAclMatch(http_filter="path_begin", http_filter_value=["/"]),
                )],
            )
        else:
            # No domain, no certificate: HTTP serves the API directly (dev only).
            self.certificate = None
            self.https_frontend = None
            self.http_frontend = frontend.LbFrontend(
                self,
                "http_frontend",
                lb_id=self.lb.id,
                name="http",
                inbound_port=80,
                backend_id=self.instance_backend.id,
                timeout_client="60s",
            )

    def add_cluster_backend(self, *, address: str, port: int) -> None:
        """Phase 2: a backend on the cluster's private LB (one stable, reserved address).

        Attached to no frontend: it carries no production traffic until the cutover
        switches the public frontend to it (or a preview route sends test traffic)."""
        self.cluster_backend = self._health_checked_backend("cluster_backend", "cluster", port, [address])

    def _health_checked_backend(self, id_: str, name: str, port: int, server_ips: list[str]):
        """Health check and timeouts chosen for clean draining: a server failing /health
        twice in a row (checks 5 s apart, each at most 3 s) is marked down; its open
        sessions are then closed so clients retry on a healthy server instead of waiting on
        a dead one."""
        backend = scaleway("lb_backend")
        return backend.LbBackend(
            self,
            id_,
            lb_id=self.lb.id,
            name=name,
            forward_protocol="http",
            forward_port=port,
            server_ips=server_ips,
            health_check_http=backend.LbBackendHealthCheckHttp(uri=HEALTH_PATH, code=200),
            health_check_delay=f"{HEALTH_CHECK_DELAY_SECONDS}s",
            health_check_timeout=f"{HEALTH_CHECK_TIMEOUT_SECONDS}s",
            health_check_max_retries=HEALTH_CHECK_MAX_RETRIES,
            on_marked_down_action="shutdown_sessions",
            # A server that refuses connections (an instance replaced by a rollout, an app
            # draining) is still up for the LB until its checks fail twice: retry those
            # requests on another server instead of answering 503 (the prod rollout
            # rehearsal answered 2 % of its requests with 503 without this).
            max_retries=LB_CONNECT_RETRIES,
            redispatch_attempt_count=1,
            timeout_connect="5s",
            timeout_server="60s",
            proxy_protocol="none",
        )

    def issue_certificate_after(self, record) -> None:
        """Let's Encrypt validates the API host over HTTP at the LB's IP: the certificate is
        requested only once the DNS record pointing that host at the LB exists (an explicit
        depends_on; nothing else orders them, since neither references the other).

        The frontends keep referencing the certificate created in __init__; this only adds
        the ordering. Without HTTPS (no certificate) there is nothing to order. Every
        `domain` is a Scaleway Domains zone whose API record we write (infra/constructs/dns.py);
        a domain whose DNS is managed elsewhere is not supported: its record would have to
        point at the LB before the first apply, or the certificate request fails."""
        if self.certificate is not None:
            # A bare address: cdktn renders `record.fqn` as "${...}", which the engines
            # reject in depends_on ("A single static variable reference is required").
            self.certificate.depends_on = [*(self.certificate.depends_on or []),
                                           f"{record.terraform_resource_type}.{record.friendly_unique_id}"]

    @property
    def frontends(self) -> list:
        return [f for f in (self.https_frontend, self.http_frontend) if f is not None]

    def route_public_traffic_to(self, backend) -> None:
        for frontend in self.frontends:
            frontend.backend_id = backend.id

    @property
    def public_frontend(self):
        """The frontend that carries production traffic (what the cutover switches)."""
        return self.https_frontend or self.http_frontend
