"""Cloud-init for the machines that run the Ciel image (APP_MODE=api or worker).

Docker from Debian, a read-only registry login, the image at the configured tag, run by a
systemd unit that restarts it on failure and stops it gracefully (the worker gets enough
time to finish in-flight jobs). Container logs go to journald and, when enabled, Grafana
Alloy ships them to the Cockpit logs source.

Where the secrets come from, and why there: the user data carries ONE secret, a Secret
Manager reader key (/etc/ciel/secrets-reader-key, 0600 root) whose application may only
access secret versions of this environment's project (infra/constructs/secrets.py). The
Instance API stores user data and serves it to root on the machine, and Scaleway offers
instances no identity of their own to trade for a token, so that one key is the floor.
Before every start of the service, `ciel-secrets` (infra/cloudinit/fetch_secrets.py)
fetches the newest enabled version of each secret and writes /etc/ciel/app.env (0600,
handed to Docker with --env-file: never on a command line or in the unit file), the
registry password and the Cockpit token. A rotation is a new version plus a restart
(`ciel secrets rotate`); no machine is replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.cloudinit import render
from infra.cloudinit.secrets import (FETCH_SECRETS, SecretFile, SecretSource, embedded_script, secrets_config,
                                     secrets_write_files)

ENV_FILE = "/etc/ciel/app.env"
REGISTRY_PASSWORD_FILE = "/etc/ciel/registry-password"
COCKPIT_TOKEN_FILE = "/etc/ciel/cockpit-token"
UNIT = "ciel.service"
API_PORT = 8080
# `ciel db migrate`'s runner (phase 1), on API machines: a timer looks for a request.
MIGRATION_RUNNER = "/usr/local/sbin/ciel-migrate"
MIGRATION_RUNNER_SOURCE = Path(__file__).with_name("run_migration.py")
MIGRATION_UNIT = "ciel-migrate.service"
MIGRATION_TIMER = "ciel-migrate.timer"
MIGRATION_POLL_SECONDS = 10
# The `unit` label of the runner's lines in Cockpit, and the prefix of each line
# (run_migration.py PREFIX, which stands alone on the machine), by which ciel finds them.
MIGRATION_LOG_LABEL = "ciel-migrate"


@dataclass(frozen=True)
class AppMachine:
    """Everything one role's user data depends on; a change here changes that user data."""

    role: str  # "api" or "worker"
    environment: str  # dev, staging, prod
    registry_host: str  # rg.fr-par.scw.cloud
    image: str  # rg.fr-par.scw.cloud/ciel-dev/ciel:1.4.2
    settings: dict[str, str]  # the contract's plain values (may be tokens)
    secret_env: dict[str, str]  # the contract's secret variables → their secret's name
    secrets: SecretSource
    registry_password_secret: str  # name of the secret holding the registry pull key
    stop_timeout_seconds: int  # how long `docker stop` waits before SIGKILL
    logs_push_url: str | None = None  # Cockpit logs source push URL; None: logs stay local
    logs_token_secret: str | None = None  # name of the secret holding the Cockpit push token


def machine_secrets_config(machine: AppMachine) -> dict:
    """/etc/ciel/secrets.json of an app machine: its settings, and which secret goes where."""
    settings = {**machine.settings, "APP_MODE": machine.role}
    if machine.role == "api":
        settings["HTTP_ADDR"] = f"0.0.0.0:{API_PORT}"
    files = [SecretFile(REGISTRY_PASSWORD_FILE, machine.registry_password_secret)]
    if machine.logs_token_secret:
        files.append(SecretFile(COCKPIT_TOKEN_FILE, machine.logs_token_secret, mode="0640", group="alloy"))
    return secrets_config(machine.secrets, unit=UNIT, files=files, env_file=ENV_FILE, settings=settings,
                          env_secrets=machine.secret_env)


