"""The phase-2 workloads (k8s/): safety properties, schemas, and no secret in plain sight."""

from __future__ import annotations

import yaml
import pytest
import kubernetes_validate

from k8s.render import gitops_inputs, render
from k8s.terraform import TYPED_RESOURCES, provider_arguments
from k8s.workloads import SECRET_KEYS, build
from tests.conftest import config_for


def core_outputs_stand_in() -> dict[str, str]:
    """Well-formed core-stack outputs (the workloads stack's offline inputs)."""
    from infra.stacks.workloads import INPUTS

    return {item.name: item.offline for item in INPUTS}


def objects_of(env: str, **overrides) -> dict[tuple[str, str], dict]:
    config = config_for(env, **overrides)
    return {(m["kind"], m["metadata"]["name"]): m for m in build(config, gitops_inputs(config, core_outputs_stand_in()))}


def pod_spec(objects, name: str) -> dict:
    return objects[("Deployment", name)]["spec"]["template"]["spec"]


def test_api_has_readiness_and_liveness_on_health_and_rolls_without_unavailability():
    objects = objects_of("dev")
    container = pod_spec(objects, "api")["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    assert container["livenessProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    strategy = objects[("Deployment", "api")]["spec"]["strategy"]["rollingUpdate"]
    assert strategy == {"maxUnavailable": 0, "maxSurge": 1}
    assert objects[("Deployment", "api")]["spec"]["replicas"] >= 2
    spread = pod_spec(objects, "api")["topologySpreadConstraints"][0]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["maxSkew"] == 1


def test_worker_has_no_probe_that_could_kill_a_busy_worker_and_enough_grace_for_its_job():
    config = config_for("dev")
    worker = pod_spec(objects_of("dev"), "worker")
    assert not {"livenessProbe", "readinessProbe", "startupProbe"} & set(worker["containers"][0])
    assert worker["terminationGracePeriodSeconds"] >= config.visibility_timeout + config.receive_wait_time


def test_both_deployments_have_a_disruption_budget_and_resource_requests():
    objects = objects_of("prod")
    for name in ("api", "worker"):
        budget = objects[("PodDisruptionBudget", name)]["spec"]
        assert budget["maxUnavailable"] == 1
        assert budget["selector"]["matchLabels"] == objects[("Deployment", name)]["spec"]["selector"]["matchLabels"]
        resources = pod_spec(objects, name)["containers"][0]["resources"]
        assert resources["requests"]["cpu"] and resources["requests"]["memory"] and resources["limits"]["memory"]


def test_api_scales_on_cpu_at_the_plans_seventy_percent():
    hpa = objects_of("prod")[("HorizontalPodAutoscaler", "api")]["spec"]
    assert hpa["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (3, 12)


def test_without_keda_the_worker_falls_back_to_a_cpu_autoscaler():
    objects = objects_of("dev")
    assert ("HorizontalPodAutoscaler", "worker") in objects and ("ScaledObject", "worker") not in objects


def test_with_keda_the_worker_scales_on_queue_depth_against_scaleway_queues():
    objects = objects_of("dev", enable_keda=True)
    assert ("HorizontalPodAutoscaler", "worker") not in objects
    trigger = objects[("ScaledObject", "worker")]["spec"]["triggers"][0]
    assert trigger["type"] == "aws-sqs-queue"
    assert trigger["metadata"]["scaleOnInFlight"] == "false"
    assert trigger["metadata"]["awsEndpoint"] == "https://sqs.mnq.fr-par.scaleway.com"
    auth = objects[("TriggerAuthentication", "ciel-queue")]["spec"]["secretTargetRef"]
    assert {ref["key"] for ref in auth} == {"QUEUE_ACCESS_KEY_ID", "QUEUE_SECRET_ACCESS_KEY"}


def test_namespace_denies_everything_by_default_then_allows_only_what_the_app_needs():
    objects = objects_of("dev")
    deny = objects[("NetworkPolicy", "default-deny")]["spec"]
    assert deny == {"podSelector": {}, "ingress": [], "egress": [], "policyTypes": ["Ingress", "Egress"]}
    api_in = objects[("NetworkPolicy", "api-ingress")]["spec"]["ingress"]
    assert [p["port"] for rule in api_in for p in rule["ports"]] == [8080]
    egress = objects[("NetworkPolicy", "app-egress")]["spec"]["egress"]
    ports = sorted(p["port"] for rule in egress for p in rule["ports"])
    assert ports == [53, 53, 443, 5432, 6379]


def test_the_api_service_is_a_private_lb_at_the_reserved_address():
    config = config_for("dev")
    outputs = {"private_network_id": "fr-par/11111111-1111-4111-8111-111111111111",
               "cluster_ingress_ip_id": "fr-par/22222222-2222-4222-8222-222222222222"}
    service = {(m["kind"], m["metadata"]["name"]): m for m in build(config, gitops_inputs(config, outputs))}[
        ("Service", "api")]
    annotations = service["metadata"]["annotations"]
    prefix = "service.beta.kubernetes.io/scw-loadbalancer-"
    assert annotations[f"{prefix}private"] == "true"
    assert annotations[f"{prefix}pn-ids"] == "11111111-1111-4111-8111-111111111111"
    assert annotations[f"{prefix}private-ip-ids"] == "22222222-2222-4222-8222-222222222222"
    assert annotations[f"{prefix}health-check-http-uri"] == "/health"
    assert service["spec"]["type"] == "LoadBalancer" and service["spec"]["ports"][0]["targetPort"] == 8080


def test_no_secret_key_in_the_config_map():
    data = objects_of("prod")[("ConfigMap", "ciel-config")]["data"]
    assert not set(data) & set(SECRET_KEYS)
    assert not any(word in key for key in data for word in ("SECRET", "PASSWORD", "TOKEN", "PASETO"))


@pytest.mark.parametrize("env", ["dev", "staging", "prod"])
def test_rendered_yaml_validates_against_the_kubernetes_schemas_and_holds_no_secret(env, tmp_path):
    config = config_for(env)
    written = render(config, tmp_path)
    assert [p.name for p in written] == sorted(p.name for p in written)  # stable, ordered names
    for path in written:
        manifest = yaml.safe_load(path.read_text())
        if manifest["kind"] in TYPED_RESOURCES:
            kubernetes_validate.validate(manifest, config.k8s_version, strict=True)
        if manifest["kind"] == "Secret":
            assert "data" not in manifest and "stringData" not in manifest
    text = "\n".join(p.read_text() for p in written)
    for marker in ("postgresql://", "redis://", "rediss://", "password", "dockerconfigjson\":"):
        assert marker not in text


def test_render_is_deterministic(tmp_path):
    first = {p.name: p.read_text() for p in render(config_for("prod"), tmp_path / "a")}
    second = {p.name: p.read_text() for p in render(config_for("prod"), tmp_path / "b")}
    assert first == second


def test_the_schema_validation_catches_a_broken_manifest():
    broken = objects_of("dev")[("Deployment", "api")]
    broken = {**broken, "spec": {**broken["spec"], "replicas": "two"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, "1.32", strict=True)


def test_manifests_translate_to_the_providers_blocks():
    deployment = provider_arguments(objects_of("dev")[("Deployment", "api")])
    container = deployment["spec"][0]["template"][0]["spec"][0]["container"][0]
    assert container["port"] == [{"name": "http", "container_port": 8080, "protocol": "TCP"}]
    assert container["resources"][0]["requests"] == {"cpu": "250m", "memory": "256Mi"}
    assert container["readiness_probe"][0]["http_get"][0] == {"path": "/health", "port": 8080}
    assert deployment["spec"][0]["selector"][0]["match_labels"]["app.kubernetes.io/component"] == "api"
    service = provider_arguments(objects_of("dev")[("Service", "api")])
    assert service["spec"][0]["selector"] == {"app.kubernetes.io/name": "ciel", "app.kubernetes.io/component": "api"}
    policy = provider_arguments(objects_of("dev")[("NetworkPolicy", "api-ingress")])
    assert policy["spec"][0]["ingress"][0]["ports"] == [{"port": 8080, "protocol": "TCP"}]


def test_render_without_outputs_marks_what_only_the_core_stack_knows_and_never_guesses(tmp_path):
    """prod has a CDN: its public endpoint exists only once applied. A guessed bucket
    endpoint would silently send clients past the CDN."""
    written = render(config_for("prod"), tmp_path)
    config_map = next(yaml.safe_load(p.read_text()) for p in written if "-configmap-" in p.name)
    assert config_map["data"]["S3_PUBLIC_ENDPOINT"] == "REPLACE-with-terraform-output-s3_public_endpoint"
    assert config_map["data"]["S3_BUCKET"] == "REPLACE-with-terraform-output-media_bucket"


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_render_and_the_workloads_stack_take_the_same_inputs(env, tmp_path):
    """Every ConfigMap value the workloads stack gets from a core output, render takes from
    the same output."""
    from infra.stacks.workloads import WorkloadsStack
    from tests.conftest import synth_construct

    config = config_for(env, phase=2)
    stack = synth_construct(lambda s: None, stack_factory=lambda app: WorkloadsStack(
        app, config=config, remote_state=None, include_untyped=False))
    (declared,) = stack["resource"]["kubernetes_config_map_v1"].values()
    outputs = {name: f"value-of-{name}" for name in core_outputs_stand_in()}
    rendered = next(yaml.safe_load(p.read_text()) for p in render(config, tmp_path, outputs) if "-configmap-" in p.name)
    resolved = {key: value.replace("${var.", "value-of-").replace("}", "") if isinstance(value, str) else value
                for key, value in declared["data"].items()}
    assert rendered["data"] == resolved
    assert rendered["data"]["S3_PUBLIC_ENDPOINT"] == "value-of-s3_public_endpoint"


def test_pods_run_the_pinned_tag_and_pull_it_only_if_absent_but_always_pull_a_moving_tag(tmp_path):
    """A node keeps an image it pulled once: with a moving tag (dev only) it would keep a
    stale build unless every pod start asks the registry again."""
    from infra.stacks.workloads import WorkloadsStack
    from k8s.workloads import image_pull_policy
    from tests.conftest import synth_construct

    for env, overrides, tag, policy in (("prod", {}, "1.0.0", "IfNotPresent"),
                                        ("dev", {"image_tag": "1.4.2"}, "1.4.2", "IfNotPresent"),
                                        ("dev", {}, "latest", "Always"),
                                        ("dev", {"image_tag": "Main"}, "Main", "Always")):
        config = config_for(env, **overrides)
        assert config.image_tag == tag and image_pull_policy(config) == policy
        # `ciel k8s render`: the YAML
        written = render(config, tmp_path / f"{env}-{tag}")
        deployments = [yaml.safe_load(p.read_text()) for p in written if "-deployment-" in p.name]
        assert len(deployments) == 2
        for deployment in deployments:
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert container["image"].endswith(f"/ciel:{tag}") and container["imagePullPolicy"] == policy
        # the workloads stack: the same objects, handed to the kubernetes provider
        stack = synth_construct(lambda s: None, stack_factory=lambda app: WorkloadsStack(
            app, config=config_for(env, phase=2, **overrides), remote_state=None, include_untyped=False))
        containers = [d["spec"][0]["template"][0]["spec"][0]["container"][0]
                      for d in stack["resource"]["kubernetes_deployment_v1"].values()]
        assert len(containers) == 2
        assert all(c["image_pull_policy"] == policy and c["image"].endswith(f"/ciel:{tag}") for c in containers)


def test_a_secret_rotation_rolls_the_pods_and_no_rotation_leaves_their_template_alone():
    from infra.config import load_environment
    from k8s.render import gitops_inputs
    from k8s.workloads import build

    def templates(config):
        return {m["metadata"]["name"]: m["spec"]["template"]["metadata"] for m in build(config, gitops_inputs(config))
                if m["kind"] == "Deployment"}

    config = load_environment("dev")
    assert all("annotations" not in template for template in templates(config).values())
    rotated = config.model_copy(update={"secret_rotations": {"paseto-access-key": 2}})
    for template in templates(rotated).values():
        assert template["annotations"] == {"ciel-infra/secret-rotations": "paseto-access-key=2"}


def test_the_migration_job_runs_once_as_the_migrator_under_the_apps_egress_policy():
    from k8s.workloads import MIGRATOR_SECRETS, migration_job

    config = config_for("prod")
    job = migration_job(config, image="rg.fr-par.scw.cloud/ciel-prod/ciel:2.0.1", run_id="20261127t101500z-0a1b2c3d",
                        deadline_seconds=900)
    kubernetes_validate.validate(job, config.k8s_version, strict=True)
    assert job["metadata"]["name"] == "migrate-20261127t101500z-0a1b2c3d"
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["activeDeadlineSeconds"] == 900
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["imagePullSecrets"] == [{"name": "ciel-registry"}]
    [container] = pod["containers"]
    assert container["env"] == [{"name": "APP_MODE", "value": "migrate"}]
    # The migrator's URL alone: not the app's Secret, not its ConfigMap.
    assert container["envFrom"] == [{"secretRef": {"name": MIGRATOR_SECRETS}}]
    # Its pods fall under app-egress (the database on the private network).
    egress = objects_of("prod")[("NetworkPolicy", "app-egress")]["spec"]["podSelector"]["matchLabels"]
    assert egress.items() <= spec["template"]["metadata"]["labels"].items()
    # The workloads give the namespace that Secret; rendered for GitOps, its key and not its value.
    secret = objects_of("prod")[("Secret", MIGRATOR_SECRETS)]
    assert secret["metadata"]["annotations"]["ciel-infra/keys"] == "DATABASE_URL" and "data" not in secret
