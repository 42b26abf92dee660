"""Self-managed Redis 7 (Debian 12's redis-server) on a private-only instance.

The password is not in the user data: before every start of redis-server, `ciel-secrets`
(infra/cloudinit/secrets.py) reads it from Secret Manager into /etc/redis/ciel-auth.conf
(0640, root:redis), which the settings file includes.
"""

from __future__ import annotations

from infra.cloudinit import render
from infra.cloudinit.secrets import FETCH_SECRETS, SecretFile, SecretSource, secrets_config, secrets_write_files

REDIS_PORT = 6379
CONFIG_PATH = "/etc/redis/ciel.conf"
AUTH_PATH = "/etc/redis/ciel-auth.conf"
UNIT = "redis-server.service"


def redis_user_data(*, password_secret: str, secrets: SecretSource, maxmemory_mb: int) -> str:
    config = "\n".join([
        "# Managed by ciel-infra (cloud-init). Private network only: no public IP on this machine.",
        "bind 0.0.0.0",
        "protected-mode no",
        f"port {REDIS_PORT}",
        f"include {AUTH_PATH}",  # requirepass, written from Secret Manager
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
        "write_files": [*secrets_write_files(secrets, secrets_config(secrets, unit=UNIT, files=[
            SecretFile(AUTH_PATH, password_secret, mode="0640", group="redis", prefix="requirepass ")])), {
            "path": CONFIG_PATH,
            "owner": "redis:redis",
            "permissions": "0640",
            "defer": True,  # after packages: the redis user exists by then
            "content": config,
        }, {
            "path": f"/etc/systemd/system/{UNIT}.d/ciel-secrets.conf",
            "owner": "root:root",
            "permissions": "0644",
            "content": f"[Service]\nExecStartPre=+{FETCH_SECRETS}\n",
        }],
        "runcmd": [
            "systemctl daemon-reload",
            f"grep -qx 'include {CONFIG_PATH}' /etc/redis/redis.conf || echo 'include {CONFIG_PATH}' >> /etc/redis/redis.conf",
            "systemctl enable redis-server",
            "systemctl restart redis-server",
        ],
    })
