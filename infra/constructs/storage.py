"""Storage layer: the private media bucket, its lifecycle and CORS, and the application's
scoped credentials. With the CDN on, a bucket policy lets anonymous readers (Edge
Services fetches anonymously) read `public/` only; everything else stays private.

A bucket policy locks out every principal it does not name (the organization owner
aside), Terraform's own key included: the policy names the deploying principal (the
stack variable `deployer_principal`, which `ciel` sets) with full control of the bucket,
the app with object access only, and anonymous readers with GetObject on `public/*`.
"""

from __future__ import annotations

from cdktn import Fn, TerraformStack, TerraformVariable, TerraformVariableValidationConfig
from cdktn_provider_random.id import Id
from constructs import Construct

from infra.config import EnvironmentConfig
from infra.constructs.iam import ScopedApplication
from infra.providers import scaleway

PUBLIC_PREFIX = "public/"
OBJECT_PERMISSION_SETS = ["ObjectStorageObjectsRead", "ObjectStorageObjectsWrite", "ObjectStorageObjectsDelete"]
# As bucket policies name principals (ciel/credentials.py checks the same, stricter).
DEPLOYER_PRINCIPAL_FORMAT = "^(user_id|application_id):[0-9a-f-]{36}$"


def deployer_principal_variable(stack: TerraformStack) -> TerraformVariable:
    """The stack variable naming who deploys (TF_VAR_deployer_principal, set by `ciel`)."""
    return TerraformVariable(
        stack, "deployer_principal", type="string", nullable=False, sensitive=False,
        description="Principal of the key that deploys (user_id:<uuid> or application_id:<uuid>), named in bucket "
                    "policies so Terraform keeps access to what it manages; `ciel` sets it.",
        validation=[TerraformVariableValidationConfig(
            condition=f'${{can(regex("{DEPLOYER_PRINCIPAL_FORMAT}", var.deployer_principal))}}',
            error_message="deployer_principal must be user_id:<uuid> or application_id:<uuid>.")],
    )


class Storage(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig, project_id: str,
                 deployer_principal: str) -> None:
        super().__init__(scope, id_)
        self.deployer_principal = deployer_principal
        bucket = scaleway("object_bucket")
        bucket_acl = scaleway("object_bucket_acl")
        tags = config.tags("storage")
        self.region = config.region
        self.endpoint = f"https://s3.{config.region}.scw.cloud"

        # Bucket names are global: a random suffix avoids collisions between projects.
        suffix = Id(self, "suffix", byte_length=3)
        lifecycle = [bucket.ObjectBucketLifecycleRule(
            id="abort-incomplete-uploads", enabled=True, abort_incomplete_multipart_upload_days=7)]
        if config.enable_glacier_transition:
            lifecycle.append(bucket.ObjectBucketLifecycleRule(
                id="to-glacier", enabled=True,
                transition=[bucket.ObjectBucketLifecycleRuleTransition(days=config.glacier_transition_days,
                                                                       storage_class="GLACIER")]))
        cors = [bucket.ObjectBucketCorsRule(
            allowed_origins=config.cors_allowed_origins,
            allowed_methods=["GET", "PUT", "POST", "HEAD"],
            allowed_headers=["*"],
            expose_headers=["ETag"],
            max_age_seconds=3000,
        )] if config.cors_allowed_origins else None
        self.bucket = bucket.ObjectBucket(
            self,
            "media",
            name=f"ciel-{config.name}-media-{suffix.hex}",
            region=config.region,
            lifecycle_rule=lifecycle,
            cors_rule=cors,
            tags=config.tag_map("storage"),
        )
        self.acl = bucket_acl.ObjectBucketAcl(self, "media_acl", bucket=self.bucket.name, region=config.region, acl="private")

        self.app = ScopedApplication(
            self,
            "app_credentials",
            name=f"ciel-{config.name}-media",
            description=f"Ciel {config.name}: media objects",
            project_id=project_id,
            permission_sets=OBJECT_PERMISSION_SETS,
            tags=tags,
        )
        self.policy = None
        self.policy_document: dict | None = None
        if config.enable_cdn:
            self._cdn_read_policy(config)

    def _cdn_read_policy(self, config: EnvironmentConfig) -> None:
        bucket_policy = scaleway("object_bucket_policy")
        name = self.bucket.name
        document = {
            "Version": "2023-04-17",
            "Id": f"ciel-{config.name}-media",
            "Statement": [
                {
                    # Terraform manages the bucket (its ACL, CORS, lifecycle, this policy).
                    "Sid": "DeployerManagesTheBucket",
                    "Effect": "Allow",
                    "Principal": {"SCW": self.deployer_principal},
                    "Action": ["s3:*"],
                    "Resource": [name, f"{name}/*"],
                },
                {
                    # A bucket policy replaces implicit access: the app must be named.
                    "Sid": "AppObjectsReadWrite",
                    "Effect": "Allow",
                    "Principal": {"SCW": f"application_id:{self.app.application.id}"},
                    "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",
                               "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
                    "Resource": [name, f"{name}/*"],
                },
                {
                    "Sid": "CdnReadsPublicPrefixOnly",
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": ["s3:GetObject"],
                    "Resource": [f"{name}/{PUBLIC_PREFIX}*"],
                },
            ],
        }
        self.policy_document = document
        self.policy = bucket_policy.ObjectBucketPolicy(self, "media_policy", bucket=self.bucket.name,
                                                       region=config.region, policy=Fn.jsonencode(document))
