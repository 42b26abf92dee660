"""Secrets layer: Secret Manager entries for everything the app must not read from plain
configuration — PASETO keys, optional admin token, database and Redis URLs, the app's
S3 and SQS credentials, the registry pull key and the Cockpit push token. Instances read
them at every start of the app (infra/cloudinit/fetch_secrets.py) with the key of a
reader application that may only access secret versions (SecretManagerSecretAccess) of
this project: Scaleway IAM scopes a rule to a project, not to a secret or a path, which is
why an environment owns its project alone (ciel/project_owner.py).

Rotation (`ciel secrets rotate`): a generated secret's rotation count
(`secret_rotations` in the environment's configuration) is a keeper of its random
value, so a higher count generates a new value; the new version is created before the
old one is destroyed, so the newest enabled version always exists.

PASETO keys are 32 random bytes, base64-encoded, generated unless supplied through the
sensitive variables `paseto_access_key` / `paseto_refresh_key` (e.g. to keep existing
sessions valid when importing an environment).
"""

from __future__ import annotations

from dataclasses import dataclass

from cdktn import Fn, TerraformStack, TerraformVariable
from cdktn_provider_random.bytes import Bytes
from cdktn_provider_random.password import Password
from constructs import Construct

from infra.cloudinit.secrets import SecretSource
from infra.config import EnvironmentConfig
from infra.contract import MIGRATION_REQUEST_SECRET
from infra.constructs.iam import ScopedApplication
from infra.providers import scaleway

READER_PERMISSION_SETS = ["SecretManagerSecretAccess"]


@dataclass(frozen=True)
class SecretValue:
    name: str  # the secret's name in Secret Manager
    value: str  # a Terraform token; never a literal
    description: str


class Secrets(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, extra: list[SecretValue]) -> None:
        super().__init__(scope, id_)
        secret = scaleway("secret")
        secret_version = scaleway("secret_version")
        self.path = secrets_path(config)

        def keepers(name: str) -> dict[str, str] | None:
            # None until the first rotation: adding a keeper replaces the value.
            generation = config.secret_rotations.get(name, 0)
            return {"rotation": str(generation)} if generation else None

        values: list[SecretValue] = []
        for key in ("access", "refresh"):
            # At stack level, so the variable keeps its plain name (TF_VAR_paseto_access_key).
            supplied = TerraformVariable(
                TerraformStack.of(self), f"paseto_{key}_key", type="string", default="", sensitive=True,
                description=f"PASETO {key} key (base64 of 32 bytes); empty: generate one")
            generated = Bytes(self, f"paseto_{key}_bytes", length=32, keepers=keepers(f"paseto-{key}-key"))
            values.append(SecretValue(f"paseto-{key}-key", Fn.coalesce([supplied.string_value, generated.base64]),
                                      f"PASETO {key} token key"))
        if config.enable_admin_token:
            token = Password(self, "admin_token", length=48, special=False, keepers=keepers("admin-token"))
            values.append(SecretValue("admin-token", token.result, "Admin API token"))
        values.extend(extra)

        self.values = {item.name: item.value for item in values}  # tokens, for the machines' configuration
        self.secrets = {}
        self.versions = []  # what a machine needs before it boots
        for item in values:
            resource_id = "secret_" + item.name.replace("-", "_")
            entry = secret.Secret(self, resource_id, name=item.name, path=self.path, region=config.region,
                                  description=item.description, tags=config.tags("secrets"))
            version = secret_version.SecretVersion(self, f"{resource_id}_version", secret_id=entry.id, data=item.value,
                                                   region=config.region)
            # A new value (a rotation) replaces the version: the new one first, so a machine
            # starting meanwhile still finds an enabled version.
            version.add_override("lifecycle.create_before_destroy", True)
            self.secrets[item.name] = entry
            self.versions.append(version)
        # `ciel db migrate` adds its requests as versions (read by infra/cloudinit/run_migration.py):
        # Terraform owns the secret, never its versions.
        self.migration_requests = secret.Secret(
            self, "secret_migration_request", name=MIGRATION_REQUEST_SECRET, path=self.path, region=config.region,
            description="Requests of `ciel db migrate`: the newest version names the image and the API machine "
                        "that runs it", tags=config.tags("secrets"))



def secrets_path(config: EnvironmentConfig) -> str:
    return f"/ciel/{config.name}"


class SecretReader(Construct):
    """The machines' one credential: an application that may only access secret versions."""

    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, project_id: str) -> None:
        super().__init__(scope, id_)
        self.application = ScopedApplication(
            self, "application", name=f"ciel-{config.name}-secrets-reader",
            description=f"Ciel {config.name}: machines read secret versions",
            project_id=project_id, permission_sets=READER_PERMISSION_SETS, tags=config.tags("secrets"))
        self.source = SecretSource(region=config.region, project_id=project_id, path=secrets_path(config),
                                   reader_key=self.application.api_key.secret_key)
