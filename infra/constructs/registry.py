"""Registry layer: the private Container Registry namespace holding the Ciel image, and a
read-only pull credential for the machines that run it."""

from __future__ import annotations

from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs.iam import ScopedApplication
from infra.providers import scaleway


class Registry(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, project_id: str) -> None:
        super().__init__(scope, id_)
        namespace = scaleway("registry_namespace")
        self.namespace = namespace.RegistryNamespace(
            self,
            "namespace",
            name=f"ciel-{config.name}",
            description=f"Ciel images ({config.name})",
            region=config.region,
            is_public=False,
        )
        self.puller = ScopedApplication(
            self,
            "pull_credentials",
            name=f"ciel-{config.name}-registry-pull",
            description=f"Ciel {config.name}: pull images",
            project_id=project_id,
            permission_sets=["ContainerRegistryReadOnly"],
            tags=config.tags("registry"),
        )
