"""Scaleway offer names the project accepts, per product.

A config value outside these lists is refused before anything runs. The lists hold the
offers we have checked exist (provider docs and Scaleway's product catalog, 2026); add
one here, with care, to use it. `ciel cost` prices exactly these offers.
"""

from __future__ import annotations

# Instance offer → (vCPUs, RAM in GiB): sizing decisions (Redis maxmemory) use the RAM.
INSTANCE_SIZES: dict[str, tuple[int, int]] = {
    "DEV1-S": (2, 2), "DEV1-M": (3, 4), "DEV1-L": (4, 8), "DEV1-XL": (4, 12),
    "PLAY2-PICO": (1, 2), "PLAY2-NANO": (2, 4), "PLAY2-MICRO": (4, 8),
    "PRO2-XXS": (2, 8), "PRO2-XS": (4, 16), "PRO2-S": (8, 32), "PRO2-M": (16, 64),
    "GP1-XS": (4, 16), "GP1-S": (8, 32), "GP1-M": (16, 64),
}
INSTANCE_TYPES = tuple(INSTANCE_SIZES)

# LB-GP-S is not an offer: the flexible LB range is LB-S, then LB-GP-M and up.
LB_TYPES = ("LB-S", "LB-GP-M", "LB-GP-L", "LB-GP-XL")

DB_NODE_TYPES = (
    "DB-DEV-S", "DB-DEV-M", "DB-DEV-L", "DB-DEV-XL",
    "DB-PLAY2-PICO", "DB-PLAY2-NANO",
    "DB-PRO2-XXS", "DB-PRO2-XS", "DB-PRO2-S", "DB-PRO2-M",
    "DB-GP-XS", "DB-GP-S", "DB-GP-M",
)

REDIS_NODE_TYPES = ("RED1-MICRO", "RED1-XS", "RED1-S", "RED1-M", "RED1-L")

PUBLIC_GATEWAY_TYPES = ("VPC-GW-S", "VPC-GW-M")

# Kapsule's Kubernetes minor versions, as the pinned provider's (2.81.0) recorded API
# responses list them (internal/services/k8s/testdata/*.cassette.yaml: 1.32 to 1.35 in
# June 2026, 1.33 to 1.35 in July, 1.33 to 1.36 in August). 1.32 is no longer in the newest
# lists: kept so existing configurations load; the schema's default is 1.34, supported
# in every 2026 list.
K8S_VERSIONS = ("1.32", "1.33", "1.34", "1.35", "1.36")
