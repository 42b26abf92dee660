"""Networking layer: VPC, the private network every component joins, and the public
gateway that gives private-only machines egress (masquerade) and, optionally, an SSH
bastion. Nothing else here has a public address.
"""

from __future__ import annotations

from constructs import Construct

from infra.config import EnvironmentConfig
from infra.providers import scaleway


class Networking(Construct):
    """VPC + private network on `config.private_network_cidr` + public gateway."""

    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, id_)
        vpc = scaleway("vpc")
        private_network = scaleway("vpc_private_network")
        gateway = scaleway("vpc_public_gateway")
        gateway_ip = scaleway("vpc_public_gateway_ip")
        gateway_network = scaleway("vpc_gateway_network")
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
        self.gateway_ip = gateway_ip.VpcPublicGatewayIp(self, "gateway_ip", zone=config.zone, tags=tags)
        self.gateway = gateway.VpcPublicGateway(
            self,
            "gateway",
            name=f"ciel-{config.name}",
            type=config.public_gateway_type,
            zone=config.zone,
            ip_id=self.gateway_ip.id,
            bastion_enabled=config.enable_bastion,
            bastion_port=config.bastion_port if config.enable_bastion else None,
            tags=tags,
        )
        # Masquerade + a pushed default route: instances without public IPs reach the
        # internet (packages, registry) through the gateway and are unreachable from it.
        self.gateway_network = gateway_network.VpcGatewayNetwork(
            self,
            "gateway_network",
            gateway_id=self.gateway.id,
            private_network_id=self.private_network.id,
            enable_masquerade=True,
            ipam_config=[gateway_network.VpcGatewayNetworkIpamConfig(push_default_route=True)],
            zone=config.zone,
        )
