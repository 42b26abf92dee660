"""Python bindings for the Scaleway provider, generated with `cdktn get`.

No prebuilt bindings exist for scaleway/scaleway. We generate them once per machine
into the cache rather than committing them: they are ~20 MB of generated code for the
full provider, reviewing them is pointless, and they must match the pinned provider
exactly — a cache keyed by (provider version, resource list, cdktn version) guarantees
that, while a committed copy could silently drift from the pins.

Generation is limited to the resource types in pins.SCALEWAY_RESOURCES by handing
cdktn a trimmed provider schema through its (experimental) schema cache. The schema
itself comes from the real provider binary, through the real engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

from foundation import paths
from foundation.errors import ToolchainError
from foundation.process import run, say
from toolchain import mirror, node
from toolchain.engine import Engine
from toolchain.pins import CDKTN_CLI_VERSION, SCALEWAY, ProviderPin

PACKAGE = "ciel_providers"  # import as `from ciel_providers.scaleway.vpc import Vpc`


def key(pin: ProviderPin = SCALEWAY) -> str:
    material = json.dumps(
        {"provider": pin.address, "version": pin.version, "resources": sorted(pin.generate_bindings_for or ()),
         "cdktn": CDKTN_CLI_VERSION, "layout": 2},
        sort_keys=True,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def bindings_root(pin: ProviderPin = SCALEWAY) -> Path:
    """The folder to put on sys.path; it holds the `ciel_providers` package."""
    return paths.cache_dir() / "bindings" / f"{pin.type}-{pin.version}-{key(pin)}"


def generated(pin: ProviderPin = SCALEWAY) -> bool:
    return (bindings_root(pin) / ".complete").exists()


def ensure_importable(pin: ProviderPin = SCALEWAY) -> None:
    """Put the generated bindings on sys.path, or explain how to get them."""
    root = bindings_root(pin)
    if not generated(pin):
        raise ToolchainError(
            f"the Python bindings for {pin.address} {pin.version} are not generated yet "
            f"(expected in {root}): run ./setup.sh"
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def _squashed(name: str) -> str:
    """jsii names modules after its camelCase class names: scaleway_k8s_cluster becomes
    k8_s_cluster. Comparing without underscores matches both spellings."""
    return name.replace("_", "")


def module_name(resource: str, pin: ProviderPin = SCALEWAY) -> str:
    """The generated module of `resource` ("k8s_cluster" or "scaleway_k8s_cluster")."""
    short = resource.removeprefix(f"{pin.type}_")
    package = bindings_root(pin) / PACKAGE / pin.type
    if (package / short).is_dir():
        return short
    for candidate in package.iterdir():
        if candidate.is_dir() and _squashed(candidate.name) == _squashed(short):
            return candidate.name
    raise ToolchainError(f"no generated binding for {pin.type}_{short}: add it to pins.SCALEWAY_RESOURCES and run ./setup.sh")


def _constraint(pin: ProviderPin) -> str:
    return f"= {pin.version}"


def _trimmed_schema(engine: Engine, pin: ProviderPin, workdir: Path) -> dict:
    """Read the provider's schema with the engine, keeping only the resources we use."""
    (workdir / "main.tf.json").write_text(json.dumps({
        "terraform": {"required_providers": {pin.type: {"source": pin.address, "version": _constraint(pin)}}},
        "provider": {pin.type: {}},
    }))
    env = {"TF_CLI_CONFIG_FILE": str(mirror.cli_config_path("mirror")), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}
    run([engine.path, "init", "-input=false", "-backend=false"], cwd=workdir, env=env, quiet=True,
        what=f"{engine.name} init (reading the {pin.address} schema)")
    schema = json.loads(run([engine.path, "providers", "schema", "-json"], cwd=workdir, env=env, capture=True).stdout)
    versions = json.loads(run([engine.path, "version", "-json"], cwd=workdir, env=env, capture=True).stdout)

    wanted = set(pin.generate_bindings_for or ())
    for provider_schema in schema["provider_schemas"].values():
        available = set(provider_schema.get("resource_schemas", {}))
        unknown = wanted - available
        if unknown:
            raise ToolchainError(f"pins.SCALEWAY_RESOURCES names types that {pin.address} {pin.version} lacks: {sorted(unknown)}")
        provider_schema["resource_schemas"] = {k: v for k, v in provider_schema["resource_schemas"].items() if k in wanted}
        # Data sources read the live API at plan time, which the offline path cannot do;
        # we use none, so none are generated.
        provider_schema["data_source_schemas"] = {}
        provider_schema["ephemeral_resource_schemas"] = {}
        provider_schema["list_resource_schemas"] = {}
        provider_schema.pop("action_schemas", None)
        # cdktn 0.24's Python output for provider-defined functions imports a module it
        # does not write (`provider/functions`); we call none of them, so leave them out.
        provider_schema.pop("functions", None)
    schema["provider_versions"] = versions.get("provider_selections", {})
    # The same stamp cdktn writes when it fetches a schema itself.
    schema["cli_name"] = "opentofu" if engine.name == "tofu" else "terraform"
    schema["cli_version"] = engine.version
    return schema


