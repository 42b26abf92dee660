"""Scaleway credentials: found (live mode) or absent (offline mode, with placeholders).

Credentials come from the environment (SCW_ACCESS_KEY, SCW_SECRET_KEY,
SCW_DEFAULT_PROJECT_ID) or the Scaleway CLI config file, read through the official SDK.
They reach the engine as environment variables only: never on a command line, in a
file we write, or in output.

Offline mode passes well-formed placeholders: the provider checks formats when it is
configured but makes no API call for resources that do not exist yet.

The deploying principal (`user_id:<uuid>` or `application_id:<uuid>`, whose key this is)
is named in bucket policies, which lock out every principal they do not name: IAM says
it (`get_api_key`, which needs IAMReadOnly), or CIEL_DEPLOYER_PRINCIPAL gives it.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

from scaleway import Profile

from foundation.errors import CielError, UsageError, shown

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

# Who deploys, as bucket policies name principals. Offline: a fixed, obviously fake one.
DEPLOYER_PRINCIPAL_VARIABLE = "CIEL_DEPLOYER_PRINCIPAL"
PRINCIPAL_FORMAT = re.compile(r"^(user_id|application_id):" + UUID_FORMAT.pattern.strip("^$") + "$")
OFFLINE_PRINCIPAL = "application_id:00000000-0000-4000-8000-000000000002"

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
        live, the same keys for the S3 state backend (Object Storage speaks S3), and the
        deploying principal that the bucket policies name."""
        env = dict(self.engine_env)
        env["TF_VAR_project_id"] = self.project_id
        env["TF_VAR_deployer_principal"] = deploying_principal(self)
        if self.live:
            env["AWS_ACCESS_KEY_ID"] = self.engine_env["SCW_ACCESS_KEY"]
            env["AWS_SECRET_ACCESS_KEY"] = self.engine_env["SCW_SECRET_KEY"]
        return env


# Asked once per process and key (every stack's engine run needs it).
_PRINCIPALS: dict[tuple[str, str], str] = {}


def deploying_principal(credentials: Credentials) -> str:
    """`user_id:<uuid>` or `application_id:<uuid>`: whose key `credentials` hold.

    CIEL_DEPLOYER_PRINCIPAL, when set, is used as is (no call; a malformed value is
    refused). Offline: OFFLINE_PRINCIPAL. Live: IAM's answer for the access key."""
    given = os.environ.get(DEPLOYER_PRINCIPAL_VARIABLE, "").strip()
    if given:
        if not PRINCIPAL_FORMAT.match(given):
            raise UsageError(f"{DEPLOYER_PRINCIPAL_VARIABLE}={shown(given)} is not a principal: give "
                             "user_id:<uuid> or application_id:<uuid> (the UUID in lowercase), or unset it "
                             "to ask IAM")
        return given
    if not credentials.live:
        return OFFLINE_PRINCIPAL
    cache_key = (credentials.engine_env["SCW_ACCESS_KEY"], os.environ.get("SCW_API_URL", ""))
    if cache_key not in _PRINCIPALS:
        _PRINCIPALS[cache_key] = _principal_from_iam(credentials)
    return _PRINCIPALS[cache_key]


def _principal_from_iam(credentials: Credentials) -> str:
    import requests
    from scaleway.iam.v1alpha1 import IamV1Alpha1API

    from migrate.resilience import ApiError, RetryPolicy, call

    access_key = credentials.engine_env["SCW_ACCESS_KEY"]
    how_to = (f"The key needs the IAMReadOnly permission set (to read its own API key), or name the principal "
              f"yourself: {DEPLOYER_PRINCIPAL_VARIABLE}=user_id:<uuid> (or application_id:<uuid>)")
    iam = IamV1Alpha1API(credentials.sdk_client(zone="fr-par-1", region="fr-par"))  # IAM is global
    try:
        key = call("IAM get_api_key", lambda: iam.get_api_key(access_key=access_key),
                   RetryPolicy(attempts=3, first_delay=1.0, timeout=20.0), log=lambda line: None)
    except (ApiError, OSError, requests.RequestException) as error:
        raise CielError(f"IAM did not say whose key {credentials.access_key_hint or 'this'} is ({error}). "
                        f"{how_to}") from None
    if key.user_id:
        return f"user_id:{key.user_id}"
    if key.application_id:
        return f"application_id:{key.application_id}"
    raise CielError(f"IAM says key {credentials.access_key_hint} belongs to neither a user nor an application. {how_to}")


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
