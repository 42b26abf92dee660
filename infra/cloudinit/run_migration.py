#!/usr/bin/env python3
"""ciel-migrate: run the schema migrations `ciel db migrate` asked this machine for.

Installed on every API machine as /usr/local/sbin/ciel-migrate by its cloud-init
(infra/cloudinit/app.py) and started every few seconds by ciel-migrate.timer. Each run:

1. reads the newest enabled version of the secret `migration-request` in the
   environment's Secret Manager folder, with the machine's reader key (the only
   credential it has): a JSON request {"id", "image", "server"}. No version yet, or a
   request for another machine: nothing to do.
2. skips a request this machine already ran (a marker per request id under
   /var/lib/ciel/migrations) or is running (a lock): a request runs once.
3. fetches the migrator's database URL (`migrator-database-url`; the app's container
   never gets it), writes it with APP_MODE=migrate to a root-only env file, pulls the
   image and runs it once: `docker run --rm --env-file ... IMAGE`. The registry login
   is ciel.service's own (its ExecStartPre logs Docker in before every start).
4. prints every line the migration prints, then `exit N`, each line prefixed with
   `ciel-migrate <id>:`. The unit's journal goes to Cockpit (Alloy), where
   `ciel db migrate` follows it: the machine needs no inbound path and no other key.

Standard library only; it reads Secret Manager through ciel-secrets' own client (the
file next to it). Embedded in user data that Terraform interpolates: never a dollar or
percent sign followed by an opening brace.
"""

import argparse
import fcntl
import importlib.machinery
import importlib.util
import json
import os
import socket
import subprocess
import sys

CONFIG = "/etc/ciel/secrets.json"
FETCH_SECRETS = "/usr/local/sbin/ciel-secrets"
REQUEST_SECRET = "migration-request"
MIGRATOR_SECRET = "migrator-database-url"
STATE_DIR = "/var/lib/ciel/migrations"
LOCK_FILE = "/run/ciel/migrate.lock"
ENV_FILE = "/run/ciel/migrate.env"
PREFIX = "ciel-migrate"  # app.py MIGRATION_LOG_LABEL: `ciel db migrate` finds the lines by it


def _secrets_client(path):
    """ciel-secrets, loaded as a module: one reader of Secret Manager on the machine."""
    loader = importlib.machinery.SourceFileLoader("ciel_secrets", path)
    spec = importlib.util.spec_from_loader("ciel_secrets", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def _say(request_id, line):
    print(f"{PREFIX} {request_id}: {line}", flush=True)


def _run_streaming(request_id, argv):
    """Run `argv`, printing each line of its output as it comes; its exit code."""
    try:
        process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as error:
        _say(request_id, f"cannot run {argv[0]}: {error.strerror}")
        return 127
    for line in process.stdout:
        _say(request_id, line.rstrip("\n"))
    return process.wait()


def run_request(request, *, secrets, config, token, api_url, root, docker):
    """Run one request's migration; its exit code (0: the schema is current)."""
    request_id, image = request["id"], request["image"]
    _say(request_id, f"started on {request['server']}: {image}, APP_MODE=migrate, as the migrator")
    try:
        _, url = secrets.fetch(config, token, api_url, MIGRATOR_SECRET)
    except secrets.FetchError as error:
        _say(request_id, f"cannot read the migrator's credentials: {error}")
        return 1
    env_file = root + ENV_FILE
    secrets._write(env_file, b"APP_MODE=migrate\n" + secrets._env_line("DATABASE_URL", url).encode(), 0o600)
    try:
        code = _run_streaming(request_id, [docker, "pull", "--quiet", image])
        if code == 0:
            code = _run_streaming(request_id, [docker, "run", "--rm", "--name", "ciel-migrate", "--network", "host",
                                               "--env-file", env_file, image])
    finally:
        os.unlink(env_file)
    return code


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ciel-migrate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--api-url", help="Scaleway API base URL (default: the configuration's)")
    parser.add_argument("--root", default="", help="prefix of every path read or written (tests)")
    parser.add_argument("--server-name", default=socket.gethostname(),
                        help="this machine's name, as requests name it (default: the host name, which Scaleway "
                             "sets to the server's name)")
    parser.add_argument("--docker", default="/usr/bin/docker")
    args = parser.parse_args(argv)
    root = args.root
    secrets = _secrets_client(root + FETCH_SECRETS)
    config, token = secrets.read_config(root, args.config)
    api_url = args.api_url or config["api_url"]
    try:
        _, data = secrets.fetch(config, token, api_url, REQUEST_SECRET)
    except secrets.FetchError as error:
        if "not found" in str(error):
            return 0  # no migration was ever requested
        print(f"{PREFIX}: {error}", file=sys.stderr)
        return 1
    try:
        request = json.loads(data)
        request_id, server = str(request["id"]), str(request["server"])
    except (ValueError, KeyError, TypeError):
        print(f"{PREFIX}: the newest {REQUEST_SECRET} version is not a request; ignored", file=sys.stderr)
        return 0
    if server != args.server_name or "/" in request_id:
        return 0
    marker = os.path.join(root + STATE_DIR, request_id)
    if os.path.exists(marker):
        return 0
    os.makedirs(os.path.dirname(root + LOCK_FILE), exist_ok=True)
    with open(root + LOCK_FILE, "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return 0  # this request (or another) is running: the timer's next run looks again
        if os.path.exists(marker):
            return 0
        code = run_request(request, secrets=secrets, config=config, token=token, api_url=api_url, root=root,
                           docker=args.docker)
        os.makedirs(root + STATE_DIR, mode=0o700, exist_ok=True)
        with open(marker, "w") as stream:
            stream.write(f"{code}\n")
        # The last line, which `ciel db migrate` waits for.
        _say(request_id, f"exit {code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
