"""`ciel state bootstrap`: the Object Storage bucket that holds Terraform state.

It must exist before the first `init` of a live stack. The official `scaleway` Python SDK
has no Object Storage API (Object Storage speaks the S3 protocol only), so this uses
boto3 against Scaleway's S3 endpoint with the same Scaleway keys.

Idempotent: an existing bucket is kept and only brought to the expected settings
(versioning on, tags, bucket policy). Nothing is ever deleted here.

Least privilege: the bucket holds every secret of the stacks in clear (database
passwords, API keys, PASETO keys in the state), so a bucket policy admits deploying
principals only. Once a bucket has a policy, every principal it does not name loses
access (the organization owner aside): the app's media key, whose ObjectStorageObjects*
permission sets cover every bucket of the project, can no longer read the state.

The policy names the deploying principal of this run (ciel/credentials.py
`deploying_principal`) and keeps every principal an existing policy of the bucket
already names: several operators each bootstrap with their own key, and none locks
another out. Bootstrap only ever adds this run's principal to its own statement
(`DeployersManageTheState`, `s3:*`); every other statement stays as it is. A principal is
never removed here (do that by hand, knowingly); when the policy already gives this run's
principal full control (`s3:*`), nothing is written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ciel import credentials as creds
from foundation.errors import CielError, UsageError
from infra.config import load_environment
from infra.state import RemoteState

TAGS = {"app": "ciel", "purpose": "terraform-state"}
PROJECT_PLACEHOLDER = "<your-project-id>"
PRINCIPAL_PLACEHOLDER = "<deploying principal>"
POLICY_ID = "ciel-terraform-state"
POLICY_STATEMENT = "DeployersManageTheState"


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


def _statement(bucket: str, principals: list[str]) -> dict:
    return {"Sid": POLICY_STATEMENT, "Effect": "Allow", "Principal": {"SCW": sorted(set(principals))},
            "Action": ["s3:*"], "Resource": [bucket, f"{bucket}/*"]}


def state_policy(bucket: str, principals: list[str]) -> dict:
    """The state bucket's policy: these principals (and the organization owner) only."""
    return {"Version": "2023-04-17", "Id": POLICY_ID, "Statement": [_statement(bucket, principals)]}


def _statements(policy: dict) -> list:
    statements = policy.get("Statement") or []
    return statements if isinstance(statements, list) else [statements]


def _named(statement: dict) -> list[str]:
    """The SCW principals a statement names (one, or a list)."""
    principal = statement.get("Principal")
    named = principal.get("SCW") if isinstance(principal, dict) else None
    return [named] if isinstance(named, str) else [item for item in named or [] if isinstance(item, str)]


def managing_principals(policy: dict) -> set[str]:
    """The SCW principals that a bucket policy allows everything (`s3:*`)."""
    found: set[str] = set()
    for statement in _statements(policy):
        if isinstance(statement, dict) and statement.get("Effect") == "Allow":
            actions = statement.get("Action")
            if "s3:*" in ([actions] if isinstance(actions, str) else actions or []):
                found.update(_named(statement))
    return found


def admitting(policy: dict | None, bucket: str, principal: str) -> dict:
    """`policy` (None: none yet) with `principal` added to ciel's statement. Nothing is
    removed: the principals of ciel's statement and every other statement are kept."""
    if policy is None:
        return state_policy(bucket, [principal])
    statements = list(_statements(policy))
    ours = next((i for i, st in enumerate(statements) if isinstance(st, dict) and st.get("Sid") == POLICY_STATEMENT),
                None)
    if ours is None:
        statements.append(_statement(bucket, [principal]))
    else:
        statements[ours] = {**statements[ours], "Principal": {"SCW": sorted({*_named(statements[ours]), principal})}}
    return {"Version": "2023-04-17", "Id": POLICY_ID, **policy, "Statement": statements}


