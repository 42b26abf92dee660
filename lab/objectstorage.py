"""Object Storage and Queues for the lab: S3 and SQS from moto, on 127.0.0.1.

moto is a maintained S3/SQS emulator; it stands in for the two Scaleway services that
speak AWS protocols. The Terraform state backend and `ciel state bootstrap` reach it
directly (CIEL_S3_ENDPOINT).

The provider builds its own endpoints (https://s3.<region>.scw.cloud, virtual-hosted
buckets below it, https://sqs.mnq.<region>.scaleway.com) and reaches them through
HTTPS_PROXY. The proxy here answers CONNECT for exactly those hosts, terminates TLS with
a certificate from the lab's own CA (what SSL_CERT_FILE trusts) and relays the
decrypted HTTP to moto. Any other host is refused from its name alone, before anything
is resolved or dialled: the only connection the proxy ever opens is to moto.

Two more kinds of hosts are answered, those of objects the lab's API holds (the API's
objects stay the truth: the proxy asks the families at every request):
- an Edge Services pipeline's (its DNS stage's default_fqdn <pipeline id>.svc.edge.scw.cloud,
  or a custom domain of it): GET and HEAD follow the pipeline's stages to its backend
  bucket, read ANONYMOUSLY: allowed where the bucket's policy lets Principal "*"
  s3:GetObject the key (200, or 404 for a missing object), refused otherwise (403); a
  chain that reaches no bucket answers 502 naming the broken link;
- a Cockpit logs data source's (<source id>.logs.cockpit.<region>.scw.cloud): the Loki API
  of lab/dataplane/logs.py, its entries kept in the proxy's memory.
"""

from __future__ import annotations

import base64
import datetime
import fnmatch
import http.client
import json
import logging
import os
import re
import ssl
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from socketserver import ThreadingMixIn
from urllib.parse import quote, unquote, urlsplit
from xml.sax.saxutils import escape

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from lab.dataplane.logs import LogStore, answer as logs_answer
from lab.families.cockpit import logs_source
from lab.families.edge_services import cdn_route
from lab.families.mnq import PERMISSIONS, sqs_credentials
from lab.runner import LAB_ACCESS_KEY, LAB_SECRET_KEY

REGIONS = ("fr-par", "nl-ams", "pl-waw")
S3_HOSTS = {f"s3.{region}.scw.cloud": region for region in REGIONS}
SQS_HOSTS = {f"sqs.mnq.{region}.scaleway.com": region for region in REGIONS}
# No dots: a dotted bucket name would not match Scaleway's wildcard certificate either.
BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")

MAX_CONNECTIONS = 64  # each holds a thread while its tunnel lives
IDLE_TIMEOUT = 30.0  # seconds a client may stay silent (TLS handshake included)
MOTO_TIMEOUT = 60.0
MAX_BODY = 256 * 1024 * 1024
# Not relayed: hop-by-hop headers (the body is relayed whole, with its own length), and
# moto's account header, which only the proxy sets.
NOT_RELAYED = {"connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "trailer",
               "transfer-encoding", "upgrade", "expect", "content-length", "x-moto-account-id"}

# SQS actions by the permission of Scaleway's queue credentials they need: looking a
# queue up is open to any permission, an action named nowhere here needs can_manage.
PUBLISH_ACTIONS = {"SendMessage", "SendMessageBatch"}
RECEIVE_ACTIONS = {"ReceiveMessage", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility",
                   "ChangeMessageVisibilityBatch"}
LOOKUP_ACTIONS = {"GetQueueUrl", "GetQueueAttributes"}
ACCESS_KEY = re.compile(r"Credential=([^/,\s]+)/")


def emulated(host: str) -> tuple[str, str] | None:
    """(service, region) for a host the lab emulates, from the name alone; None otherwise."""
    host = host.lower()
    if host in SQS_HOSTS:
        return "sqs", SQS_HOSTS[host]
    if host in S3_HOSTS:
        return "s3", S3_HOSTS[host]
    bucket, _, endpoint = host.partition(".s3.")
    if f"s3.{endpoint}" in S3_HOSTS and BUCKET_NAME.match(bucket):
        return "s3", S3_HOSTS[f"s3.{endpoint}"]
    return None


