"""What a machine needs to read its secrets at start: the reader key, the description of
what to fetch (/etc/ciel/secrets.json: names and places, no value) and the fetcher
itself (fetch_secrets.py, installed as /usr/local/sbin/ciel-secrets).

Shared by every machine we boot (the app's and the self-managed Redis), so that the one
secret in any user data is the Secret Manager reader key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SECRETS_CONFIG = "/etc/ciel/secrets.json"
READER_KEY_FILE = "/etc/ciel/secrets-reader-key"
FETCH_SECRETS = "/usr/local/sbin/ciel-secrets"
FETCH_SECRETS_SOURCE = Path(__file__).with_name("fetch_secrets.py")
SCALEWAY_API = "https://api.scaleway.com"


@dataclass(frozen=True)
class SecretSource:
    """Where a machine reads its secrets: a Secret Manager folder, with a reader key."""

    region: str
    project_id: str  # may be a token
    path: str  # /ciel/<env>
    reader_key: str  # a token: the secret key of the reader application's API key


@dataclass(frozen=True)
class SecretFile:
    """A file written from one secret: `prefix` + the value + a newline."""

    path: str
    secret: str
    mode: str = "0600"
    group: str | None = None  # owner stays root; this group may read it (mode 0640)
    prefix: str = ""


def embedded_script(source: Path) -> str:
    """A script's text, as user data (which Terraform interpolates) may embed it."""
    text = source.read_text()
    # Terraform would read these as interpolations or directives in the user data.
    if "${" in text or "%{" in text:
        raise ValueError(f"{source} must not contain '${{' or '%{{'")
    return text


def fetch_secrets_script() -> str:
    return embedded_script(FETCH_SECRETS_SOURCE)


def secrets_config(source: SecretSource, *, unit: str, files: list[SecretFile], env_file: str | None = None,
                   settings: dict[str, str] | None = None, env_secrets: dict[str, str] | None = None) -> dict:
    """/etc/ciel/secrets.json: what `ciel-secrets` asks for and where it writes it."""
    config: dict = {"api_url": SCALEWAY_API, "region": source.region, "project_id": source.project_id,
                    "path": source.path, "token_file": READER_KEY_FILE, "unit": unit,
                    "files": [{key: value for key, value in vars(item).items() if value not in (None, "")}
                              for item in files]}
    if env_file:
        config.update(env_file=env_file, settings=dict(sorted((settings or {}).items())),
                      env_secrets=dict(sorted((env_secrets or {}).items())))
    return config


def secrets_write_files(source: SecretSource, config: dict) -> list[dict]:
    """cloud-init write_files entries: the reader key, the configuration, the fetcher."""
    return [
        {"path": READER_KEY_FILE, "owner": "root:root", "permissions": "0600", "content": source.reader_key + "\n"},
        {"path": SECRETS_CONFIG, "owner": "root:root", "permissions": "0600",
         "content": json.dumps(config, indent=1) + "\n"},
        {"path": FETCH_SECRETS, "owner": "root:root", "permissions": "0755", "content": fetch_secrets_script()},
    ]
