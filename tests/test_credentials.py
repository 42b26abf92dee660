"""Credentials: offline when absent, refused when partial or malformed, never printed."""

from __future__ import annotations

import pytest

from ciel import credentials
from foundation.errors import UsageError

GOOD = {
    "SCW_ACCESS_KEY": "SCWABCDEFGHIJKLMNOPQ",
    "SCW_SECRET_KEY": "11111111-2222-4333-8444-555555555555",
    "SCW_DEFAULT_PROJECT_ID": "66666666-7777-4888-8999-000000000000",
}


def test_no_credentials_means_offline_with_well_formed_placeholders():
    found = credentials.detect()
    assert not found.live
    env = found.engine_env
    assert credentials.ACCESS_KEY_FORMAT.match(env["SCW_ACCESS_KEY"])
    assert credentials.UUID_FORMAT.match(env["SCW_SECRET_KEY"])
    assert credentials.UUID_FORMAT.match(env["SCW_DEFAULT_PROJECT_ID"])


def test_complete_credentials_mean_live_and_the_secret_is_not_in_the_repr(monkeypatch):
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    found = credentials.detect()
    assert found.live and found.engine_env["SCW_SECRET_KEY"] == GOOD["SCW_SECRET_KEY"]
    assert GOOD["SCW_SECRET_KEY"] not in repr(found)
    assert GOOD["SCW_ACCESS_KEY"] not in found.access_key_hint


def test_credentials_from_the_scw_cli_profile_are_used(monkeypatch, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"access_key: {GOOD['SCW_ACCESS_KEY']}\nsecret_key: {GOOD['SCW_SECRET_KEY']}\n"
                      f"default_project_id: {GOOD['SCW_DEFAULT_PROJECT_ID']}\n")
    monkeypatch.setenv("SCW_CONFIG_PATH", str(config))
    assert credentials.detect().live


def test_offline_flag_wins_over_present_credentials(monkeypatch):
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    assert not credentials.detect(force_offline=True).live


def test_partial_credentials_are_refused_naming_what_is_missing(monkeypatch):
    monkeypatch.setenv("SCW_ACCESS_KEY", GOOD["SCW_ACCESS_KEY"])
    with pytest.raises(UsageError, match="SCW_SECRET_KEY, SCW_DEFAULT_PROJECT_ID missing"):
        credentials.detect()


@pytest.mark.parametrize(("key", "bad"), [("SCW_ACCESS_KEY", "scw-lowercase"), ("SCW_SECRET_KEY", "not-a-uuid"),
                                          ("SCW_DEFAULT_PROJECT_ID", "1234")])
def test_malformed_credentials_are_refused_without_echoing_them(monkeypatch, key, bad):
    for name, value in {**GOOD, key: bad}.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(UsageError) as error:
        credentials.detect()
    assert key in str(error.value) and bad not in str(error.value)


# --- the deploying principal ---------------------------------------------------------------

PRINCIPAL = "user_id:ee474852-1f90-4cc1-bad0-4a17998c51e7"


def test_the_deploying_principal_given_in_the_environment_is_used_as_is_without_any_call(monkeypatch):
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("SCW_API_URL", "http://127.0.0.1:9")  # nothing answers there: a call would fail
    monkeypatch.setenv("CIEL_DEPLOYER_PRINCIPAL", PRINCIPAL)
    found = credentials.detect()
    assert credentials.deploying_principal(found) == PRINCIPAL
    assert found.engine_environment()["TF_VAR_deployer_principal"] == PRINCIPAL


@pytest.mark.parametrize("bad", ["ee474852-1f90-4cc1-bad0-4a17998c51e7", "group_id:ee474852-1f90-4cc1-bad0-4a17998c51e7",
                                 "user_id:EE474852-1F90-4CC1-BAD0-4A17998C51E7", "user_id:1234", "user_id: " + "a" * 36])
def test_a_malformed_deploying_principal_is_refused_saying_what_is_expected(monkeypatch, bad):
    for key, value in GOOD.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("CIEL_DEPLOYER_PRINCIPAL", bad)
    with pytest.raises(UsageError, match=r"CIEL_DEPLOYER_PRINCIPAL=.* is not a principal: give user_id:<uuid> or "
                                         r"application_id:<uuid>"):
        credentials.deploying_principal(credentials.detect())


def test_offline_the_deploying_principal_is_a_fixed_placeholder_the_stack_accepts():
    import re

    from infra.constructs.storage import DEPLOYER_PRINCIPAL_FORMAT

    env = credentials.detect().engine_environment()
    assert env["TF_VAR_deployer_principal"] == "application_id:00000000-0000-4000-8000-000000000002"
    assert re.match(DEPLOYER_PRINCIPAL_FORMAT, env["TF_VAR_deployer_principal"])
    assert credentials.PRINCIPAL_FORMAT.match(env["TF_VAR_deployer_principal"])