def served(host: str) -> tuple[str, str] | None:
    """(service, region) for a host the lab answers: an emulated endpoint (from its name), or
    the host of a pipeline ("cdn") or logs data source ("logs") the lab's API holds now."""
    found = emulated(host)
    if found is not None:
        return found
    if cdn_route(host) is not None:
        return "cdn", ""
    source = logs_source(host)
    return ("logs", source["region"]) if source is not None else None


class Authority:
    """The lab's CA (made once, kept in the lab folder) and a TLS context per emulated host."""

    def __init__(self, directory: Path) -> None:
        cert_path, key_path = directory / "ca.pem", directory / "ca-key.pem"
        if cert_path.exists() and key_path.exists():
            self.cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            self.key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        else:
            self.key = ec.generate_private_key(ec.SECP256R1())
            name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "ciel lab local CA")])
            self.cert = (_certificate(name, name, self.key.public_key(), days=3650)
                         .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                         .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                      content_commitment=False, key_encipherment=False,
                                                      data_encipherment=False, key_agreement=False,
                                                      encipher_only=False, decipher_only=False), critical=True)
                         .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                                        critical=False)
                         .sign(self.key, hashes.SHA256()))
            key_pem = self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())
            descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "wb") as out:
                out.write(key_pem)
            cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())  # one key for every leaf of this run
        self.contexts: dict[str, ssl.SSLContext] = {}
        self.lock = threading.Lock()
        self.directory = directory

    def context_for(self, host: str) -> ssl.SSLContext:
        with self.lock:
            if host not in self.contexts:
                self.contexts[host] = self._leaf_context(host)
            return self.contexts[host]

    def _leaf_context(self, host: str) -> ssl.SSLContext:
        # A Common Name holds 64 characters, fewer than a logs source's host: clients match the SAN.
        subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, host if len(host) <= 64 else "lab")])
        leaf = (_certificate(subject, self.cert.subject, self.leaf_key.public_key(), days=365)
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        pem = (leaf.public_bytes(serialization.Encoding.PEM)
               + self.leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # load_cert_chain reads only files: a private (0600) temporary one, gone once read.
        descriptor, path = tempfile.mkstemp(dir=self.directory, suffix=".pem")
        try:
            with os.fdopen(descriptor, "wb") as out:
                out.write(pem)
            context.load_cert_chain(path)
        finally:
            os.unlink(path)
        return context


def _certificate(subject: x509.Name, issuer: x509.Name, public_key, *, days: int) -> x509.CertificateBuilder:
    issued = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(days=1)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(issued)
            .not_valid_after(issued + datetime.timedelta(days=days)))


# Scaleway creates a bucket in the region of the endpoint it is asked at; moto, like AWS
# outside us-east-1, wants the region named in the body.
CREATE_BUCKET_IN = ("<CreateBucketConfiguration><LocationConstraint>{region}</LocationConstraint>"
                    "</CreateBucketConfiguration>")


def _creates_bucket(method: str, host: str, path: str) -> bool:
    """A CreateBucket: PUT on a bucket's root, virtual-hosted (`/`) or path-style (`/<bucket>`)."""
    if method != "PUT" or "?" in path:
        return False
    segments = path.strip("/").split("/")
    return segments == [""] if host not in S3_HOSTS else len(segments) == 1 and segments[0] != ""


class _Refusal(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


# --- the CDN's anonymous read ----------------------------------------------------------------

ANONYMOUS_READ = "s3:GetObject"
S3_ERROR = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
            "<Resource>{resource}</Resource></Error>")
# What a CDN GET or HEAD passes on to the bucket, and back.
CDN_REQUEST_HEADERS = ("range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since")


def _listed(value) -> list:
    return value if isinstance(value, list) else [value]


def _anonymous_statement(statement: dict, resource: str) -> bool:
    """The statement concerns anyone (Principal "*") reading `resource` (bucket/key). A
    statement the lab cannot evaluate (a Condition, a Not* element) does not apply."""
    if not isinstance(statement, dict) or any(key in statement for key in
                                              ("Condition", "NotPrincipal", "NotAction", "NotResource")):
        return False
    actions = [str(action).lower() for action in _listed(statement.get("Action") or [])]
    resources = [str(pattern) for pattern in _listed(statement.get("Resource") or [])]
    return (statement.get("Principal") == "*"
            and any(fnmatch.fnmatchcase(ANONYMOUS_READ.lower(), action) for action in actions)
            and any(fnmatch.fnmatchcase(resource, pattern) for pattern in resources))


def anonymous_read(policy_text: str | None, bucket: str, key: str) -> bool:
    """Whether a bucket policy lets anyone, unauthenticated, GetObject `key`: an Allow
    statement applies and no Deny does."""
    try:
        policy = json.loads(policy_text or "null")
    except ValueError:
        return False
    statements = _listed(policy.get("Statement") or []) if isinstance(policy, dict) else []
    resource = f"{bucket}/{key}"
    applying = [statement for statement in statements if _anonymous_statement(statement, resource)]
    return (any(statement.get("Effect") == "Allow" for statement in applying)
            and not any(statement.get("Effect") == "Deny" for statement in applying))


def _sqs_action(headers) -> str:
    return (headers.get("X-Amz-Target") or "").rpartition(".")[2]


def _allowed_by(action: str) -> tuple[str, ...]:
    """The permissions, any one of which lets credentials call this SQS action."""
    if action in PUBLISH_ACTIONS:
        return ("can_publish",)
    if action in RECEIVE_ACTIONS:
        return ("can_receive",)
    return PERMISSIONS if action in LOOKUP_ACTIONS else ("can_manage",)


def _sqs_account(headers, region: str) -> str:
    """The moto account of a signed SQS request: its project (so queue URLs and ARNs carry
    `project-<id>` as Scaleway's do), once the lab's credentials allow the action."""
    found = ACCESS_KEY.search(headers.get("Authorization") or "")
    credentials = sqs_credentials(found.group(1), region) if found else None
    if credentials is None:
        raise _Refusal(403, "InvalidClientTokenId",
                       f"no Queues credentials of an activated project in {region} have this access key")
    action = _sqs_action(headers)
    allowed_by = _allowed_by(action)
    if not any(credentials["permissions"].get(permission) for permission in allowed_by):
        raise _Refusal(403, "AccessDenied", f"these credentials may not call {action or 'this action'} "
                                            f"(it needs {' or '.join(allowed_by)})")
    return f"project-{credentials['project_id']}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: "_Proxy"
    tunnel: tuple[str, str, str] | None = None  # (host, service, region) once CONNECT succeeded

    def do_CONNECT(self) -> None:
        host, _, port = self.path.rpartition(":")
        target = served(host.lower()) if port == "443" and self.tunnel is None else None
        if target is None:
            self._refuse_plain("the lab emulates only Scaleway Object Storage and Queues endpoints, and the hosts "
                               f"of its Edge Services pipelines and Cockpit logs sources, not {self.path}")
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        tls = self.server.authority.context_for(host).wrap_socket(self.connection, server_side=True)
        self.connection, self.rfile, self.wfile = tls, tls.makefile("rb"), tls.makefile("wb")
        self.tunnel = (host.lower(), *target)
        self.close_connection = False

    def _relay(self) -> None:
        if self.tunnel is None:
            self._refuse_plain("the lab's proxy relays only CONNECT to emulated hosts")
            return
        host, service, region = self.tunnel
        try:
            body = self._body()
        except ValueError as error:
            self._refuse_plain(f"unreadable request body: {error}", status=400)
            return
        if service == "cdn":
            self._serve_cdn(host)
            return
        if service == "logs":
            source = logs_source(host)
            if source is None:
                self._send(404, "Not Found", [("Content-Type", "text/plain; charset=utf-8")],
                           f"the lab holds no logs data source for {host} any longer\n".encode())
                return
            status, headers, data = logs_answer(self.server.logs, self.command, self.path, self.headers, body, source)
            self._send(status, "", headers, data)
            return
        headers = [(name, value) for name, value in self.headers.items() if name.lower() not in NOT_RELAYED]
        try:
            if service == "sqs":
                headers.append(("x-moto-account-id", _sqs_account(self.headers, region)))
                body = body.replace(b"arn:scw:sqs:", b"arn:aws:sqs:")
            elif not body and _creates_bucket(self.command, host, self.path):
                body = CREATE_BUCKET_IN.format(region=region).encode()
            status, reason, answer_headers, data = self._ask_moto(headers, body)
        except _Refusal as refusal:
            self._send(refusal.status, refusal.code, [("Content-Type", "application/x-amz-json-1.0"),
                                                      ("x-amzn-query-error", f"{refusal.code};Sender")],
                       json.dumps({"__type": f"com.amazonaws.sqs#{refusal.code}", "message": refusal.message}).encode())
            return
        if service == "sqs":  # moto serves http and names itself aws; Scaleway's Queues are https and scw
            data = data.replace(b"arn:aws:sqs:", b"arn:scw:sqs:").replace(f"http://{host}/".encode(),
                                                                          f"https://{host}/".encode())
        self._send(status, reason, answer_headers, data)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = _relay

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                total += size
                if total > MAX_BODY:
                    raise ValueError(f"over the lab's limit of {MAX_BODY} bytes")
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, up to the blank line
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError(f"over the lab's limit of {MAX_BODY} bytes")
        return self.rfile.read(length) if length else b""

    def _serve_cdn(self, host: str) -> None:
        """Edge Services for one request: the pipeline's chain, then its bucket, read anonymously."""
        route = cdn_route(host)
        broken = "no pipeline of the lab has this host any longer" if route is None else route.broken
        if not broken and self.command not in ("GET", "HEAD"):
            self._send(405, "", [("Allow", "GET, HEAD"), ("Content-Type", "text/plain; charset=utf-8")],
                       f"{self.command} is not served by the CDN\n".encode())
            return
        key = unquote(urlsplit(self.path).path).lstrip("/")
        if not broken:
            bucket = f"/{quote(route.bucket)}"
            policy_status, _, _, policy = self._ask_moto(self._as_owner("GET", f"{bucket}?policy", route.region),
                                                         b"", method="GET", target=f"{bucket}?policy")
            if policy_status == 404 and b"NoSuchBucketPolicy" not in policy:
                broken = f"the backend's bucket {route.bucket} does not exist in {route.region}"
            else:
                _, _, _, location = self._ask_moto(self._as_owner("GET", f"{bucket}?location", route.region), b"",
                                                   method="GET", target=f"{bucket}?location")
                found = re.search(rb"<LocationConstraint[^>]*>([^<]*)<", location)
                region = found.group(1).decode() if found else ""
                if region and region != route.region:
                    broken = f"the backend's bucket {route.bucket} is in {region}, not {route.region}"
        if broken:
            self._send(502, "", [("Content-Type", "text/plain; charset=utf-8")],
                       f"Bad Gateway: {host}: {broken}\n".encode())
            return
        if not key or not anonymous_read(policy.decode() if policy_status == 200 else None, route.bucket, key):
            self._send(403, "", [("Content-Type", "application/xml")], S3_ERROR.format(
                code="AccessDenied", message="Access Denied", resource=escape(f"/{route.bucket}/{key}")).encode())
            return
        forwarded = [(name, value) for name, value in self.headers.items() if name.lower() in CDN_REQUEST_HEADERS]
        target = f"{bucket}/{quote(key)}"
        status, reason, headers, data = self._ask_moto(
            forwarded + self._as_owner(self.command, target, route.region, forwarded), b"", target=target)
        self._send(status, reason, [(name, value) for name, value in headers  # moto's own say nothing here
                                    if name.lower() != "server" and not name.lower().startswith(("x-amz", "x-moto"))],
                   data)

    def _as_owner(self, method: str, target: str, region: str,
                  headers: list[tuple[str, str]] = ()) -> list[tuple[str, str]]:
        """A SigV4 signature of the proxy's own read, with the lab's key (the buckets' owner):
        the CDN has checked the policy itself, Scaleway's way; moto would judge an unsigned
        read by AWS's (ARN resources)."""
        from botocore.auth import S3SigV4Auth
        from botocore.awsrequest import AWSRequest
        from botocore.credentials import Credentials

        request = AWSRequest(method=method, url=f"http://127.0.0.1:{self.server.moto_port}{target}",
                             headers=dict(headers))
        S3SigV4Auth(Credentials(LAB_ACCESS_KEY, LAB_SECRET_KEY), "s3", region or "fr-par").add_auth(request)
        return [(name, value) for name, value in request.headers.items()
                if name.lower() in ("authorization", "x-amz-date", "x-amz-content-sha256")]

    def _ask_moto(self, headers: list[tuple[str, str]], body: bytes, *, method: str | None = None,
                  target: str | None = None) -> tuple[int, str, list, bytes]:
        """Relay to moto: this request, as it came (its Host names the bucket or queue), or the
        proxy's own `method` on `target` (path-style, with `headers` only)."""
        upstream = http.client.HTTPConnection("127.0.0.1", self.server.moto_port, timeout=MOTO_TIMEOUT)
        try:
            upstream.putrequest(method or self.command, target or self.path, skip_host=target is None,
                                skip_accept_encoding=True)
            for name, value in headers:
                upstream.putheader(name, value)
            upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            answer = upstream.getresponse()
            data = answer.read()
            kept = [(name, value) for name, value in answer.getheaders()
                    if name.lower() not in NOT_RELAYED or (self.command == "HEAD" and name.lower() == "content-length")]
            return answer.status, answer.reason, kept, data
        finally:
            upstream.close()

    def _send(self, status: int, reason: str, headers: list[tuple[str, str]], data: bytes) -> None:
        self.send_response_only(status, reason or None)
        for name, value in headers:
            self.send_header(name, value)
        with_body = self.command != "HEAD" and status not in (204, 304)  # those have no body, nor its length
        if with_body:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if with_body:
            self.wfile.write(data)

    def _refuse_plain(self, reason: str, status: int = 403) -> None:
        print(f"lab proxy: refused {self.command} {self.path}: {reason}", file=sys.stderr, flush=True)
        data = (reason + "\n").encode()
        self.send_response_only(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            if self.tunnel is not None:
                self.connection.close()  # the TLS socket took the client socket over

    def log_message(self, *args) -> None:  # refusals are logged; relayed calls are moto's business
        return None


class _Proxy(ThreadingMixIn, HTTPServer):
    daemon_threads = True

    def __init__(self, port: int, moto_port: int, authority: Authority) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.moto_port, self.authority = moto_port, authority
        self.logs = LogStore()  # what the Cockpit logs sources hold (lab/dataplane/logs.py)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        threading.Thread(target=self.serve_forever, name="lab-proxy", daemon=True).start()

    def process_request(self, request, client_address) -> None:
        if not self.slots.acquire(timeout=IDLE_TIMEOUT):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request, client_address) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, (OSError, ssl.SSLError, ValueError)):  # a client going away is routine
            super().handle_error(request, client_address)