def _unit(machine: AppMachine) -> str:
    publish = f"-p {API_PORT}:{API_PORT} " if machine.role == "api" else ""
    timeout = machine.stop_timeout_seconds
    return "\n".join([
        "[Unit]",
        f"Description=Ciel {machine.role} (APP_MODE={machine.role})",
        "Wants=network-online.target",
        "After=docker.service network-online.target",
        "Requires=docker.service",
        "",
        "[Service]",
        "Restart=on-failure",
        "RestartSec=5",
        # systemd must wait longer than docker does, or it kills the container first.
        f"TimeoutStopSec={timeout + 30}",
        # Every start reads the newest secrets: a reboot or restart is how a rotation lands.
        f"ExecStartPre={FETCH_SECRETS}",
        f"ExecStartPre=/bin/sh -c 'docker login {machine.registry_host} -u nologin --password-stdin"
        f" < {REGISTRY_PASSWORD_FILE}'",
        "ExecStartPre=-/usr/bin/docker rm -f ciel",
        f"ExecStartPre=/usr/bin/docker pull {machine.image}",
        f"ExecStart=/usr/bin/docker run --rm --name ciel --env-file {ENV_FILE} {publish}"
        f"--log-driver=journald --stop-signal SIGTERM --stop-timeout {timeout} {machine.image}",
        f"ExecStop=/usr/bin/docker stop -t {timeout} ciel",
        # A container keeps the environment it started with: reload fetches again and
        # restarts the service only if a secret's revision changed.
        f"ExecReload={FETCH_SECRETS} --restart-if-changed",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def _migration_units() -> list[dict]:
    """The runner's oneshot service and the timer that starts it (API machines)."""
    service = "\n".join([
        "[Unit]",
        "Description=Ciel schema migrations requested by `ciel db migrate`",
        "After=docker.service network-online.target",
        "Requires=docker.service",
        "",
        "[Service]",
        "Type=oneshot",
        f"ExecStart={MIGRATION_RUNNER}",
        "",
    ])
    timer = "\n".join([
        "[Unit]",
        "Description=Look for a `ciel db migrate` request",
        "",
        "[Timer]",
        "OnBootSec=30s",
        # Counted from the end of the last run: a long migration never overlaps itself.
        f"OnUnitInactiveSec={MIGRATION_POLL_SECONDS}s",
        "AccuracySec=1s",
        "",
        "[Install]",
        "WantedBy=timers.target",
        "",
    ])
    return [
        {"path": MIGRATION_RUNNER, "owner": "root:root", "permissions": "0755",
         "content": embedded_script(MIGRATION_RUNNER_SOURCE)},
        {"path": f"/etc/systemd/system/{MIGRATION_UNIT}", "owner": "root:root", "permissions": "0644",
         "content": service},
        {"path": f"/etc/systemd/system/{MIGRATION_TIMER}", "owner": "root:root", "permissions": "0644",
         "content": timer},
    ]


def _journal_source(label: str, unit: str, labels: dict[str, str]) -> list[str]:
    listed = ", ".join(f'{key} = "{value}"' for key, value in labels.items())
    return [
        f'loki.source.journal "{label}" {{',
        # One unit per source: Alloy's matches take no "+" (logical OR).
        f'  matches    = "_SYSTEMD_UNIT={unit}"',
        f"  labels     = {{ {listed} }}",
        "  forward_to = [loki.write.cockpit.receiver]",
        "}",
    ]


def _alloy_config(machine: AppMachine) -> str:
    labels = {"app": "ciel", "environment": machine.environment, "role": machine.role}
    migrations = (_journal_source("migrations", MIGRATION_UNIT, {**labels, "unit": MIGRATION_LOG_LABEL})
                  if machine.role == "api" else [])
    return "\n".join([
        *_journal_source("ciel", UNIT, labels),
        *migrations,
        'loki.write "cockpit" {',
        "  endpoint {",
        # The logs source's push_url is the full Loki push endpoint (<url>/loki/api/v1/push).
        f'    url     = "{machine.logs_push_url}"',
        # Headers are plain strings to Alloy, and the file ends with a newline.
        '    headers = { "X-Token" = string.trim_space(convert.nonsensitive(local.file.cockpit_token.content)) }',
        "  }",
        "}",
        # Written by ciel-secrets (root:alloy 0640), re-read when it changes.
        'local.file "cockpit_token" {',
        f'  filename  = "{COCKPIT_TOKEN_FILE}"',
        "  is_secret = true",
        "}",
        "",
    ])


def app_user_data(machine: AppMachine) -> str:
    files = [
        *secrets_write_files(machine.secrets, machine_secrets_config(machine)),
        {"path": f"/etc/systemd/system/{UNIT}", "owner": "root:root", "permissions": "0644",
         "content": _unit(machine)},
    ]
    if machine.role == "api":
        files += _migration_units()
    commands = ["systemctl enable --now docker"]
    ship_logs = bool(machine.logs_push_url and machine.logs_token_secret)
    if ship_logs:
        # Installed before the app's first start, so ciel-secrets finds the alloy group for
        # the token file; the configuration is staged root-only until then.
        files.append({"path": "/etc/ciel/alloy.alloy", "owner": "root:root", "permissions": "0600",
                      "content": _alloy_config(machine)})
        commands += [
            "install -d -m 0755 /etc/apt/keyrings",
            "curl -fsSL https://apt.grafana.com/gpg.key | gpg --dearmor -o /etc/apt/keyrings/grafana.gpg",
            "echo 'deb [signed-by=/etc/apt/keyrings/grafana.gpg] https://apt.grafana.com stable main' "
            "> /etc/apt/sources.list.d/grafana.list",
            "apt-get update && apt-get install -y alloy",
            "install -o root -g alloy -m 0640 /etc/ciel/alloy.alloy /etc/alloy/config.alloy",
            "usermod -aG systemd-journal alloy",
        ]
    commands += ["systemctl daemon-reload", f"systemctl enable --now {UNIT}"]
    if machine.role == "api":
        commands.append(f"systemctl enable --now {MIGRATION_TIMER}")
    if ship_logs:
        commands.append("systemctl enable --now alloy")
    return render({
        "package_update": True,
        "packages": ["docker.io", "curl", "gpg", "python3"],
        "write_files": files,
        "runcmd": commands,
    })
