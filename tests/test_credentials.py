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