class _MotoServer:
    """moto on 127.0.0.1. It holds buckets and queues in memory, so it records every request
    it serves to a file in the lab folder and replays that file when it starts: they
    outlive `ciel lab down`, as state.json's resources do."""

    def __init__(self, port: int, recording: Path) -> None:
        os.environ["MOTO_RECORDER_FILEPATH"] = str(recording)  # read when moto is first imported
        from moto.moto_api import recorder
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request drowns the lab's log
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        if recording.exists():
            _replay(recording, port)
        recorder.start_recording()

    def shutdown(self) -> None:
        self.server.stop()

    def server_close(self) -> None:
        return None


def _replay(recording: Path, port: int) -> None:
    """moto's own replay would dial the recorded URLs' hosts: this one only ever dials moto."""
    for line in recording.read_text().splitlines():
        entry = json.loads(line)
        if _sqs_action(entry["headers"]) in PUBLISH_ACTIONS | RECEIVE_ACTIONS:
            continue  # queues outlive a restart, their messages do not: replayed long polls would stall it
        if entry["method"] in ("GET", "HEAD"):
            continue  # reads (the CDN's among them) change nothing
        body = entry.get("body") or ""
        body = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
        url = urlsplit(entry["url"])
        # As recorded, with the account the proxy had set; only the length is the replay's own.
        headers = {name: value for name, value in entry["headers"].items()
                   if name.lower() not in ("content-length", "transfer-encoding")}
        upstream = http.client.HTTPConnection("127.0.0.1", port, timeout=MOTO_TIMEOUT)
        try:
            upstream.request(entry["method"], url.path + (f"?{url.query}" if url.query else ""), body=body,
                             headers={**headers, "Content-Length": str(len(body))})
            upstream.getresponse().read()
        finally:
            upstream.close()


def serve_object_storage(directory: Path, s3_port: int, proxy_port: int) -> list:
    # Scaleway's regions are no AWS region; the regional endpoints themselves are path-style
    # (below them, <bucket>.s3.<region>.scw.cloud is virtual-hosted, which moto reads from Host).
    os.environ["MOTO_ALLOW_NONEXISTENT_REGION"] = "true"
    os.environ["MOTO_S3_CUSTOM_ENDPOINTS"] = ",".join(f"https://{host}" for host in S3_HOSTS)
    moto = _MotoServer(s3_port, directory / "moto-recording.jsonl")
    return [moto, _Proxy(proxy_port, s3_port, Authority(directory))]
