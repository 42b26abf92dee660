"""One module per emulated Scaleway API; each has `register(lab)` adding its kinds and routes."""

from __future__ import annotations

from lab.api import Lab
from lab.families import vpc

FAMILIES = (vpc,)


def register_all(lab: Lab) -> Lab:
    for family in FAMILIES:
        family.register(lab)
    return lab
