"""One real HAProxy per load balancer, configured from the LB API's objects.

Scaleway's managed load balancer is HAProxy: every change through the API renders a new
configuration and reloads it. The lab does the same on loopback. Each LB gets its own
master-worker process tree (started under the runtime's Supervisor), its own folder
(haproxy.cfg, the certificates of its TLS frontends, the master CLI socket) and binds
its frontends on its public IPv4 addresses, which the lab hands out on loopback
(lab/addresses.py). Backend servers are dialled at the loopback address standing for
their private address, never at the private address itself.

A reload is HAProxy's own graceful one: the new configuration is written atomically,
checked with `haproxy -c`, then the master gets SIGUSR2; it starts a new worker, and the
old worker stops accepting but finishes its in-flight requests and keep-alive
connections, for at most HARD_STOP_AFTER. The servers' health states are carried over
the reload through HAProxy's server-state file, as a managed LB would not forget that a
server is down because a route was added.
"""

from __future__ import annotations

import csv
import datetime
import io
import ipaddress
import logging
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lab import addresses
from lab.objectstorage import (
    Authority,  # the lab's CA: made once per lab folder, shared with the S3 proxy
)
from lab.processes import Supervisor, socket_dir

log = logging.getLogger(__name__)

# Debian installs it in /usr/sbin, which is not on a user's PATH.
HAPROXY = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin") or "haproxy"
# How long an old worker may keep serving in-flight requests and keep-alive connections
# after a reload before it is stopped. Bounded so reloads in a row do not pile up workers.
HARD_STOP_AFTER = "30s"
READY_TIMEOUT = 10.0  # seconds for a (re)started HAProxy to run its new worker
CHECK_TIMEOUT = 20.0  # seconds for `haproxy -c`
# Scaleway's documented defaults where the API object leaves a timeout unset (ms).
DEFAULT_TIMEOUTS = {"connect": 5000, "server": 300_000, "client": 300_000, "tunnel": 900_000}
RISE = 2  # consecutive passing checks before a down server is back (HAProxy's default)
SSL_MIN_VERSION = {"ssl_compatibility_level_modern": "TLSv1.3", "ssl_compatibility_level_intermediate": "TLSv1.2",
                   "ssl_compatibility_level_old": "TLSv1.0"}
PROXY_PROTOCOL = {"proxy_protocol_v1": "send-proxy", "proxy_protocol_v2": "send-proxy-v2",
                  "proxy_protocol_v2_ssl": "send-proxy-v2-ssl", "proxy_protocol_v2_ssl_cn": "send-proxy-v2-ssl-cn"}
PASSED_CHECKS = {"L4OK", "L6OK", "L7OK"}
# A check whose status is one of these has not run yet (INI) or is not a check at all.
UNRUN_CHECKS = {"", "INI", "UNK"}


class ConfigurationRejected(RuntimeError):
    """HAProxy refused the rendered configuration; the previous one keeps running."""


# --- the lab CA's leaf certificates ------------------------------------------------------

def issue_leaf_pem(ca_directory: Path, names: list[str], path: Path) -> Path:
    """Write `path` (0600): a certificate for `names` (the first is the common name, all
    are subject alternative names) signed by the lab's CA in `ca_directory`, followed by
    its private key, as HAProxy's `crt` reads it. Kept when it already covers `names`."""
    if path.exists() and _covers(path, names):
        return path
    authority = Authority(ca_directory)
    key = ec.generate_private_key(ec.SECP256R1())
    issued = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    alternative = []
    for name in dict.fromkeys(names):  # ordered, without repeats
        try:
            alternative.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alternative.append(x509.DNSName(name))
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, names[0])]))
            .issuer_name(authority.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(issued)
            .not_valid_after(issued + datetime.timedelta(days=90))  # a Let's Encrypt lifetime
            .add_extension(x509.SubjectAlternativeName(alternative), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
                           critical=False)
            .sign(authority.key, hashes.SHA256()))
    pem = (leaf.public_bytes(serialization.Encoding.PEM)
           + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                               serialization.NoEncryption()))
    _write_private(path, pem)
    return path


