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
                          "redis-url", "s3-access-key", "s3-secret-key", "sqs-access-key", "sqs-secret-key"}
    assert {s["path"] for s in names.values()} == {"/ciel/dev"}


def test_admin_token_only_when_asked():
    assert "admin-token" not in {s["name"] for s in of_type(synth_core("dev"), "scaleway_secret")}
    assert "admin-token" in {s["name"] for s in of_type(synth_core("prod"), "scaleway_secret")}