def generate(engine: Engine, pin: ProviderPin = SCALEWAY) -> Path:
    """Generate the bindings unless the cache already holds them."""
    root = bindings_root(pin)
    if generated(pin):
        return root
    say(f"  generating Python bindings for {pin.address} {pin.version} "
        f"({len(pin.generate_bindings_for or ())} resource types) with cdktn get — first time only")
    with tempfile.TemporaryDirectory(prefix="ciel-bindings-") as tmp:
        tmpdir = Path(tmp)
        schema_dir = tmpdir / "schema-cache"
        schema_dir.mkdir()
        (tmpdir / "schema").mkdir()
        schema = _trimmed_schema(engine, pin, tmpdir / "schema")
        cli_name = schema["cli_name"]
        suffix = f"{cli_name}-{engine.minor}"
        cache_file = schema_dir / f"{quote(pin.type, safe='')}@{quote(_constraint(pin), safe='')}@{quote(suffix, safe='')}.json"
        cache_file.write_text(json.dumps(schema))

        project = tmpdir / "project"
        project.mkdir()
        (project / "cdktf.json").write_text(json.dumps({
            "language": "python",
            "app": "true",
            "terraformProviders": [f"{pin.address}@{_constraint(pin)}"],
            "codeMakerOutput": PACKAGE,
            "sendCrashReports": "false",
        }))
        env = {
            "PATH": f"{node.node_binary().parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "TERRAFORM_BINARY_NAME": str(engine.path),
            "TF_CLI_CONFIG_FILE": str(mirror.cli_config_path("mirror")),
            "CDKTF_EXPERIMENTAL_PROVIDER_SCHEMA_CACHE_PATH": str(schema_dir),
            "CDKTF_DISABLE_PLUGIN_CACHE_ENV": "1",
            "CHECKPOINT_DISABLE": "1",
            "CI": "1",
        }
        run([node.cdktn_binary(), "get"], cwd=project, env=env, quiet=True, what="cdktn get")

        package_dir = project / PACKAGE / pin.type
        produced = {_squashed(p.name) for p in package_dir.iterdir() if p.is_dir() and not p.name.startswith("_")}
        produced.discard("provider")
        expected = {_squashed(t.removeprefix(f"{pin.type}_")) for t in pin.generate_bindings_for or ()}
        if produced != expected:
            # A different set means cdktn fetched the full schema itself (cache key
            # mismatch): refuse rather than ship bindings we did not ask for.
            raise ToolchainError(
                f"cdktn get produced bindings for {len(produced)} types, expected {sorted(expected)}; "
                f"extra: {sorted(produced - expected)[:5]}, missing: {sorted(expected - produced)}"
            )
        staging = root.with_name(root.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        shutil.move(str(project / PACKAGE), str(staging / PACKAGE))
        (staging / ".complete").write_text(json.dumps({"types": sorted(expected)}) + "\n")
        shutil.rmtree(root, ignore_errors=True)
        os.replace(staging, root)
    return root