def _covers(path: Path, names: list[str]) -> bool:
    try:
        leaf = x509.load_pem_x509_certificate(path.read_bytes())
        present = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        held = {str(value) for value in present.get_values_for_type(x509.DNSName)}
        held |= {str(value) for value in present.get_values_for_type(x509.IPAddress)}
        still_valid = leaf.not_valid_after_utc > datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        return held == set(names) and still_valid
    except (OSError, ValueError, x509.ExtensionNotFound):
        return False


def _write_private(path: Path, content: bytes) -> None:
    """Atomically, readable by the owner only (it holds a private key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as out:
        out.write(content)
    os.replace(temporary, path)


# --- rendering -----------------------------------------------------------------------------

def _name(prefix: str, object_id: str) -> str:
    return f"{prefix}-{object_id}"


def _ms(value, default: int) -> int:
    return int(value) if isinstance(value, (int, float)) and value > 0 else default


def _mine(lab, collection: str, lb_id: str) -> list[dict]:
    return sorted((obj for obj in lab.objects(collection).values() if obj.get("_lb_id") == lb_id),
                  key=lambda obj: (obj.get("created_at", ""), obj["id"]))


def server_names(backend: dict) -> dict[str, str]:
    """HAProxy server name → the pool's server IP. Names are the IPs themselves (readable in
    stats and logs); a repeated IP gets a suffix."""
    names: dict[str, str] = {}
    for server_ip in backend["pool"]:
        name, extra = server_ip, 1
        while name in names:
            extra += 1
            name = f"{server_ip}_{extra}"
        names[name] = server_ip
    return names


def _health_check_lines(backend: dict) -> tuple[list[str], list[str]]:
    """(backend lines, server options) of the backend's health check."""
    check = backend.get("health_check") or {}
    lines, options = [], ["check"]
    http = check.get("http_config") or check.get("https_config")
    if http is not None:
        method, uri = http.get("method") or "GET", http.get("uri") or "/"
        send = f"http-check send meth {method} uri {uri}"
        if http.get("host_header"):
            send += f" hdr Host {http['host_header']}"
        lines += ["option httpchk", send]
        if http.get("code"):
            lines.append(f"http-check expect status {int(http['code'])}")
        if check.get("https_config") is not None:
            options += ["check-ssl", "verify none"]
            if http.get("sni"):
                options.append(f"check-sni {http['sni']}")
    # Other checks (tcp, mysql, pgsql, ldap, redis) are plain TCP connections here.
    lines.append(f"timeout check {_ms(check.get('check_timeout'), 30000)}")
    options += [f"inter {_ms(check.get('check_delay'), 60000)}",
                f"fall {max(1, int(check.get('check_max_retries') or 2))}", f"rise {RISE}"]
    transient = check.get("transient_check_delay")
    if isinstance(transient, str) and transient.endswith("s"):  # as the API words it: "0.500s"
        options.append(f"fastinter {max(1, round(float(transient[:-1]) * 1000))}")
    if check.get("port") and check["port"] != backend["forward_port"]:
        options.append(f"port {int(check['port'])}")
    if check.get("check_send_proxy"):
        options.append("check-send-proxy")
    return lines, options


