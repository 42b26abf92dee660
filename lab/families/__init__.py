"""One module per emulated Scaleway API; each has `register(lab)` adding its kinds and routes."""

from __future__ import annotations

from lab.api import Lab
from lab.families import (cockpit, domain, edge_services, iam, instance, ipam, k8s, lb, mnq, rdb, redis, registry,
                          secret, vpc, vpcgw)

FAMILIES = (vpc, vpcgw, ipam, instance, lb, rdb, redis, registry, iam, secret, mnq, cockpit, edge_services, domain,
            k8s)


def register_all(lab: Lab) -> Lab:
    for family in FAMILIES:
        family.register(lab)
    return lab
