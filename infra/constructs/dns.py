"""DNS layer: records in the environment's Scaleway DNS zone, when a domain is set.

The API host points at the shared LB's IP, which survives both phases and the cutover.
Only `scaleway_domain_record` is used: `scaleway_domain_zone` lists zones at plan time,
which the offline path cannot do.
"""

from __future__ import annotations

from constructs import Construct

from infra.config import EnvironmentConfig
from infra.providers import scaleway


class Dns(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, lb_ip_address: str | None,
                 cdn_target: str | None) -> None:
        super().__init__(scope, id_)
        record = scaleway("domain_record")
        self.records = {}
        if lb_ip_address is not None:
            self.records["api"] = record.DomainRecord(self, "api", dns_zone=config.domain, name=config.api_subdomain,
                                                      type="A", data=lb_ip_address, ttl=300)
        custom = config.cdn_custom_domain
        if cdn_target is not None and custom and custom.endswith(f".{config.domain}"):
            label = custom.removesuffix(f".{config.domain}")
            self.records["cdn"] = record.DomainRecord(self, "cdn", dns_zone=config.domain, name=label, type="CNAME",
                                                      data=f"{cdn_target}.", ttl=300)