def _backend_section(backend: dict) -> list[str]:
    mode = "http" if backend["forward_protocol"] == "http" else "tcp"
    algorithm = {"leastconn": "leastconn", "first": "first"}.get(backend.get("forward_port_algorithm"), "roundrobin")
    lines = [f"backend {_name('b', backend['id'])}", f"  mode {mode}", f"  balance {algorithm}",
             f"  timeout connect {_ms(backend.get('timeout_connect'), DEFAULT_TIMEOUTS['connect'])}",
             f"  timeout server {_ms(backend.get('timeout_server'), DEFAULT_TIMEOUTS['server'])}",
             f"  timeout tunnel {_ms(backend.get('timeout_tunnel'), DEFAULT_TIMEOUTS['tunnel'])}"]
    if isinstance(backend.get("max_retries"), int):
        lines.append(f"  retries {backend['max_retries']}")
    if isinstance(backend.get("redispatch_attempt_count"), int):
        lines.append(f"  option redispatch {backend['redispatch_attempt_count']}")
    check_lines, options = _health_check_lines(backend)
    lines += [f"  {line}" for line in check_lines]
    sticky = backend.get("sticky_sessions")
    if sticky == "cookie" and mode == "http" and backend.get("sticky_sessions_cookie_name"):
        lines.append(f"  cookie {backend['sticky_sessions_cookie_name']} insert indirect nocache")
    elif sticky == "table":
        lines += ["  stick-table type ip size 100k expire 30m", "  stick on src"]
    if backend.get("on_marked_down_action") == "shutdown_sessions":
        options.append("on-marked-down shutdown-sessions")
    proxy = PROXY_PROTOCOL.get(backend.get("proxy_protocol")) or ("send-proxy-v2" if backend.get("send_proxy_v2")
                                                                  else None)
    if proxy:
        options.append(proxy)
    if backend.get("ssl_bridging"):
        # The lab's servers have no certificates of a CA HAProxy could check.
        options += ["ssl", "verify none"]
    if isinstance(backend.get("max_connections"), int):
        options.append(f"maxconn {backend['max_connections']}")
    for index, (name, server_ip) in enumerate(server_names(backend).items()):
        try:
            target = addresses.require_loopback(addresses.loopback_for(server_ip))
        except ValueError:
            # No loopback stands for it (a public address, IPv6): never dialled; listed in
            # maintenance so the stats still show the server.
            lines.append(f"  server {name} 127.0.0.1:{backend['forward_port']} disabled")
            continue
        extra = [f"cookie s{index}"] if sticky == "cookie" and mode == "http" else []
        lines.append(f"  server {name} {target}:{backend['forward_port']} {' '.join(options + extra)}")
    return lines


def _acl_condition(acl: dict, mode: str) -> str | None:
    """HAProxy's condition for one API ACL, `if ...` or `unless ...` (the API's `invert`);
    None when it can never match in this mode."""
    match, parts = acl["match"], []
    subnets = [subnet for subnet in match.get("ip_subnet") or [] if subnet]
    if subnets:
        parts.append("{ src " + " ".join(subnets) + " }")
    http_filter, values = match.get("http_filter") or "acl_http_filter_none", match.get("http_filter_value") or []
    if http_filter != "acl_http_filter_none":
        if mode != "http" or not values:
            return None
        fetch = {"path_begin": "path_beg", "path_end": "path_end", "regex": "path_reg"}.get(http_filter)
        if http_filter == "http_header_match" and match.get("http_filter_option"):
            fetch = f"req.hdr({match['http_filter_option']}) -m str"
        if fetch is None:
            return None
        parts.append("{ " + fetch + " " + " ".join(str(value) for value in values) + " }")
    return ("unless " if match.get("invert") else "if ") + (" ".join(parts) or "TRUE")


def _acl_lines(acl: dict, mode: str) -> list[str]:
    condition = _acl_condition(acl, mode)
    if condition is None:
        return []
    action = acl["action"]["type"]
    if mode != "http":
        verb = {"allow": "accept", "deny": "reject"}.get(action)
        return [f"  tcp-request connection {verb} {condition}"] if verb else []
    if action in ("allow", "deny"):
        return [f"  http-request {action} {condition}"]
    if action == "redirect":
        redirect = acl["action"].get("redirect") or {}
        kind = "scheme" if redirect.get("type") == "scheme" else "location"
        code = int(redirect.get("code") or 302)
        return [f"  http-request redirect {kind} {redirect.get('target') or 'https'} code {code} {condition}"]
    return []


def _route_condition(route: dict, terminated_tls: bool) -> str:
    match = route["match"]
    if match.get("host_header") is not None:
        host = match["host_header"].lower()
        fetch = "req.hdr(host),field(1,:),lower"
        return (f"{{ {fetch} -m str {host} }} || {{ {fetch} -m end .{host} }}" if match.get("match_subdomains")
                else f"{{ {fetch} -m str {host} }}")
    if match.get("sni") is not None:
        fetch = "ssl_fc_sni" if terminated_tls else "req.ssl_sni"
        return f"{{ {fetch} -i {match['sni']} }}"
    return f"{{ path_beg {match['path_begin']} }}"


