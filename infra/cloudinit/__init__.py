"""Cloud-init documents for the machines we run, rendered as `#cloud-config` YAML.

Values that Terraform only knows at apply time (passwords, addresses) are passed in as
tokens and interpolated by the engine; keep them to characters that need no YAML quoting.
Multi-line strings (files) are written as literal blocks so the user data reads as the
files it writes.
"""

from __future__ import annotations

import yaml


class _Dumper(yaml.SafeDumper):
    pass


def _string(dumper: yaml.SafeDumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def render(document: dict) -> str:
    return "#cloud-config\n" + yaml.dump(document, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
