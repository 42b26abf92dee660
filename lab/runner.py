"""`ciel lab up | down | env | status`: the lab as a background process on 127.0.0.1.

Its files live in the checkout's work folder (`.ciel/lab/`, or $CIEL_WORK_DIR/lab):
state.json (what the lab holds, kept across restarts), lab.pid, lab.json (its ports),
lab.log, moto-recording.jsonl (Object Storage and Queues requests, replayed at start so
buckets and queues survive a restart), and the CA that the Object Storage proxy signs
with (ca.pem; its key in ca-key.pem, 0600).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from foundation import paths
from foundation.errors import CielError, UsageError

# Credentials the lab accepts; formats the provider checks (they are no secret).
LAB_ACCESS_KEY = "SCWLABLABLABLABLAB00"
LAB_SECRET_KEY = "1ab1ab1a-0000-4000-8000-000000000000"
LAB_PROJECT_ID = "1ab1ab1a-0000-4000-8000-000000000001"


@dataclass(frozen=True)
class Ports:
    api: int = 46180
    s3: int = 46181
    proxy: int = 46182


def lab_dir() -> Path:
    return paths.work_dir() / "lab"


def _pid() -> int | None:
    try:
        pid = int((lab_dir() / "lab.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def running_ports() -> Ports | None:
    if _pid() is None:
        return None
    try:
        return Ports(**json.loads((lab_dir() / "lab.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None


def _port_free(port: int) -> bool:
    """Nothing listens on it (connections of a stopped lab lingering in TIME_WAIT do not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


# Ports after the API port that the lab's Kubernetes API server and etcd take (lab/kubernetes/).
DERIVED_PORTS = 3


def _ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel hands out to outgoing connections (Linux's default 32768-60999)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def free_ports(first: int = 20000, last: int = 32000) -> Ports:
    """Ports for a lab of its own (a rehearsal, a test): six consecutive free ones, the
    API's, Object Storage's, the proxy's and those derived from the API's.

    They are chosen outside the kernel's ephemeral range: etcd binds its port only when a
    cluster is created, a minute later, and meanwhile any outgoing connection on the
    machine (the load generator's, HAProxy's) may have taken it as its local port."""
    import random

    low, high = _ephemeral_port_range()
    candidates = [base for base in range(first, last, 8)
                  if base + 8 <= low or base > high]
    random.shuffle(candidates)
    for base in candidates[:200]:
        if all(_port_free(base + offset) for offset in range(3 + DERIVED_PORTS)):
            return Ports(base, base + 1, base + 2)
    raise CielError(f"no six consecutive free ports between {first} and {last} on 127.0.0.1 outside the "
                    f"ephemeral range {low}-{high}")


def _answers(ports: Ports) -> bool:
    """The API answers and Object Storage and the proxy accept connections (they start
    after the API: moto replays its recording first)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ports.api}/lab/v1/shapes", timeout=1):
            pass
        for port in (ports.s3, ports.proxy):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def up(ports: Ports = Ports(), timeout: float = 30.0) -> tuple[Ports, bool]:
    """Start the lab (or find it running). Returns its ports and whether it was started."""
    current = running_ports()
    if current and _answers(current):
        return current, False
    taken = [f"{name} {port}" for name, port in asdict(ports).items() if not _port_free(port)]
    if taken:
        raise UsageError(f"cannot start the lab: port(s) {', '.join(taken)} on 127.0.0.1 already in use (by another "
                         "program?). Free them, or choose others with --api-port/--s3-port/--proxy-port")
    directory = lab_dir()
    directory.mkdir(parents=True, exist_ok=True)
    log = open(directory / "lab.log", "a")
    process = subprocess.Popen(
        [sys.executable, "-m", "lab", "serve", "--dir", str(directory), "--api-port", str(ports.api),
         "--s3-port", str(ports.s3), "--proxy-port", str(ports.proxy)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        cwd=str(paths.REPO_ROOT))
    (directory / "lab.pid").write_text(str(process.pid))
    (directory / "lab.json").write_text(json.dumps(asdict(ports)))
    deadline = time.monotonic() + timeout
    while not _answers(ports):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            tail = (directory / "lab.log").read_text()[-1500:]
            raise CielError(f"the lab did not start (see {directory / 'lab.log'}):\n{tail}")
        time.sleep(0.1)
    return ports, True


def down(timeout: float = 40.0) -> bool:
    """Stop the lab; its state stays for the next `up`. Returns whether it was running."""
    pid = _pid()
    ports = running_ports()
    if pid is None:
        (lab_dir() / "lab.pid").unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _pid() is not None and time.monotonic() < deadline:
        time.sleep(0.05)
        try:  # reap it if it is our child (tests start it in-process)
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
    if _pid() is not None:
        os.kill(pid, signal.SIGKILL)
    try:  # whatever the lab started and did not stop (HAProxy, stand-ins, the API server): its group
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    (lab_dir() / "lab.pid").unlink(missing_ok=True)
    if ports:
        deadline = time.monotonic() + timeout
        while not all(_port_free(port) for port in asdict(ports).values()) and time.monotonic() < deadline:
            time.sleep(0.05)
    return True


def environment(ports: Ports) -> dict[str, str]:
    """What points the engine, the provider, the SDK and `ciel` at the lab."""
    directory = lab_dir()
    return {
        "SCW_API_URL": f"http://127.0.0.1:{ports.api}",
        "SCW_ACCESS_KEY": LAB_ACCESS_KEY,
        "SCW_SECRET_KEY": LAB_SECRET_KEY,
        "SCW_DEFAULT_PROJECT_ID": LAB_PROJECT_ID,
        "SCW_DEFAULT_ORGANIZATION_ID": LAB_PROJECT_ID,
        # The state backend and `ciel state bootstrap` talk to the lab's S3 directly; the
        # backend signs with the AWS variables (Object Storage takes the Scaleway keys).
        "CIEL_S3_ENDPOINT": f"http://127.0.0.1:{ports.s3}",
        "AWS_ACCESS_KEY_ID": LAB_ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": LAB_SECRET_KEY,
        # The provider builds https://s3.<region>.scw.cloud and the queues' endpoint itself;
        # Go's transport sends them through this proxy and trusts the lab's CA.
        "HTTPS_PROXY": f"http://127.0.0.1:{ports.proxy}",
        "SSL_CERT_FILE": str(directory / "ca.pem"),
        "NO_PROXY": "127.0.0.1,localhost",
        "CIEL_LAB": "1",
    }
