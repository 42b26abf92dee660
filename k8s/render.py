"""`ciel k8s render`: the workloads as plain YAML, one file per object, stable order.

For teams that deploy with GitOps. Secrets are rendered without their values (the keys
and where the values live are annotated); identifiers that only exist once the core
stack is applied come from its outputs when credentials are at hand, else are marked.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from infra.config import EnvironmentConfig
from k8s.workloads import WorkloadInputs, build


def unresolved(name: str) -> str:
    return f"REPLACE-with-terraform-output-{name}"


def gitops_inputs(config: EnvironmentConfig, outputs: dict[str, object] | None = None) -> WorkloadInputs:
    """The workloads stack's inputs (the same core-stack outputs, infra/stacks/workloads.py),
    taken from `outputs` where known and marked placeholders otherwise — never a guess: a
    guessed S3_PUBLIC_ENDPOINT would send clients past the CDN."""
    outputs = outputs or {}

    def get(name: str) -> str:
        return str(outputs.get(name) or unresolved(name))

    def bare(name: str) -> str:  # regional IDs are "<region>/<uuid>"; the controller wants the UUID
        value = outputs.get(name)
        return str(value).split("/")[-1] if value else unresolved(name)

    return WorkloadInputs(
        image=config.image(get("registry_endpoint")),
        registry_host=f"rg.{config.region}.scw.cloud",
        private_network_id=bare("private_network_id"),
        ingress_ip_id=bare("cluster_ingress_ip_id"),
        s3_bucket=get("media_bucket"),
        s3_public_endpoint=get("s3_public_endpoint"),
        queue_endpoint=get("queue_endpoint"),
        queue_url=get("queue_url"),
        redis_ca_cert_b64=get("redis_ca_cert_b64"),
        secrets=None,
        migrator_database_url=None,
        docker_config_json=None,
    )


def file_name(index: int, manifest: dict) -> str:
    slug = re.sub(r"[^a-z0-9-]+", "-", manifest["metadata"]["name"].lower()).strip("-")
    return f"{index:02d}-{manifest['kind'].lower()}-{slug}.yaml"


def render(config: EnvironmentConfig, directory: Path, outputs: dict[str, str] | None = None) -> list[Path]:
    """Write every object to `directory` (emptied of earlier renders first)."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("[0-9][0-9]-*.yaml"):
        old.unlink()
    written = []
    for index, manifest in enumerate(build(config, gitops_inputs(config, outputs)), start=1):
        path = directory / file_name(index, manifest)
        path.write_text(yaml.safe_dump(manifest, sort_keys=False, default_flow_style=False))
        written.append(path)
    return written
