#!/usr/bin/env python3
"""ciel-secrets: fetch a machine's secrets from Scaleway Secret Manager and write the files
its service reads (for the app: the env file handed to `docker run --env-file`, the
registry password, the Cockpit token; for the self-managed Redis: its password).

Installed on every app machine as /usr/local/sbin/ciel-secrets by its cloud-init
(infra/cloudinit/app.py); ciel.service runs it before every start, so a reboot or a
restart reads the newest enabled version of each secret. `systemctl reload ciel` runs it
with --restart-if-changed: the service restarts (gracefully) only when a revision changed.

The machine's one credential is a Secret Manager reader key (/etc/ciel/secrets-reader-key,
root only). Everything else in /etc/ciel/secrets.json is not secret: where to ask, which
secret goes where, and the app's plain settings.

Standard library only: it runs with the python3 that every cloud-init image has. It is
embedded in user data that Terraform interpolates, so it must never contain a dollar or
percent sign followed by an opening brace.
"""

import argparse
import base64
import grp
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

CONFIG = "/etc/ciel/secrets.json"
REVISIONS = "/run/ciel/secret-revisions.json"
ATTEMPTS = 6
# The newest version not disabled: disabling a bad version is how a rotation is undone.
REVISION = "latest_enabled"


class FetchError(Exception):
    pass


def _fetch(api_url, token, region, project_id, path, name):
    """(revision, bytes) of the secret `name` in folder `path`; retried on 429, 5xx and
    network errors with a growing pause, refused at once on 4xx (a wrong key or name)."""
    query = urllib.parse.urlencode({"project_id": project_id, "secret_path": path, "secret_name": name})
    url = (api_url.rstrip("/") + "/secret-manager/v1beta1/regions/" + region
           + "/secrets-by-path/versions/" + REVISION + "/access?" + query)
    request = urllib.request.Request(url, headers={"X-Auth-Token": token, "Accept": "application/json"})
    last = ""
    for attempt in range(ATTEMPTS):
        try:
            with urllib.request.urlopen(request, timeout=15) as answer:
                body = json.load(answer)
            return int(body["revision"]), base64.b64decode(body["data"])
        except urllib.error.HTTPError as error:
            if error.code == 403:
                raise FetchError(f"secret {path}/{name}: 403, the reader key may not read it (it needs "
                                 "SecretManagerSecretAccess on this project)") from None
            if error.code == 404:
                raise FetchError(f"secret {path}/{name}: not found, or no enabled version") from None
            if error.code < 500 and error.code != 429:
                raise FetchError(f"secret {path}/{name}: HTTP {error.code}") from None
            last = f"HTTP {error.code}"
        except (urllib.error.URLError, OSError, ValueError, KeyError) as error:
            last = error.__class__.__name__
        time.sleep(min(2 ** attempt, 20))
    raise FetchError(f"secret {path}/{name}: gave up after {ATTEMPTS} attempts ({last})")


def _write(target, content, mode, group=None):
    """Replace `target` atomically: a reader sees the old file or the new one, never half."""
    directory = os.path.dirname(target)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".ciel-secrets-")
    try:
        os.fchmod(handle, mode)
        if group is not None and os.geteuid() == 0:
            try:
                os.fchown(handle, 0, grp.getgrnam(group).gr_gid)
            except KeyError:
                pass  # the group's package is not installed yet: root only until the next run
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.replace(temporary, target)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _env_line(key, value):
    text = value.decode()
    if "\n" in text or "\r" in text:
        raise FetchError(f"{key}: a value with a line break cannot go in a Docker env file")
    return f"{key}={text}\n"


def read_config(root, path=CONFIG):
    """(the machine's secrets.json, its reader key)."""
    with open(root + path) as stream:
        config = json.load(stream)
    with open(root + config["token_file"]) as stream:
        return config, stream.read().strip()


def fetch(config, token, api_url, name):
    """(revision, bytes) of the secret `name` in the configuration's folder."""
    return _fetch(api_url, token, config["region"], config["project_id"], config["path"], name)


def materialize(config, token, api_url, root):
    """Fetch every secret the configuration names and write the files; returns the revisions."""
    env_secrets = config.get("env_secrets", {})
    names = sorted(set(env_secrets.values()) | {item["secret"] for item in config.get("files", [])})
    fetched = {name: fetch(config, token, api_url, name) for name in names}
    if config.get("env_file"):
        lines = [f"{key}={value}\n" for key, value in sorted(config.get("settings", {}).items())]
        lines += [_env_line(key, fetched[name][1]) for key, name in sorted(env_secrets.items())]
        _write(root + config["env_file"], "".join(lines).encode(), 0o600)
    for item in config.get("files", []):
        content = item.get("prefix", "").encode() + fetched[item["secret"]][1] + b"\n"
        _write(root + item["path"], content, int(item.get("mode", "0600"), 8), item.get("group"))
    return {name: revision for name, (revision, _) in fetched.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="ciel-secrets", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=CONFIG)
    parser.add_argument("--api-url", help="Scaleway API base URL (default: the configuration's)")
    parser.add_argument("--root", default="", help="prefix of every path written (tests)")
    parser.add_argument("--restart-if-changed", action="store_true",
                        help="restart ciel.service (without waiting) when a revision changed")
    args = parser.parse_args(argv)
    config, token = read_config(args.root, args.config)
    revisions_file = args.root + REVISIONS
    try:
        with open(revisions_file) as stream:
            before = json.load(stream)
    except (OSError, ValueError):
        before = {}
    try:
        revisions = materialize(config, token, args.api_url or config["api_url"], args.root)
    except FetchError as error:
        print(f"ciel-secrets: {error}", file=sys.stderr)
        return 1
    _write(revisions_file, json.dumps(revisions, sort_keys=True).encode(), 0o644)
    # Names and revisions only: never a value.
    print("ciel-secrets: " + ", ".join(f"{name}@{revision}" for name, revision in sorted(revisions.items())))
    if args.restart_if_changed and revisions != before:
        subprocess.run(["systemctl", "restart", "--no-block", config.get("unit", "ciel.service")], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
