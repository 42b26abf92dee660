"""Secrets layer: Secret Manager entries for everything the app must not read from plain
configuration — PASETO keys, optional admin token, database and Redis URLs, and the
app's S3 and SQS credentials. Instances and pods read them from here.

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

from infra.config import EnvironmentConfig
from infra.providers import scaleway


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
        self.path = f"/ciel/{config.name}"

        values: list[SecretValue] = []
        for key in ("access", "refresh"):
            # At stack level, so the variable keeps its plain name (TF_VAR_paseto_access_key).
            supplied = TerraformVariable(
                TerraformStack.of(self), f"paseto_{key}_key", type="string", default="", sensitive=True,
                description=f"PASETO {key} key (base64 of 32 bytes); empty: generate one")
            generated = Bytes(self, f"paseto_{key}_bytes", length=32)
            values.append(SecretValue(f"paseto-{key}-key", Fn.coalesce([supplied.string_value, generated.base64]),
                                      f"PASETO {key} token key"))
        if config.enable_admin_token:
            token = Password(self, "admin_token", length=48, special=False)
            values.append(SecretValue("admin-token", token.result, "Admin API token"))
        values.extend(extra)

        self.values = {item.name: item.value for item in values}  # tokens, for the machines' configuration
        self.secrets = {}
        for item in values:
            resource_id = "secret_" + item.name.replace("-", "_")
            entry = secret.Secret(self, resource_id, name=item.name, path=self.path, region=config.region,
                                  description=item.description, tags=config.tags("secrets"))
            secret_version.SecretVersion(self, f"{resource_id}_version", secret_id=entry.id, data=item.value,
                                         region=config.region)
            self.secrets[item.name] = entry
