"""Networking layer: the VPC and the private network every component joins.

Nothing here has a public address; egress and the bastion come with the public gateway.
"""

from __future__ import annotations

from constructs import Construct

from infra.config import EnvironmentConfig
from infra.providers import scaleway


class Networking(Construct):
    """VPC + one private network on `config.private_network_cidr`."""

    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, id_)
        vpc = scaleway("vpc")
        private_network = scaleway("vpc_private_network")
        tags = config.tags("networking")

        self.vpc = vpc.Vpc(self, "vpc", name=f"ciel-{config.name}", region=config.region, tags=tags)
        self.private_network = private_network.VpcPrivateNetwork(
            self,
            "private_network",
            name=f"ciel-{config.name}",
            region=config.region,
            vpc_id=self.vpc.id,
            ipv4_subnet=private_network.VpcPrivateNetworkIpv4Subnet(subnet=config.private_network_cidr),
            tags=tags,
        )
