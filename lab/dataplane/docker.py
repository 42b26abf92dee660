"""A stand-in for the `docker` command on a lab machine, as far as `ciel-migrate`
(infra/cloudinit/run_migration.py) uses it: the Ciel image is the missing piece here.

    docker pull [--quiet] IMAGE          says it pulled IMAGE
    docker run [options] --env-file F IMAGE
                                         runs the stand-in image (lab/dataplane/standin.py)
                                         in the mode APP_MODE in F says, with F as its
                                         environment; only APP_MODE=migrate runs this way
                                         (the app's own container is the lab's stand-in
                                         process, started by lab/dataplane/apps.py)

The lab's folder comes from CIEL_LAB_DIR, which the lab's timer sets.
"""

from __future__ import annotations

import os
import subprocess
import sys

from lab.dataplane.apps import image_tag
from lab.dataplane.standin import _env_file

OPTIONS_WITH_A_VALUE = {"--name", "--network", "--env-file", "-e", "--env", "--log-driver"}


def run(arguments: list[str]) -> int:
    options: dict[str, str] = {}
    index = 0
    while index < len(arguments) and arguments[index].startswith("-"):
        option = arguments[index]
        if option in OPTIONS_WITH_A_VALUE:
            options[option] = arguments[index + 1]
            index += 2
        else:
            index += 1
    if index >= len(arguments):
        print("docker run: no image", file=sys.stderr)
        return 125
    image, env_file = arguments[index], options.get("--env-file")
    mode = _env_file(env_file).get("APP_MODE") if env_file else None
    if mode != "migrate":
        print(f"docker run (lab): runs APP_MODE=migrate only, not {mode}", file=sys.stderr)
        return 125
    return subprocess.call([sys.executable, "-m", "lab.dataplane.standin", "--mode", "migrate", "--name",
                            options.get("--name", "ciel-migrate"), "--version", image_tag(image),
                            "--env-file", env_file, "--lab-dir", os.environ["CIEL_LAB_DIR"]])


def main(argv: list[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["pull"] and len(arguments) > 1:
        print(f"{arguments[-1]}: pulled (lab)", flush=True)
        return 0
    if arguments[:1] == ["run"]:
        return run(arguments[1:])
    print(f"docker (lab): not supported here: {' '.join(arguments[:2])}", file=sys.stderr)
    return 125


if __name__ == "__main__":
    sys.exit(main())
