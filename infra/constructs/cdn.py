"""CDN layer: an Edge Services pipeline in front of the media bucket.

Stages chain head → dns → tls → cache → backend (S3). A custom domain gets a managed
certificate; without one, the pipeline's default *.svc.edge.scw.cloud host serves.
"""

from __future__ import annotations

from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs.storage import Storage
from infra.providers import scaleway


class Cdn(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, storage: Storage) -> None:
        super().__init__(scope, id_)
        plan = scaleway("edge_services_plan")
        pipeline = scaleway("edge_services_pipeline")
        backend = scaleway("edge_services_backend_stage")
        cache = scaleway("edge_services_cache_stage")
        tls = scaleway("edge_services_tls_stage")
        dns = scaleway("edge_services_dns_stage")
        head = scaleway("edge_services_head_stage")

        # Edge Services needs an active subscription; "starter" is the smallest.
        self.plan = plan.EdgeServicesPlan(self, "plan", name="starter")
        self.pipeline = pipeline.EdgeServicesPipeline(self, "pipeline", name=f"ciel-{config.name}-media",
                                                      description="Media bucket CDN", depends_on=[self.plan])
        self.backend = backend.EdgeServicesBackendStage(
            self, "backend", pipeline_id=self.pipeline.id,
            s3_backend_config=backend.EdgeServicesBackendStageS3BackendConfig(
                bucket_name=storage.bucket.name, bucket_region=config.region, is_website=False))
        self.cache = cache.EdgeServicesCacheStage(self, "cache", pipeline_id=self.pipeline.id,
                                                  backend_stage_id=self.backend.id, fallback_ttl=3600)
        custom = config.cdn_custom_domain
        self.tls = tls.EdgeServicesTlsStage(self, "tls", pipeline_id=self.pipeline.id, cache_stage_id=self.cache.id,
                                            managed_certificate=bool(custom))
        self.dns = dns.EdgeServicesDnsStage(self, "dns", pipeline_id=self.pipeline.id, tls_stage_id=self.tls.id,
                                            fqdns=[custom] if custom else None)
        self.head = head.EdgeServicesHeadStage(self, "head", pipeline_id=self.pipeline.id, head_stage_id=self.dns.id)
        self.public_endpoint = f"https://{custom}" if custom else f"https://{self.dns.default_fqdn}"
