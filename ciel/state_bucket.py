"""`ciel state bootstrap`: the Object Storage bucket that holds Terraform state.

It must exist before the first `init` of a live stack. The official `scaleway` Python SDK
has no Object Storage API (Object Storage speaks the S3 protocol only), so this uses
boto3 against Scaleway's S3 endpoint with the same Scaleway keys.

Idempotent: an existing bucket is kept and only brought to the expected settings
(versioning on, tags). Nothing is ever deleted here.
"""

from __future__ import annotations

from dataclasses import dataclass

from ciel import credentials as creds
from foundation.errors import CielError, UsageError
from infra.config import load_environment
from infra.state import RemoteState

TAGS = {"app": "ciel", "purpose": "terraform-state"}
PROJECT_PLACEHOLDER = "<your-project-id>"


@dataclass(frozen=True)
class Call:
    """One S3 API call, for the dry run and the report."""

    operation: str
    arguments: dict

    def __str__(self) -> str:
        args = ", ".join(f"{key}={value!r}" for key, value in self.arguments.items())
        return f"s3.{self.operation}({args})"


def s3_client(remote: RemoteState, found: creds.Credentials, *, attempts: int = 5):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=remote.endpoint,
        region_name=remote.region,
        aws_access_key_id=found.engine_env["SCW_ACCESS_KEY"],
        aws_secret_access_key=found.engine_env["SCW_SECRET_KEY"],
        config=Config(s3={"addressing_style": "path"}, retries={"mode": "standard", "max_attempts": attempts},
                      connect_timeout=10, read_timeout=30),
    )


def planned_calls(remote: RemoteState) -> list[Call]:
    bucket = remote.bucket
    return [
        Call("head_bucket", {"Bucket": bucket}),
        Call("create_bucket", {"Bucket": bucket, "ACL": "private",
                               "CreateBucketConfiguration": {"LocationConstraint": remote.region}}),
        Call("put_bucket_versioning", {"Bucket": bucket, "VersioningConfiguration": {"Status": "Enabled"}}),
        Call("put_bucket_tagging", {"Bucket": bucket, "Tagging": {"TagSet": [{"Key": k, "Value": v} for k, v in TAGS.items()]}}),
    ]


def bootstrap(env: str, *, dry_run: bool = False) -> tuple[RemoteState, list[str]]:
    """Ensure the state bucket exists, private and versioned. Returns what was done."""
    config = load_environment(env)
    found = creds.detect()
    if not found.live and not dry_run:
        raise UsageError("state bootstrap needs Scaleway credentials (SCW_ACCESS_KEY, SCW_SECRET_KEY, "
                         "SCW_DEFAULT_PROJECT_ID); offline runs use a local state and need no bucket. "
                         "--dry-run shows the calls without them")
    # A dry run without credentials shows the calls with the project left as a placeholder.
    remote = RemoteState.for_project(found.project_id if found.live else PROJECT_PLACEHOLDER, config.region)
    calls = planned_calls(remote)
    if dry_run:
        return remote, [f"would call {call} (create_bucket only if head_bucket says 404)" if call.operation == "create_bucket"
                        else f"would call {call}" for call in calls]

    from botocore.exceptions import ClientError

    client = s3_client(remote, found)
    done: list[str] = []
    try:
        try:
            client.head_bucket(Bucket=remote.bucket)
            done.append(f"bucket {remote.bucket} exists: kept")
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 403:
                raise CielError(f"bucket {remote.bucket} exists but these credentials cannot access it "
                                "(another project owns the name?)") from None
            if status != 404:
                raise
            client.create_bucket(**calls[1].arguments)
            done.append(f"bucket {remote.bucket} created (private)")
        status = client.get_bucket_versioning(Bucket=remote.bucket).get("Status")
        if status != "Enabled":
            client.put_bucket_versioning(Bucket=remote.bucket, VersioningConfiguration={"Status": "Enabled"})
            done.append("versioning enabled (every state write is kept)")
        else:
            done.append("versioning already enabled")
        client.put_bucket_tagging(Bucket=remote.bucket, Tagging=calls[3].arguments["Tagging"])
        done.append("tags set: " + ", ".join(f"{k}={v}" for k, v in TAGS.items()))
    except ClientError as error:
        raise CielError(f"Object Storage refused {error.operation_name} on {remote.bucket}: "
                        f"{error.response.get('Error', {}).get('Message', error)}") from None
    return remote, done


def exists(remote: RemoteState, found: creds.Credentials) -> bool:
    """Whether the state bucket is there (checked before a live init, for a clear message)."""
    from botocore.exceptions import ClientError

    try:
        s3_client(remote, found, attempts=3).head_bucket(Bucket=remote.bucket)
        return True
    except ClientError:
        return False


def cutover_store(env: str, found: creds.Credentials | None = None):
    """Where ENV's cutover record and lock live: beside its Terraform state in Object Storage
    when live (every operator sees them), the checkout's .ciel/cutover/ when offline."""
    from migrate.store import CutoverStore, SharedCutoverStore

    found = found or creds.detect()
    if not found.live:
        return CutoverStore(env)
    remote = RemoteState.for_project(found.project_id, load_environment(env).region)
    return SharedCutoverStore(env, s3_client(remote, found), remote.bucket)
