"""Tier presets: the scaling variables each tier sets, reached by configuration only.

Schema defaults are the mvp values; a preset lists only what differs. An environment's
YAML file wins over its tier's preset, key by key. Monthly figures are the plan's targets;
`ciel cost` computes ours from the price table.
"""

from __future__ import annotations

TIER_PRESETS: dict[str, dict[str, object]] = {
    # ~€50/month: one of everything, self-managed Redis, no HA, the CDN.
    "mvp": {},
    # ~€200/month: two API and two worker instances, a production database with HA,
    # managed Redis, a general-purpose LB, bastion.
    "growth": {
        "api_instance_count": 2,
        "api_instance_type": "DEV1-M",
        "worker_instance_count": 2,
        "worker_instance_type": "DEV1-M",
        "lb_type": "LB-GP-M",
        "db_node_type": "DB-PRO2-XXS",
        "db_enable_ha": True,
        "db_volume_size_in_gb": 20,
        "use_managed_redis": True,
        "managed_redis_node_type": "RED1-MICRO",
        "enable_bastion": True,
        "k8s_node_type": "PRO2-XXS",
        "k8s_pool_min_size": 2,
        "k8s_pool_max_size": 4,
        "api_max_replicas": 8,
    },
    # ~€600–800/month: production-grade offers, a read replica, managed Redis.
    "scale": {
        "api_instance_count": 3,
        "api_instance_type": "PRO2-XXS",
        "worker_instance_count": 2,
        "worker_instance_type": "PRO2-XXS",
        "lb_type": "LB-GP-M",
        "db_node_type": "DB-PRO2-XS",
        "db_enable_ha": True,
        "db_volume_size_in_gb": 50,
        "db_read_replica_count": 1,
        "db_max_connections": 300,
        "db_effective_cache_size_mb": 6144,
        "use_managed_redis": True,
        "managed_redis_node_type": "RED1-S",
        "enable_bastion": True,
        "public_gateway_type": "VPC-GW-M",
        "db_backup_retention_days": 14,
        "logs_retention_days": 31,
        "k8s_node_type": "PRO2-XS",
        "k8s_pool_min_size": 3,
        "k8s_pool_max_size": 8,
        "cluster_lb_type": "LB-GP-M",
        "api_replicas": 3,
        "api_max_replicas": 12,
        "worker_replicas": 2,
        "worker_max_replicas": 10,
    },
}


def preset(tier: str) -> dict[str, object]:
    return dict(TIER_PRESETS.get(tier, {}))
