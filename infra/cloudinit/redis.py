"""Self-managed Redis 7 (Debian 12's redis-server) on a private-only instance.

The password sits in /etc/redis/ciel.conf (0640, redis:redis) and in the user data. On
Scaleway the metadata API serves user data only to requests from a privileged source
port, i.e. to root: an unprivileged process on the instance cannot read it.
"""

from __future__ import annotations

from infra.cloudinit import render

REDIS_PORT = 6379
CONFIG_PATH = "/etc/redis/ciel.conf"


def redis_user_data(*, password: str, maxmemory_mb: int) -> str:
    config = "\n".join([
        "# Managed by ciel-infra (cloud-init). Private network only: no public IP on this machine.",
        "bind 0.0.0.0",
        "protected-mode no",
        f"port {REDIS_PORT}",
        f"requirepass {password}",
        # Persistence: an append-only file, fsynced every second, plus RDB snapshots.
        "appendonly yes",
        "appendfsync everysec",
        f"maxmemory {maxmemory_mb}mb",
        # Rate-limit counters and sessions must not be evicted silently.
        "maxmemory-policy noeviction",
        "",
    ])
    return render({
        "package_update": True,
        "package_upgrade": False,
        "packages": ["redis-server"],
        "write_files": [{
            "path": CONFIG_PATH,
            "owner": "redis:redis",
            "permissions": "0640",
            "defer": True,  # after packages: the redis user exists by then
            "content": config,
        }],
        "runcmd": [
            f"grep -qx 'include {CONFIG_PATH}' /etc/redis/redis.conf || echo 'include {CONFIG_PATH}' >> /etc/redis/redis.conf",
            "systemctl enable redis-server",
            "systemctl restart redis-server",
        ],
    })
