"""The application's environment-variable contract, and where each value comes from.

Both phases inject exactly these variables (instances through their service unit, pods
through a ConfigMap and Secrets). One addition to the original plan's table:
QUEUE_ACCESS_KEY_ID / QUEUE_SECRET_ACCESS_KEY. Scaleway Queues authenticate with their own
SQS credentials, not with the IAM key that Object Storage takes, so one AWS_* pair cannot
serve both; the app must use the QUEUE_* pair for its SQS client. Secret values live in Secret Manager under
/ciel/<env>/; this table names them and never holds them.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.config import EnvironmentConfig

# The queue the image consumes: part of its contract, so named here.
QUEUE_NAME = "ciel-media-jobs"
DLQ_NAME = "ciel-media-jobs-dlq"
# Where each secret variable of the contract lives: its name in Secret Manager under
# /ciel/<env>/. Machines fetch these at start (infra/cloudinit/fetch_secrets.py).
SECRET_ENV = {
    "DATABASE_URL": "database-url",
    "REDIS_URL": "redis-url",
    "AWS_ACCESS_KEY_ID": "s3-access-key",
    "AWS_SECRET_ACCESS_KEY": "s3-secret-key",
    "QUEUE_ACCESS_KEY_ID": "sqs-access-key",
    "QUEUE_SECRET_ACCESS_KEY": "sqs-secret-key",
    "PASETO_ACCESS_KEY": "paseto-access-key",
    "PASETO_REFRESH_KEY": "paseto-refresh-key",
}
# What the image's GET /health answers (both modes' API side): 200 while the process can
# serve, with {"status": "ok" | "degraded", "version": TAG, "checks": {NAME: "ok" |
# "failing: <why>"}} for each dependency below. A failing dependency degrades, it does not
# fail /health: the LB keeps the server, and `ciel verify` names the dependency.
HEALTH_CHECKS = {"database": "DATABASE_URL", "redis": "REDIS_URL"}
# A queue of its own for `ciel verify`'s round trip: the workers never see its messages.
PROBE_QUEUE_NAME = "ciel-verify-probe"
# APP_MODE=migrate (`ciel db migrate`): the image applies its pending schema migrations
# with DATABASE_URL (the migrator's URL, never the app's), prints what it does, and exits
# 0 once the schema is current; run again with nothing pending, it changes nothing and
# exits 0. Any other exit fails the release. It may take the database's own lock (an
# advisory lock) as well: ciel runs one migration at a time per environment.
MIGRATE_MODE = "migrate"
MIGRATOR_SECRET = "migrator-database-url"
# Where `ciel db migrate` asks an API machine for a run (phase 1): the newest version of
# this secret, a JSON request (infra/cloudinit/run_migration.py reads it).
MIGRATION_REQUEST_SECRET = "migration-request"

# Secrets the machines need beside the app's environment.
REGISTRY_PULL_SECRET = "registry-pull-key"
COCKPIT_PUSH_SECRET = "cockpit-push-token"
REDIS_PASSWORD_SECRET = "redis-password"  # the self-managed Redis machine reads it
# The port of the cluster's private LB (the api Service), which the shared LB forwards to.
CLUSTER_INGRESS_PORT = 80


@dataclass(frozen=True)
class ContractEntry:
    name: str
    value: str  # the literal value when it is known from configuration, else a description
    source: str
    secret: bool = False


def app_contract(config: EnvironmentConfig) -> list[ContractEntry]:
    secrets = f"Secret Manager {config.name}: /ciel/{config.name}/"
    cdn = (f"https://{config.cdn_custom_domain}" if config.cdn_custom_domain
           else "CDN pipeline default host" if config.enable_cdn else "(CDN disabled: S3_ENDPOINT serves)")
    return [
        ContractEntry("DATABASE_URL", "", secrets + "database-url (app user, private network)", secret=True),
        ContractEntry("REDIS_URL", "", secrets + "redis-url (" + ("managed Redis, TLS" if config.use_managed_redis
                                                                   else "self-managed Redis instance") + ")", secret=True),
        ContractEntry("REDIS_CA_CERT_B64", "base64 of the cluster's TLS CA (PEM)" if config.use_managed_redis else "",
                      "terraform output redis_ca_cert_b64 (managed Redis certificate; the app trusts it for rediss://)"
                      if config.use_managed_redis else
                      "empty: the self-managed Redis speaks plain redis:// (no TLS, no CA), reachable only on the "
                      "private network (its security group admits 6379 from the private range alone)"),
        ContractEntry("S3_ENDPOINT", f"https://s3.{config.region}.scw.cloud", "Object Storage, region endpoint"),
        ContractEntry("S3_REGION", config.region, "environment config: region"),
        ContractEntry("S3_BUCKET", f"ciel-{config.name}-media-<suffix>", "terraform output media_bucket"),
        ContractEntry("S3_PUBLIC_ENDPOINT", cdn, "terraform output s3_public_endpoint (Edge Services)"),
        ContractEntry("QUEUE_ENDPOINT", f"https://sqs.mnq.{config.region}.scaleway.com", "Scaleway Queues, SQS endpoint"),
        ContractEntry("QUEUE_REGION", config.region, "environment config: region"),
        ContractEntry("QUEUE_NAME", QUEUE_NAME, "messaging layer"),
        ContractEntry("AWS_ACCESS_KEY_ID", "", secrets + "s3-access-key (media objects only)", secret=True),
        ContractEntry("AWS_SECRET_ACCESS_KEY", "", secrets + "s3-secret-key", secret=True),
        ContractEntry("QUEUE_ACCESS_KEY_ID", "", secrets + "sqs-access-key (publish/receive only)", secret=True),
        ContractEntry("QUEUE_SECRET_ACCESS_KEY", "", secrets + "sqs-secret-key", secret=True),
        ContractEntry("PASETO_ACCESS_KEY", "", secrets + "paseto-access-key (base64 of 32 random bytes)", secret=True),
        ContractEntry("PASETO_REFRESH_KEY", "", secrets + "paseto-refresh-key (base64 of 32 random bytes)", secret=True),
        ContractEntry("APP_MODE", "api | worker", "per machine or Deployment role"),
        ContractEntry("HTTP_ADDR", "0.0.0.0:8080", "fixed by the image contract"),
    ]
