"""The environment's core stack: shared layers and the phase-1 compute.

One stack per environment holds what both phases share (network, and in later layers
the load balancer and data stores) so that phase changes never move state between
stacks.
"""

from __future__ import annotations

from pathlib import Path

from cdktn import LocalBackend, TerraformStack
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs.networking import Networking
from infra.providers import scaleway


def core_stack_name(env: str) -> str:
    return f"ciel-{env}-core"


class CoreStack(TerraformStack):
    def __init__(self, scope: Construct, *, config: EnvironmentConfig, state_file: Path) -> None:
        super().__init__(scope, core_stack_name(config.name))
        # Credentials reach the provider through SCW_* environment variables only.
        scaleway("provider").ScalewayProvider(self, "scaleway", region=config.region, zone=config.zone)
        LocalBackend(self, path=str(state_file))
        self.networking = Networking(self, "networking", config=config)