def planned_calls(remote: RemoteState, principal: str = PRINCIPAL_PLACEHOLDER) -> list[Call]:
    bucket = remote.bucket
    return [
        Call("head_bucket", {"Bucket": bucket}),
        Call("create_bucket", {"Bucket": bucket, "ACL": "private",
                               "CreateBucketConfiguration": {"LocationConstraint": remote.region}}),
        Call("put_bucket_versioning", {"Bucket": bucket, "VersioningConfiguration": {"Status": "Enabled"}}),
        Call("get_bucket_policy", {"Bucket": bucket}),
        Call("put_bucket_policy", {"Bucket": bucket, "Policy": json.dumps(state_policy(bucket, [principal]))}),
        Call("put_bucket_tagging", {"Bucket": bucket, "Tagging": {"TagSet": [{"Key": k, "Value": v} for k, v in TAGS.items()]}}),
    ]


DRY_RUN_NOTES = {
    "create_bucket": "only if head_bucket says 404",
    "put_bucket_policy": "only if the policy does not give this principal s3:* yet; principals it names are kept",
}


def _ensure_policy(client, bucket: str, principal: str) -> str:
    """Admit `principal` to the bucket, keeping whoever the policy already admits."""
    from botocore.exceptions import ClientError

    try:
        text = client.get_bucket_policy(Bucket=bucket)["Policy"]
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NoSuchBucketPolicy":
            raise
        text = None
    try:
        existing = json.loads(text) if text else None
        if existing is not None and not isinstance(existing, dict):
            raise ValueError("not an object")
    except ValueError:
        raise CielError(f"the bucket policy of {bucket} is not a JSON object: left as it is (fix or delete it, then "
                        "bootstrap again)") from None
    admitted = managing_principals(existing) if existing else set()
    if principal in admitted:
        return f"bucket policy already admits {principal}"
    client.put_bucket_policy(Bucket=bucket, Policy=json.dumps(admitting(existing, bucket, principal)))
    kept = f" (kept: {', '.join(sorted(admitted))})" if admitted else ""
    return f"bucket policy: deploying principals only, {principal} admitted{kept}"


def bootstrap(env: str, *, dry_run: bool = False) -> tuple[RemoteState, list[str]]:
    """Ensure the state bucket exists, private, versioned and closed to all but the deploying
    principals. Returns what was done."""
    config = load_environment(env)
    found = creds.detect()
    if not found.live and not dry_run:
        raise UsageError("state bootstrap needs Scaleway credentials (SCW_ACCESS_KEY, SCW_SECRET_KEY, "
                         "SCW_DEFAULT_PROJECT_ID); offline runs use a local state and need no bucket. "
                         "--dry-run shows the calls without them")
    # A dry run without credentials shows the calls with the project left as a placeholder.
    remote = RemoteState.for_project(found.project_id if found.live else PROJECT_PLACEHOLDER, config.region)
    # Live, even a dry run asks IAM whose key this is (a read): the policy shown is the real one.
    principal = creds.deploying_principal(found) if found.live else PRINCIPAL_PLACEHOLDER
    calls = {call.operation: call for call in planned_calls(remote, principal)}
    if dry_run:
        return remote, [f"would call {call}" + (f" ({DRY_RUN_NOTES[name]})" if name in DRY_RUN_NOTES else "")
                        for name, call in calls.items()]

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
            client.create_bucket(**calls["create_bucket"].arguments)
            done.append(f"bucket {remote.bucket} created (private)")
        status = client.get_bucket_versioning(Bucket=remote.bucket).get("Status")
        if status != "Enabled":
            client.put_bucket_versioning(Bucket=remote.bucket, VersioningConfiguration={"Status": "Enabled"})
            done.append("versioning enabled (every state write is kept)")
        else:
            done.append("versioning already enabled")
        done.append(_ensure_policy(client, remote.bucket, principal))
        client.put_bucket_tagging(Bucket=remote.bucket, Tagging=calls["put_bucket_tagging"].arguments["Tagging"])
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
