"""Where Terraform state lives.

Live: Scaleway Object Storage through the S3 backend, one bucket per project, one key per
environment and stack, locked with a lock file (`use_lockfile`, S3 conditional writes).
The bucket must exist before the first `init`: `ciel state bootstrap --env ENV` creates
it. Offline: a throw-away local file, never the live state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from foundation import paths


@dataclass(frozen=True)
class RemoteState:
    bucket: str
    region: str
    endpoint: str

    @classmethod
    def for_project(cls, project_id: str, region: str) -> "RemoteState":
        # Bucket names are global; the project ID makes this one ours. CIEL_S3_ENDPOINT
        # points at another S3-compatible server (the tests run a local one).
        endpoint = os.environ.get("CIEL_S3_ENDPOINT") or f"https://s3.{region}.scw.cloud"
        return cls(bucket=f"ciel-tfstate-{project_id}", region=region, endpoint=endpoint)


def state_key(env: str, stack: str) -> str:
    return f"{env}/{stack}.tfstate"


def offline_state_file(env: str, stack: str) -> Path:
    return paths.work_dir() / "offline-state" / env / f"{stack}.tfstate"
