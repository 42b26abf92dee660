"""Secrets construct: PASETO keys (32 random bytes, base64, unless supplied) and the app's secrets."""

from __future__ import annotations

from tests.conftest import of_type, synth_core


def test_paseto_keys_are_32_random_bytes_unless_supplied():
    stack = synth_core("dev")
    assert sorted(b["length"] for b in of_type(stack, "random_bytes")) == [32, 32]
    versions = of_type(stack, "scaleway_secret_version")
    paseto = [v["data"] for v in versions if "paseto" in v["secret_id"]]
    assert len(paseto) == 2
    for data in paseto:
        assert data.startswith("${coalesce(var.paseto_") and ".base64" in data
    for name in ("paseto_access_key", "paseto_refresh_key"):
        assert stack["variable"][name]["sensitive"] is True


def test_the_app_secrets_live_under_the_environment_path():
    names = {s["name"]: s for s in of_type(synth_core("dev"), "scaleway_secret")}
    assert set(names) == {"paseto-access-key", "paseto-refresh-key", "database-url", "migrator-database-url",
                          "redis-url", "s3-access-key", "s3-secret-key", "sqs-access-key", "sqs-secret-key",
                          "registry-pull-key", "cockpit-push-token", "redis-password", "migration-request"}
    assert {s["path"] for s in names.values()} == {"/ciel/dev"}
    # `ciel db migrate` writes the requests' versions: Terraform declares none.
    versions = of_type(synth_core("dev"), "scaleway_secret_version")
    assert len(versions) == len(names) - 1
    assert not any("migration_request" in str(version["secret_id"]) for version in versions)
    # Only the self-managed Redis machine reads a bare password.
    assert "redis-password" not in {s["name"] for s in of_type(synth_core("prod"), "scaleway_secret")}


def test_machines_read_secrets_with_a_key_that_may_only_access_secret_versions():
    stack = synth_core("dev")
    reader = next(p for p in of_type(stack, "scaleway_iam_policy") if p["name"] == "ciel-dev-secrets-reader")
    assert reader["rule"] == [{"project_ids": ["${var.project_id}"], "permission_set_names": ["SecretManagerSecretAccess"]}]


def test_a_rotation_generates_a_new_value_and_the_new_version_comes_before_the_old_goes():
    plain, rotated = synth_core("dev"), synth_core("dev", secret_rotations={"paseto-access-key": 2})
    access = next(v for k, v in plain["resource"]["random_bytes"].items() if "access" in k)
    assert "keepers" not in access  # never rotated: adding a keeper later is the first rotation
    rotated_access = next(v for k, v in rotated["resource"]["random_bytes"].items() if "access" in k)
    assert rotated_access["keepers"] == {"rotation": "2"}
    assert all("keepers" not in v for k, v in rotated["resource"]["random_bytes"].items() if "refresh" in k)
    for version in of_type(plain, "scaleway_secret_version"):
        assert version["lifecycle"]["create_before_destroy"] is True


def test_admin_token_only_when_asked():
    assert "admin-token" not in {s["name"] for s in of_type(synth_core("dev"), "scaleway_secret")}
    assert "admin-token" in {s["name"] for s in of_type(synth_core("prod"), "scaleway_secret")}
