"""The toolchain: engine choice, the mirror layout, the CLI config, setup idempotence."""

from __future__ import annotations

import os
import shutil

import pytest

from foundation.errors import ToolchainError, UsageError
from toolchain import bindings, engine, mirror
from toolchain.pins import PROVIDERS, SCALEWAY
from tests.conftest import run_ciel


def test_engine_preference_accepts_the_documented_values(monkeypatch):
    monkeypatch.delenv("CIEL_ENGINE", raising=False)
    assert engine.preference() == "auto"
    assert engine.preference("OpenTofu") == "tofu"
    monkeypatch.setenv("CIEL_ENGINE", "terraform")
    assert engine.preference() == "terraform"
    with pytest.raises(UsageError):
        engine.preference("terragrunt")


def test_auto_falls_back_to_the_built_opentofu_when_no_terraform_is_on_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # neither terraform nor tofu
    chosen = engine.select("auto")
    assert chosen.name == "tofu" and chosen.path == engine.built_tofu_path()
    assert chosen.version.startswith("1.10.")


def test_forcing_terraform_without_one_on_path_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ToolchainError, match="no terraform >= 1.10 is on PATH"):
        engine.select("terraform")


def test_terraform_on_path_is_preferred_in_auto_mode():
    if not shutil.which("terraform"):
        pytest.fail("this machine has no terraform on PATH; the auto-mode preference cannot be checked")
    assert engine.select("auto").name == "terraform"


def test_every_pinned_provider_is_in_the_mirror_under_both_registry_hosts():
    for pin in PROVIDERS:
        binaries = [mirror.mirrored_binary(pin, host) for host in mirror.REGISTRY_HOSTS]
        assert all(b.exists() and os.access(b, os.X_OK) for b in binaries), pin.address
        assert binaries[0].stat().st_ino == binaries[1].stat().st_ino  # one copy on disk


def test_mirror_cli_config_routes_pinned_providers_to_the_mirror_only():
    text = mirror.render_cli_config("mirror")
    assert f'path    = "{mirror.mirror_dir()}"' in text
    for pin in PROVIDERS:
        for host in mirror.REGISTRY_HOSTS:
            assert text.count(f'"{host}/{pin.address}"') == 2  # included in the mirror, excluded from direct
    assert "disable_checkpoint = true" in text
    assert "filesystem_mirror" not in mirror.render_cli_config("registry")


def test_generated_bindings_hold_exactly_the_pinned_resource_types():
    root = bindings.bindings_root()
    package = root / bindings.PACKAGE / "scaleway"
    generated = {p.name for p in package.iterdir() if p.is_dir() and not p.name.startswith("_")} - {"provider"}
    assert {bindings.module_name(t) for t in SCALEWAY.generate_bindings_for} == generated


def test_bindings_key_changes_when_the_resource_list_changes():
    from dataclasses import replace

    widened = replace(SCALEWAY, generate_bindings_for=(*SCALEWAY.generate_bindings_for, "scaleway_lb"))
    assert bindings.key(widened) != bindings.key(SCALEWAY)


def test_second_setup_rebuilds_nothing():
    before = {pin.address: mirror.mirrored_binary(pin).stat().st_mtime_ns for pin in PROVIDERS}
    result = run_ciel("setup")
    assert result.returncode == 0, result.stderr
    assert "first time only" not in result.stderr
    assert {pin.address: mirror.mirrored_binary(pin).stat().st_mtime_ns for pin in PROVIDERS} == before