def render(lab, lb_id: str, folder: Path, certificate_files: dict[str, Path], sockets: Path | None = None) -> str:
    """The LB's haproxy.cfg from the lab's objects (its stats socket in `sockets`, default `folder`)."""
    lb = lab.objects("lb")[lb_id]
    binds = [ip["ip_address"] for ip_id in lb["_ip_ids"]
             if (ip := lab.objects("lb_ip").get(ip_id)) and ":" not in ip["ip_address"]]
    binds = [addresses.require_loopback(address) for address in binds]
    backends = {backend["id"]: backend for backend in _mine(lab, "lb_backend", lb_id)}
    lines = ["global",
             f"  stats socket {(sockets or folder) / 'stats.sock'} mode 600 level admin expose-fd listeners",
             f"  hard-stop-after {HARD_STOP_AFTER}",
             f"  server-state-file {folder / 'server-state'}",
             "",
             "defaults",
             f"  timeout client {DEFAULT_TIMEOUTS['client']}",
             f"  timeout connect {DEFAULT_TIMEOUTS['connect']}",
             f"  timeout server {DEFAULT_TIMEOUTS['server']}",
             "  load-server-state-from-file global",
             ""]
    for frontend in _mine(lab, "lb_frontend", lb_id):
        default = backends.get(frontend["_backend_id"])
        if default is None or not binds:
            continue
        mode = "http" if default["forward_protocol"] == "http" else "tcp"
        tls = [certificate_files[cid] for cid in frontend.get("certificate_ids") or [] if cid in certificate_files]
        bind_options = ""
        if tls:
            bind_options = " ssl " + " ".join(f"crt {path}" for path in tls)
            level = SSL_MIN_VERSION.get(lb.get("ssl_compatibility_level"))
            bind_options += f" ssl-min-ver {level}" if level else ""
        lines += [f"frontend {_name('f', frontend['id'])}", f"  mode {mode}",
                  f"  timeout client {_ms(frontend.get('timeout_client'), DEFAULT_TIMEOUTS['client'])}"]
        lines += [f"  bind {address}:{frontend['inbound_port']}{bind_options}" for address in binds]
        if frontend.get("connection_rate_limit"):
            lines.append(f"  rate-limit sessions {int(frontend['connection_rate_limit'])}")
        if mode == "http":
            lines += ["  option forwardfor", f"  http-request set-header X-Forwarded-Proto {'https' if tls else 'http'}"]
        acls = sorted((acl for acl in lab.objects("lb_acl").values() if acl["_frontend_id"] == frontend["id"]),
                      key=lambda acl: (acl.get("index", 0), acl["id"]))
        for acl in acls:
            lines += _acl_lines(acl, mode)
        routes = [found for found in lab.objects("lb_route").values() if found["frontend_id"] == frontend["id"]]
        if mode == "tcp" and any(found["match"].get("sni") is not None for found in routes) and not tls:
            lines += ["  tcp-request inspect-delay 5s", "  tcp-request content accept if { req.ssl_hello_type 1 }"]
        for found in sorted(routes, key=lambda found: (found.get("created_at", ""), found["id"])):
            target = backends.get(found["backend_id"])
            if target is None or (mode == "tcp" and found["match"].get("sni") is None):
                continue  # host and path routes need HTTP
            lines.append(f"  use_backend {_name('b', target['id'])} if {_route_condition(found, bool(tls))}")
        lines += [f"  default_backend {_name('b', default['id'])}", ""]
    for backend in backends.values():
        lines += _backend_section(backend) + [""]
    return "\n".join(lines) + "\n"


# --- the stats ---------------------------------------------------------------------------

def health_from_stat(status: str, check_status: str) -> tuple[str, str]:
    """(server_state, last_health_check_status) as the Scaleway API words them, from the
    `status` and `check_status` columns of HAProxy's `show stat`."""
    status, check_status = status.strip(), check_status.strip().lstrip("* ")
    if check_status in UNRUN_CHECKS:
        last = "unknown"
    elif check_status == "L7OKC":  # passed conditionally (e.g. a 404 with disable-on-404)
        last = "condpass"
    elif check_status in PASSED_CHECKS:
        last = "passed"
    else:
        last = "failed"
    if status.startswith("MAINT"):
        return "stopped", "unknown"
    if last == "unknown":
        return "starting", "unknown"
    if status.startswith(("DRAIN", "NOLB")):
        return "stopping", last
    if status.startswith("UP"):
        return "running", last  # "UP 1/2": still up, but its last check failed
    if status.startswith("DOWN"):
        return ("starting" if " " in status else "stopped"), last  # "DOWN 1/2": coming back
    return "stopped", last


