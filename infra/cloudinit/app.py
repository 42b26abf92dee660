"""Cloud-init for the machines that run the Ciel image (APP_MODE=api or worker).

Docker from Debian, a read-only registry login, the image at the configured tag, run by a
systemd unit that restarts it on failure and stops it gracefully (the worker gets enough
time to finish in-flight jobs). Container logs go to journald and, when enabled, Grafana
Alloy ships them to the Cockpit logs source.

Where the secrets sit, and why there: the app's settings (including DATABASE_URL, keys)
are written by cloud-init to /etc/ciel/app.env (0600, root) and handed to Docker with
--env-file, so they never appear on a command line (`ps`) or in the unit file. The
registry password sits in /etc/ciel/registry-password (0600, root). Both also travel in
the instance's user data, which Scaleway's metadata API serves only to requests from a
privileged source port, i.e. to root on that instance. A less-privileged process on the
machine can read none of them; `docker inspect` needs root (or the docker group, which we
give to no one). The alternative — fetching from Secret Manager at boot — still needs a
credential in the user data, so it moves the same secret without removing it.
"""

from __future__ import annotations

from dataclasses import dataclass

from infra.cloudinit import render

ENV_FILE = "/etc/ciel/app.env"
REGISTRY_PASSWORD_FILE = "/etc/ciel/registry-password"
UNIT = "ciel.service"
API_PORT = 8080


@dataclass(frozen=True)
class AppMachine:
    """Everything one role's user data depends on; a change here changes that user data."""

    role: str  # "api" or "worker"
    environment: str  # dev, staging, prod
    registry_host: str  # rg.fr-par.scw.cloud
    image: str  # rg.fr-par.scw.cloud/ciel-dev/ciel:1.4.2
    registry_password: str
    app_env: dict[str, str]  # the image's configuration contract (values may be tokens)
    stop_timeout_seconds: int  # how long `docker stop` waits before SIGKILL
    logs_push_url: str | None = None  # Cockpit logs source push URL; None: logs stay local
    logs_push_token: str | None = None


def _env_file(machine: AppMachine) -> str:
    settings = {**machine.app_env, "APP_MODE": machine.role}
    if machine.role == "api":
        settings["HTTP_ADDR"] = f"0.0.0.0:{API_PORT}"
    lines = [f"{key}={value}" for key, value in sorted(settings.items())]
    return "\n".join(lines) + "\n"


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
        "ExecStartPre=-/usr/bin/docker rm -f ciel",
        f"ExecStartPre=/usr/bin/docker pull {machine.image}",
        f"ExecStart=/usr/bin/docker run --rm --name ciel --env-file {ENV_FILE} {publish}"
        f"--log-driver=journald --stop-signal SIGTERM --stop-timeout {timeout} {machine.image}",
        f"ExecStop=/usr/bin/docker stop -t {timeout} ciel",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])


def _alloy_config(machine: AppMachine) -> str:
    return "\n".join([
        'loki.source.journal "ciel" {',
        f'  matches    = "_SYSTEMD_UNIT={UNIT}"',
        f'  labels     = {{ app = "ciel", environment = "{machine.environment}", role = "{machine.role}" }}',
        "  forward_to = [loki.write.cockpit.receiver]",
        "}",
        'loki.write "cockpit" {',
        "  endpoint {",
        f'    url     = "{machine.logs_push_url}/loki/api/v1/push"',
        f'    headers = {{ "X-Token" = "{machine.logs_push_token}" }}',
        "  }",
        "}",
        "",
    ])


def app_user_data(machine: AppMachine) -> str:
    files = [
        {"path": ENV_FILE, "owner": "root:root", "permissions": "0600", "content": _env_file(machine)},
        {"path": REGISTRY_PASSWORD_FILE, "owner": "root:root", "permissions": "0600",
         "content": machine.registry_password + "\n"},
        {"path": f"/etc/systemd/system/{UNIT}", "owner": "root:root", "permissions": "0644",
         "content": _unit(machine)},
    ]
    commands = [
        "systemctl enable --now docker",
        f"docker login {machine.registry_host} -u nologin --password-stdin < {REGISTRY_PASSWORD_FILE}",
        "systemctl daemon-reload",
        f"systemctl enable --now {UNIT}",
    ]
    if machine.logs_push_url and machine.logs_push_token:
        # Staged root-only; installed for the alloy group once the package has created it.
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
            "systemctl enable --now alloy",
        ]
    return render({
        "package_update": True,
        "packages": ["docker.io", "curl", "gpg"],
        "write_files": files,
        "runcmd": commands,
    })
