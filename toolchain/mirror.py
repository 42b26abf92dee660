"""The local provider mirror and the engine CLI configuration that points at it.

Layout (Terraform's "unpacked" filesystem mirror):
    <mirror>/<host>/<namespace>/<type>/<version>/<os>_<arch>/terraform-provider-<type>_v<version>
Each provider is laid out under both registry host names, because a bare source such
as `scaleway/scaleway` means registry.terraform.io to Terraform and
registry.opentofu.org to OpenTofu.

The CLI configuration is the project's own file, passed with TF_CLI_CONFIG_FILE, so a
user's ~/.terraformrc is never read or changed.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from foundation import paths
from toolchain import gobuild
from toolchain.pins import PROVIDERS, ProviderPin

REGISTRY_HOSTS = ("registry.terraform.io", "registry.opentofu.org")

# "mirror": only the locally built providers (works offline, the default);
# "registry": the public registries, for a machine that reaches them.
PROVIDER_SOURCES = ("mirror", "registry")


def target_platform() -> str:
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}[platform.machine().lower()]
    return f"linux_{arch}"


def mirror_dir() -> Path:
    return paths.cache_dir() / "providers" / "mirror"


def built_provider_path(pin: ProviderPin) -> Path:
    return paths.cache_dir() / "providers" / "build" / f"terraform-provider-{pin.type}_{pin.source.version}"


def mirrored_binary(pin: ProviderPin, host: str = REGISTRY_HOSTS[0]) -> Path:
    return (
        mirror_dir() / host / pin.namespace / pin.type / pin.version / target_platform()
        / f"terraform-provider-{pin.type}_v{pin.version}"
    )


def install_provider(pin: ProviderPin) -> Path:
    """Build the provider if needed and lay it out under every registry host."""
    built = gobuild.build(pin.source, built_provider_path(pin))
    for host in REGISTRY_HOSTS:
        target = mirrored_binary(pin, host)
        if target.exists() and target.stat().st_ino == built.stat().st_ino:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            target.unlink()
        os.link(built, target)  # hard link: one copy on disk, no dangling symlink
    return mirrored_binary(pin)


def provider_installed(pin: ProviderPin) -> bool:
    return all(mirrored_binary(pin, host).exists() for host in REGISTRY_HOSTS)


def cli_config_path(source: str) -> Path:
    return paths.cache_dir() / f"cli-config-{source}.tfrc"


def render_cli_config(source: str) -> str:
    plugin_cache = paths.cache_dir() / "plugin-cache"
    lines = [
        "# Written by `ciel setup`; used through TF_CLI_CONFIG_FILE. Do not edit: rerun setup.",
        "disable_checkpoint = true",
        f'plugin_cache_dir   = "{plugin_cache}"',
        "",
        "provider_installation {",
    ]
    if source == "mirror":
        included = ", ".join(f'"{host}/{pin.address}"' for pin in PROVIDERS for host in REGISTRY_HOSTS)
        lines += [
            "  filesystem_mirror {",
            f'    path    = "{mirror_dir()}"',
            f"    include = [{included}]",
            "  }",
            "  # Anything else comes from the registry (fails offline, which is what we want to see).",
            "  direct {",
            f"    exclude = [{included}]",
            "  }",
        ]
    else:
        lines += ["  direct {}"]
    lines += ["}", ""]
    return "\n".join(lines)


def write_cli_configs() -> None:
    (paths.cache_dir() / "plugin-cache").mkdir(parents=True, exist_ok=True)
    for source in PROVIDER_SOURCES:
        path = cli_config_path(source)
        text = render_cli_config(source)
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