# --- the processes -------------------------------------------------------------------------

def _ask(socket_path: Path, command: str, timeout: float = 5.0) -> str:
    """One command on an HAProxy CLI socket (master or stats); its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(str(socket_path))
        connection.sendall(command.encode() + b"\n")
        connection.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := connection.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def _workers(show_proc: str) -> tuple[int, list[int]]:
    """(the master's reload count, the current workers' pids) from `show proc`."""
    reloads, workers, section = -1, [], "master"
    for line in show_proc.splitlines():
        if line.startswith("# workers"):
            section = "workers"
        elif line.startswith("# "):
            section = "other"
        elif line and not line.startswith("#"):
            fields = line.split()
            if len(fields) >= 3 and fields[1] == "master":
                reloads = int(fields[2])
            elif section == "workers" and fields[1] == "worker":
                workers.append(int(fields[0]))
    return reloads, workers


class LoadBalancerPlane:
    """The HAProxy of every load balancer of the lab, under `supervisor`, with their files
    in `directory`/haproxy (the lab CA is read from, or made in, `directory`)."""

    def __init__(self, supervisor: Supervisor, directory: Path) -> None:
        self.supervisor = supervisor
        self.directory = Path(directory)
        self.root = self.directory / "haproxy"
        self.lock = threading.RLock()
        self.rendered: dict[str, str] = {}  # lb id → the configuration its HAProxy runs
        self.errors: dict[str, str] = {}  # lb id → why its last configuration was refused
        self.reload_seconds: list[float] = []  # each reload: signal to new worker running

    def folder(self, lb_id: str) -> Path:
        return self.root / lb_id[:13]

    def sockets(self, lb_id: str) -> Path:
        """The LB's master and stats sockets: a short path (lab/processes.socket_dir)."""
        return socket_dir(self.directory, f"haproxy-{lb_id[:13]}")

    @staticmethod
    def process_name(lb_id: str) -> str:
        return f"haproxy/{lb_id}"

    def apply(self, lab, lb_id: str) -> None:
        """Make the LB's HAProxy run what the lab's objects say: start it, reload it
        gracefully when its configuration changed, or stop it if the LB is gone. Raises
        ConfigurationRejected (and keeps the running configuration) if HAProxy refuses it."""
        with self.lock:
            if lb_id not in lab.objects("lb"):
                self._stop_one(lb_id)
                return
            folder = self.folder(lb_id)
            folder.mkdir(parents=True, exist_ok=True)
            certificate_files = self._certificates(lab, lb_id, folder)
            text = render(lab, lb_id, folder, certificate_files, self.sockets(lb_id))
            running = self.supervisor.running(self.process_name(lb_id))
            if running and self.rendered.get(lb_id) == text:
                return
            candidate = folder / "haproxy.cfg.new"
            candidate.write_text(text)
            checked = subprocess.run([HAPROXY, "-c", "-q", "-f", str(candidate)], capture_output=True, text=True,
                                     timeout=CHECK_TIMEOUT, check=False)
            if checked.returncode != 0:
                self.errors[lb_id] = (checked.stdout + checked.stderr).strip()
                raise ConfigurationRejected(f"load balancer {lb_id}: HAProxy refuses the configuration: "
                                            f"{self.errors[lb_id]}")
            self.errors.pop(lb_id, None)
            os.replace(candidate, folder / "haproxy.cfg")
            if running:
                self._reload(lb_id, folder)
            else:
                self._start(lb_id, folder)
            self.rendered[lb_id] = text

    def apply_all(self, lab) -> None:
        """Every LB of the lab (a restarted lab), and no HAProxy for an LB that is gone."""
        for lb_id in list(lab.objects("lb")):
            try:
                self.apply(lab, lb_id)
            except ConfigurationRejected as refused:
                log.warning("%s", refused)
        for name in self.supervisor.names("haproxy/"):
            if name.split("/", 1)[1] not in lab.objects("lb"):
                self._stop_one(name.split("/", 1)[1])

    def server_stats(self, lab, lb_id: str, backend_id: str) -> dict[str, tuple[str, str]]:
        """Server IP → (server_state, last_health_check_status) of one backend, from its
        HAProxy's own statistics; empty if that HAProxy does not run."""
        backend = lab.objects("lb_backend").get(backend_id)
        if backend is None or not self.supervisor.running(self.process_name(lb_id)):
            return {}
        try:
            answer = self._ask_worker(lb_id, "show stat")
        except OSError:
            return {}
        names, proxy, found = server_names(backend), _name("b", backend_id), {}
        for row in csv.DictReader(io.StringIO(answer.lstrip("# "))):
            if row.get("pxname") == proxy and row.get("svname") in names:
                found[names[row["svname"]]] = health_from_stat(row.get("status", ""), row.get("check_status", ""))
        return found

    def stop(self) -> None:
        with self.lock:
            for name in self.supervisor.names("haproxy/"):
                self._stop_one(name.split("/", 1)[1])

    # --- internals -------------------------------------------------------------------------

    def _certificates(self, lab, lb_id: str, folder: Path) -> dict[str, Path]:
        files = {}
        for certificate in _mine(lab, "lb_certificate", lb_id):
            names = [certificate["common_name"], *certificate.get("subject_alternative_name", [])]
            files[certificate["id"]] = issue_leaf_pem(self.directory, names,
                                                      folder / "certificates" / f"{certificate['id']}.pem")
        return files

    def _master_socket(self, lb_id: str) -> Path:
        return self.sockets(lb_id) / "master.sock"

    def _ask_worker(self, lb_id: str, command: str) -> str:
        # Through the master CLI: "@1" is the current worker, whatever reloads happened.
        return _ask(self._master_socket(lb_id), f"@1 {command}")

    def _start(self, lb_id: str, folder: Path) -> None:
        master = self._master_socket(lb_id)
        master.unlink(missing_ok=True)
        (self.sockets(lb_id) / "stats.sock").unlink(missing_ok=True)
        started = time.monotonic()
        process = self.supervisor.start(self.process_name(lb_id),
                                        [HAPROXY, "-W", "-S", f"{master},mode,600", "-f", str(folder / "haproxy.cfg")],
                                        cwd=folder)
        self._wait_for_new_worker(lb_id, process, previous_reloads=-1, previous_workers=[], started=started)

    def _reload(self, lb_id: str, folder: Path) -> None:
        process = self.supervisor.get(self.process_name(lb_id))
        reloads, workers = _workers(_ask(self._master_socket(lb_id), "show proc"))
        try:  # the new worker starts with the old one's view of which servers are down
            (folder / "server-state").write_text(self._ask_worker(lb_id, "show servers state"))
        except OSError:
            pass
        started = time.monotonic()
        process.send_signal(signal.SIGUSR2)
        self._wait_for_new_worker(lb_id, process, reloads, workers, started)
        self.reload_seconds.append(time.monotonic() - started)

    def _wait_for_new_worker(self, lb_id: str, process, previous_reloads: int, previous_workers: list[int],
                             started: float) -> None:
        deadline = started + READY_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ConfigurationRejected(f"load balancer {lb_id}: HAProxy exited ({process.returncode}); "
                                            f"see {self.supervisor.logs}")
            try:
                reloads, workers = _workers(_ask(self._master_socket(lb_id), "show proc", timeout=1.0))
                if reloads > previous_reloads and set(workers) - set(previous_workers):
                    return
            except (OSError, ValueError):
                pass  # the master re-executes itself during a reload: its socket comes back
            time.sleep(0.02)
        raise ConfigurationRejected(f"load balancer {lb_id}: no new HAProxy worker within {READY_TIMEOUT}s")

    def _stop_one(self, lb_id: str) -> None:
        self.supervisor.stop(self.process_name(lb_id))
        self.rendered.pop(lb_id, None)
        self.errors.pop(lb_id, None)
        shutil.rmtree(self.folder(lb_id), ignore_errors=True)


def haproxy_available() -> bool:
    return shutil.which(HAPROXY) is not None or os.access(HAPROXY, os.X_OK)
