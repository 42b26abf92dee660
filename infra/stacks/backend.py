"""Attaching the state backend chosen in infra/state.py to a stack."""

from __future__ import annotations

from cdktn import LocalBackend, S3Backend, TerraformStack

from infra.state import RemoteState, offline_state_file, state_key


def configure_backend(stack: TerraformStack, *, env: str, stack_name: str, remote: RemoteState | None) -> None:
    if remote is None:
        LocalBackend(stack, path=str(offline_state_file(env, stack_name)))
        return
    S3Backend(
        stack,
        bucket=remote.bucket,
        key=state_key(env, stack_name),
        region=remote.region,
        endpoints={"s3": remote.endpoint},
        use_path_style=True,
        use_lockfile=True,
        # Not AWS: no STS, no account ID, no EC2 metadata, no AWS region list.
        skip_credentials_validation=True,
        skip_region_validation=True,
        skip_requesting_account_id=True,
        skip_metadata_api_check=True,
        skip_s3_checksum=True,
    )
