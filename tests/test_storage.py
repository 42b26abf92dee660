"""Storage and CDN constructs: private media bucket, lifecycle, CORS, scoped IAM, Edge Services."""

from __future__ import annotations

from tests.conftest import build_core, of_type, one, synth_core


def _media_policy(stack) -> dict:
    return [p for p in of_type(stack, "scaleway_iam_policy") if p["name"].endswith("-media")][0]


def test_bucket_is_private_and_aborts_incomplete_uploads_after_7_days():
    stack = synth_core("dev")
    assert one(stack, "scaleway_object_bucket_acl")["acl"] == "private"
    rules = one(stack, "scaleway_object_bucket")["lifecycle_rule"]
    assert rules == [{"id": "abort-incomplete-uploads", "enabled": True, "abort_incomplete_multipart_upload_days": 7}]


def test_glacier_transition_after_90_days_when_enabled():
    rules = one(synth_core("prod"), "scaleway_object_bucket")["lifecycle_rule"]
    glacier = [r for r in rules if r["id"] == "to-glacier"][0]
    assert glacier["transition"] == [{"days": 90, "storage_class": "GLACIER"}]


def test_cors_allows_the_configured_origins_only():
    cors = one(synth_core("staging"), "scaleway_object_bucket")["cors_rule"]
    assert cors[0]["allowed_origins"] == ["https://app.staging.ciel.example.com"]
    assert "cors_rule" not in one(synth_core("dev", cors_allowed_origins=[]), "scaleway_object_bucket")


def test_app_credentials_may_only_touch_objects_of_this_project():
    rule = _media_policy(synth_core("dev"))["rule"][0]
    assert sorted(rule["permission_set_names"]) == ["ObjectStorageObjectsDelete", "ObjectStorageObjectsRead",
                                                    "ObjectStorageObjectsWrite"]
    assert rule["project_ids"] == ["${var.project_id}"]


def test_without_cdn_there_is_no_bucket_policy_and_no_pipeline():
    stack = synth_core("dev", enable_cdn=False)
    assert of_type(stack, "scaleway_object_bucket_policy") == []
    assert of_type(stack, "scaleway_edge_services_pipeline") == []


def test_with_cdn_anonymous_reads_are_limited_to_the_public_prefix():
    document = build_core("prod").storage.policy_document
    anonymous = [s for s in document["Statement"] if s["Principal"] == "*"]
    assert len(anonymous) == 1
    assert anonymous[0]["Action"] == ["s3:GetObject"]
    assert len(anonymous[0]["Resource"]) == 1 and anonymous[0]["Resource"][0].endswith("/public/*")
    named = [s for s in document["Statement"] if s["Principal"] != "*" and s["Sid"] != "DeployerManagesTheBucket"]
    assert named and all(s["Principal"]["SCW"].startswith("application_id:") for s in named)
    assert one(synth_core("prod"), "scaleway_object_bucket_policy")["policy"].startswith("${jsonencode(")


def test_cdn_pipeline_chains_its_stages_to_the_bucket_with_a_managed_certificate():
    stack = synth_core("prod")
    backend = one(stack, "scaleway_edge_services_backend_stage")
    assert backend["s3_backend_config"]["bucket_region"] == "fr-par"
    assert "scaleway_object_bucket" in backend["s3_backend_config"]["bucket_name"]
    assert "edge_services_backend_stage" in one(stack, "scaleway_edge_services_cache_stage")["backend_stage_id"]
    tls = one(stack, "scaleway_edge_services_tls_stage")
    assert tls["managed_certificate"] is True and "edge_services_cache_stage" in tls["cache_stage_id"]
    dns = one(stack, "scaleway_edge_services_dns_stage")
    assert dns["fqdns"] == ["cdn.ciel.example.com"] and "edge_services_tls_stage" in dns["tls_stage_id"]
    assert "edge_services_dns_stage" in one(stack, "scaleway_edge_services_head_stage")["head_stage_id"]
    assert one(stack, "scaleway_edge_services_plan")["name"] == "starter"
    assert stack["output"]["s3_public_endpoint"]["value"] == "https://cdn.ciel.example.com"


def test_the_media_policy_names_the_deployer_with_full_control_and_the_app_with_object_access():
    document = build_core("prod").storage.policy_document
    statements = {s["Sid"]: s for s in document["Statement"]}
    assert set(statements) == {"DeployerManagesTheBucket", "AppObjectsReadWrite", "CdnReadsPublicPrefixOnly"}
    deployer, app = statements["DeployerManagesTheBucket"], statements["AppObjectsReadWrite"]
    assert deployer["Action"] == ["s3:*"] and deployer["Resource"] == app["Resource"]
    assert len(deployer["Resource"]) == 2 and deployer["Resource"][1] == f"{deployer['Resource'][0]}/*"
    assert "s3:*" not in app["Action"] and app["Principal"]["SCW"].startswith("application_id:")
    anonymous = statements["CdnReadsPublicPrefixOnly"]
    assert anonymous["Principal"] == "*" and anonymous["Action"] == ["s3:GetObject"]
    assert len(anonymous["Resource"]) == 1 and anonymous["Resource"][0].endswith("/public/*")
    # As synthesized: the deployer is the stack variable, the app its IAM application.
    policy = one(synth_core("prod"), "scaleway_object_bucket_policy")["policy"]
    assert ('"Sid" = "DeployerManagesTheBucket", "Effect" = "Allow", "Principal" = {"SCW" = var.deployer_principal}, '
            '"Action" = ["s3:*"]') in policy
    assert '"Principal" = {"SCW" = "application_id:${scaleway_iam_application.' in policy


def test_the_deployer_principal_is_a_validated_plain_stack_variable():
    variable = synth_core("prod")["variable"]["deployer_principal"]
    assert variable["type"] == "string" and variable["sensitive"] is False and variable["nullable"] is False
    assert variable["description"]
    assert variable["validation"] == [{
        "condition": '${can(regex("^(user_id|application_id):[0-9a-f-]{36}$", var.deployer_principal))}',
        "error_message": "deployer_principal must be user_id:<uuid> or application_id:<uuid>."}]
