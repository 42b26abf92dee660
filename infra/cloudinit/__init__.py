"""Cloud-init documents for the machines we run, rendered as `#cloud-config` YAML.

Values that Terraform only knows at apply time (passwords, addresses) are passed in as
tokens and interpolated by the engine; keep them to characters that need no YAML quoting.
"""

from __future__ import annotations

import yaml


def render(document: dict) -> str:
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=1000)
