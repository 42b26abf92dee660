"""Compute layer (phase 1): the API and worker instances that run the Ciel image.

Private network only (no public IPs: egress through the gateway); the LB reaches the API
on 8080 over the private network. Each instance's address is a reserved IPAM IP, so the
LB backend lists the addresses themselves, not positions in a list of servers. The API
instances share a placement group that spreads them over hypervisors.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktn import DataResource
from constructs import Construct

from infra.cloudinit.app import API_PORT, AppMachine, app_user_data
from infra.cloudinit.secrets import SecretSource
from infra.config import EnvironmentConfig
from infra.constructs.networking import Networking
from infra.providers import scaleway

DEBIAN_IMAGE = "debian_bookworm"


@dataclass(frozen=True)
class ImageSource:
    registry_host: str
    image: str
    pull_secret: str  # name of the secret holding the registry pull key


@dataclass(frozen=True)
class LogShipping:
    push_url: str
    token_secret: str  # name of the secret holding the push token


class Compute(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, network: Networking,
                 image: ImageSource, settings: dict[str, str], secret_env: dict[str, str], secrets: SecretSource,
                 secrets_ready: list, logs: LogShipping | None) -> None:
        super().__init__(scope, id_)
        self._secrets_ready = secrets_ready  # a machine reads its secrets as it boots
        self._config = config
        self._network = network
        self._modules = {name: scaleway(name) for name in (
            "instance_server", "instance_security_group", "instance_private_nic", "ipam_ip", "instance_placement_group")}

        def machine(role: str, stop_timeout: int) -> AppMachine:
            return AppMachine(role=role, environment=config.name, registry_host=image.registry_host, image=image.image,
                              settings=settings, secret_env=secret_env, secrets=secrets,
                              registry_password_secret=image.pull_secret, stop_timeout_seconds=stop_timeout,
                              logs_push_url=logs.push_url if logs else None,
                              logs_token_secret=logs.token_secret if logs else None)

        self.api_machine = machine("api", config.api_stop_timeout_seconds)
        self.worker_machine = machine("worker", config.worker_stop_timeout_seconds)

        group = self._modules["instance_placement_group"]
        self.placement_group = group.InstancePlacementGroup(
            self, "api_placement", name=f"ciel-{config.name}-api", zone=config.zone,
            policy_type="max_availability", tags=config.tags("compute"))
        self.api_security_group = self._security_group("api", inbound_ports=[API_PORT])
        self.worker_security_group = self._security_group("worker", inbound_ports=[])

        self.api_addresses = []
        self.api_servers = []
        for index in range(config.api_instance_count):
            server, address = self._instance("api", index, config.api_instance_type, self.api_security_group,
                                             app_user_data(self.api_machine), placement_group=self.placement_group)
            self.api_servers.append(server)
            self.api_addresses.append(address)
        self.worker_servers = []
        for index in range(config.worker_instance_count):
            server, _ = self._instance("worker", index, config.worker_instance_type, self.worker_security_group,
                                       app_user_data(self.worker_machine))
            self.worker_servers.append(server)

    def _security_group(self, role: str, *, inbound_ports: list[int]):
        config = self._config
        module = self._modules["instance_security_group"]
        ports = list(inbound_ports) + ([22] if config.enable_bastion else [])  # SSH only via the bastion
        return module.InstanceSecurityGroup(
            self, f"{role}_security_group", name=f"ciel-{config.name}-{role}", zone=config.zone,
            inbound_default_policy="drop", outbound_default_policy="accept", stateful=True,
            inbound_rule=[module.InstanceSecurityGroupInboundRule(action="accept", protocol="TCP", port=port,
                                                                  ip_range=config.private_network_cidr)
                          for port in ports] or None,
            tags=config.tags("compute"))

    def _instance(self, role: str, index: int, instance_type: str, security_group, user_data: str,
                  placement_group=None):
        config = self._config
        tags = [*config.tags("compute"), f"role={role}"]
        ipam_ip = self._modules["ipam_ip"]
        address = ipam_ip.IpamIp(
            self, f"{role}_{index}_address", region=config.region, tags=tags,
            source=[ipam_ip.IpamIpSource(private_network_id=self._network.private_network.id)])
        # Cloud-init runs once per instance, and the provider updates user data in place:
        # a changed image tag or setting must replace the machine to take effect.
        # The reserved address outlives the machine, so the LB backend never changes.
        boot_config = DataResource(self, f"{role}_{index}_boot_config", input={"cloud_init": user_data})
        server = self._modules["instance_server"].InstanceServer(
            self, f"{role}_{index}", name=f"ciel-{config.name}-{role}-{index}", type=instance_type,
            image=DEBIAN_IMAGE, zone=config.zone, security_group_id=security_group.id,
            placement_group_id=placement_group.id if placement_group else None,
            enable_dynamic_ip=False, user_data={"cloud-init": user_data}, tags=tags, depends_on=self._secrets_ready)
        # A bare reference: cdktn 0.24 renders lifecycle references as "${...}", which the
        # engines reject inside replace_triggered_by.
        server.add_override("lifecycle.replace_triggered_by", [f"{boot_config.terraform_resource_type}."
                                                               f"{boot_config.friendly_unique_id}"])
        self._modules["instance_private_nic"].InstancePrivateNic(
            self, f"{role}_{index}_nic", server_id=server.id, private_network_id=self._network.private_network.id,
            ipam_ip_ids=[address.id], zone=config.zone)
        return server, address
