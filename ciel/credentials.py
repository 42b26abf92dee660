"""Scaleway credentials: found (live mode) or absent (offline mode, with placeholders).

Credentials come from the environment (SCW_ACCESS_KEY, SCW_SECRET_KEY,
SCW_DEFAULT_PROJECT_ID) or the Scaleway CLI config file, read through the official SDK.
They reach the engine as environment variables only: never on a command line, in a
file we write, or in output.

Offline mode passes well-formed placeholders: the provider checks formats when it is
configured but makes no API call for resources that do not exist yet.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

from scaleway import Profile

from foundation.errors import UsageError

ACCESS_KEY_FORMAT = re.compile(r"^SCW[A-Z0-9]{17}$")
UUID_FORMAT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")

# Valid formats, obviously fake values. SCW_CONFIG_PATH points nowhere so a user's
# real CLI profile can never leak into an offline run.
OFFLINE_PLACEHOLDERS = {
    "SCW_ACCESS_KEY": "SCWOFFLINEPLACEHOLD0",
    "SCW_SECRET_KEY": "00000000-0000-4000-8000-000000000000",
    "SCW_DEFAULT_PROJECT_ID": "00000000-0000-4000-8000-000000000001",
    "SCW_DEFAULT_ORGANIZATION_ID": "00000000-0000-4000-8000-000000000001",
    "SCW_CONFIG_PATH": "/nonexistent/ciel-offline/config.yaml",
}

REQUIRED = {
    "access_key": "SCW_ACCESS_KEY",
    "secret_key": "SCW_SECRET_KEY",
    "default_project_id": "SCW_DEFAULT_PROJECT_ID",
}


@dataclass(frozen=True)
class Credentials:
    live: bool
    source: str  # human description, never a secret
    engine_env: dict[str, str] = field(repr=False)  # passed to the engine; holds the secret key
    access_key_hint: str = ""  # e.g. "SCWAB…XYZ", safe to print

    @property
    def mode(self) -> str:
        return "live" if self.live else "offline"

    @property
    def project_id(self) -> str:
        return self.engine_env["SCW_DEFAULT_PROJECT_ID"]

    def sdk_client(self, *, zone: str, region: str):
        """An official SDK client with these keys (placeholders offline: fine for public
        endpoints such as the product catalog). SCW_API_URL redirects it, e.g. to a fake."""
        from scaleway import Client

        keys = self.engine_env
        return Client(access_key=keys["SCW_ACCESS_KEY"], secret_key=keys["SCW_SECRET_KEY"],
                      default_project_id=keys["SCW_DEFAULT_PROJECT_ID"], default_zone=zone, default_region=region,
                      api_url=os.environ.get("SCW_API_URL", "https://api.scaleway.com"))

    def engine_environment(self) -> dict[str, str]:
        """Everything the engine needs: provider credentials, the project variable and,
        live, the same keys for the S3 state backend (Object Storage speaks S3)."""
        env = dict(self.engine_env)
        env["TF_VAR_project_id"] = self.project_id
        if self.live:
            env["AWS_ACCESS_KEY_ID"] = self.engine_env["SCW_ACCESS_KEY"]
            env["AWS_SECRET_ACCESS_KEY"] = self.engine_env["SCW_SECRET_KEY"]
        return env


def offline(reason: str = "no Scaleway credentials found") -> Credentials:
    return Credentials(live=False, source=reason, engine_env=dict(OFFLINE_PLACEHOLDERS))


def _load_profile() -> Profile:
    sdk_logger = logging.getLogger("scaleway")
    previous = sdk_logger.level
    sdk_logger.setLevel(logging.ERROR)  # a missing CLI config file is normal, not a warning
    try:
        return Profile.from_config_file_and_env()
    finally:
        sdk_logger.setLevel(previous)


def detect(force_offline: bool = False) -> Credentials:
    """Live credentials if complete and well-formed; offline if none at all; else an error."""
    if force_offline:
        return offline("--offline given")
    profile = _load_profile()
    present = {attr: getattr(profile, attr, None) for attr in REQUIRED}
    if not any(present.values()):
        return offline()
    missing = [REQUIRED[attr] for attr, value in present.items() if not value]
    if missing:
        raise UsageError(
            f"incomplete Scaleway credentials: {', '.join(missing)} missing. Set them (or `scw init`), "
            "or unset them all to plan offline"
        )
    problems = []
    if not ACCESS_KEY_FORMAT.match(present["access_key"]):
        problems.append("SCW_ACCESS_KEY must look like SCW followed by 17 capital letters or digits")
    if not UUID_FORMAT.match(present["secret_key"]):
        problems.append("SCW_SECRET_KEY must be a UUID")
    if not UUID_FORMAT.match(present["default_project_id"]):
        problems.append("SCW_DEFAULT_PROJECT_ID must be a UUID")
    if problems:
        raise UsageError("malformed Scaleway credentials: " + "; ".join(problems))
    env = {REQUIRED[attr]: value for attr, value in present.items()}
    if profile.default_organization_id:
        env["SCW_DEFAULT_ORGANIZATION_ID"] = profile.default_organization_id
    access_key = present["access_key"]
    return Credentials(live=True, source="environment / Scaleway CLI profile", engine_env=env,
                       access_key_hint=f"{access_key[:5]}…{access_key[-3:]}")
