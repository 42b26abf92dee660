"""Where Terraform state lives.

Live: Scaleway Object Storage through the S3 backend, one bucket per project, one key per
environment and stack, locked with a lock file (`use_lockfile`, S3 conditional writes).
The bucket must exist before the first `init`: `ciel state bootstrap --env ENV` creates
it. Offline: a throw-away local file, never the live state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ciel import paths


@dataclass(frozen=True)
class RemoteState:
    bucket: str
    region: str

    @property
    def endpoint(self) -> str:
        return f"https://s3.{self.region}.scw.cloud"

    @classmethod
    def for_project(cls, project_id: str, region: str) -> "RemoteState":
        # Bucket names are global; the project ID makes this one ours.
        return cls(bucket=f"ciel-tfstate-{project_id}", region=region)


def state_key(env: str, stack: str) -> str:
    return f"{env}/{stack}.tfstate"


def offline_state_file(env: str, stack: str) -> Path:
    return paths.WORK_DIR / "offline-state" / env / f"{stack}.tfstate"
