"""`ciel verify --env ENV [--json]`: the verification plan, automated, from outside.

Each check says what it will do (`ciel verify` without credentials prints exactly that
and calls nothing) and, run, passes or fails with a reason a person can act on:

- **health**: GET /health through the shared LB's public address, with the certificate
  checked for the API host when HTTPS is on (connecting to the LB's IP with the API
  host's name: this checks the LB, whatever DNS says);
- **database**, **redis**: what /health reports for them (infra/contract.py
  HEALTH_CHECKS: the app checks its own dependencies from inside the private network);
- **storage**: a presigned PUT of a small object into the media bucket with the app's
  key, read back (presigned GET), then deleted;
- **cdn**: that object read anonymously through the CDN host (under public/, the only
  prefix the bucket lets anyone read);
- **queue**: one message sent to the probe queue with the app's queue credentials and
  taken back (a queue of its own: the workers never see a probe);
- **dns**: the zone's records point the API host at the LB (and the CDN host at the
  pipeline), and this machine resolves them so — a name that does not resolve here yet
  is a warning (propagation), one that resolves elsewhere a failure;
- **logs**: Cockpit holds log lines of this environment from the last 10 minutes (with
  a query-only token).

A check that does not apply (no CDN, no domain, logs kept local) is skipped, saying why.
Waits are bounded: right after a deploy the LB may need a few health checks to raise a
server, and the first log lines a few seconds to arrive.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ciel import credentials as creds
from foundation.http import http_call
from foundation.process import say
from infra.config import EnvironmentConfig, load_environment
from infra.contract import HEALTH_CHECKS

WAIT = 120.0  # for the LB to hold a server up after a deploy, and for the first log lines
QUEUE_WAIT = 15.0
HTTP_TIMEOUT = 10.0
LOGS_WINDOW = "10m"


@dataclass
class CheckResult:
    name: str
    status: str  # pass, fail, warn, skip
    detail: str
    what: str
    seconds: float = 0.0


@dataclass
class Verification:
    env: str
    live: bool
    results: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(result.status != "fail" for result in self.results)

    def as_json(self) -> dict:
        return {"env": self.env, "live": self.live, "ok": self.ok, "checks": [asdict(r) for r in self.results]}


class Failed(Exception):
    """A check's failure, with what a person should look at."""


class Skipped(Exception):
    pass


class Warned(Exception):
    pass


@dataclass
class Target:
    """What the checks read: the configuration and (live) the core stack's outputs."""

    config: EnvironmentConfig
    outputs: dict
    health: dict | None = None  # /health's answer, once the health check read it
    probe_key: str | None = None  # the object the storage check left for the CDN check
    probe_body: bytes = b""
    wait: float = WAIT

    def get(self, name: str) -> str:
        value = self.outputs.get(name)
        return str(value) if value not in (None, "") else f"<{name}>"


# --- the checks -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Check:
    name: str
    what: Callable[[Target], str]
    run: Callable[[Target], str]  # returns the pass detail; raises Failed, Warned or Skipped


def _health_what(target: Target) -> str:
    config = target.config
    if config.enable_https:
        return (f"GET https://{config.api_hostname}/health at the LB {target.get('lb_ip')}:443, certificate "
                f"checked for {config.api_hostname}; 200 within {target.wait:.0f}s")
    return f"GET http://{target.get('lb_ip')}/health through the LB (no HTTPS in {config.name}); 200 within " \
           f"{target.wait:.0f}s"


class _HostAtAddress(http.client.HTTPSConnection):
    """HTTPS to `address`, with SNI and the certificate check for the connection's host."""

    def __init__(self, address: str, host: str, timeout: float) -> None:
        super().__init__(host, 443, timeout=timeout, context=ssl.create_default_context())
        self.address = address

    def connect(self) -> None:
        raw = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def _get_health(target: Target) -> tuple[int, bytes]:
    config, address = target.config, target.get("lb_ip")
    if config.enable_https:
        connection = _HostAtAddress(address, config.api_hostname, HTTP_TIMEOUT)
    else:
        connection = http.client.HTTPConnection(address, 80, timeout=HTTP_TIMEOUT)
    try:
        connection.request("GET", "/health", headers={"Host": config.api_hostname if config.enable_https else address})
        answer = connection.getresponse()
        return answer.status, answer.read()
    finally:
        connection.close()


def _health_run(target: Target) -> str:
    deadline = time.monotonic() + target.wait
    last = ""
    while True:
        try:
            status, body = _get_health(target)
            if status == 200:
                document = json.loads(body or b"{}")
                target.health = document
                return f"{document.get('status', '?')}, version {document.get('version', '?')}"
            last = f"the LB answered {status}"
        except ssl.SSLCertVerificationError as error:
            raise Failed(f"the LB's certificate is not valid for {target.config.api_hostname}: "
                         f"{error.verify_message}. Check the LB certificate (Let's Encrypt needs the DNS record "
                         "pointing at the LB first)") from None
        except (OSError, ValueError) as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() > deadline:
            raise Failed(f"no 200 from /health within {target.wait:.0f}s ({last}). Check the LB's backend "
                         "health in the console and the app's logs (journalctl -u ciel on an instance, "
                         "kubectl logs in phase 2)")
        time.sleep(3)


def _dependency(name: str) -> Check:
    variable = HEALTH_CHECKS[name]

    def run(target: Target) -> str:
        if target.health is None:
            raise Skipped(f"/health did not answer: the {name} check reads it")
        checks = target.health.get("checks")
        if not isinstance(checks, dict) or name not in checks:
            raise Failed(f"/health reports no '{name}' check: the image does not follow the health contract "
                         "(infra/contract.py HEALTH_CHECKS)")
        if checks[name] != "ok":
            raise Failed(f"the app reports {name} {checks[name]}. Check {variable} (Secret Manager "
                         f"/ciel/{target.config.name}/), the {name}'s status and its private network")
        return f"the app reaches its {name}"

    return Check(name, lambda target: f"read checks.{name} from /health's answer (the app's own view of {variable})",
                 run)


def _presigner(target: Target):
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=target.get("s3_endpoint"), region_name=target.config.region,
                        aws_access_key_id=str(target.outputs.get("media_access_key", "")),
                        aws_secret_access_key=str(target.outputs.get("media_secret_key", "")),
                        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def _http(method: str, url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    return http_call(method, url, data, headers, timeout=HTTP_TIMEOUT)


def _storage_what(target: Target) -> str:
    prefix = "public/verify/" if target.config.enable_cdn else "verify/"
    return (f"presigned PUT of {prefix}<random>.txt into {target.get('media_bucket')} with the app's media key, "
            "presigned GET of it, then DELETE")


def _storage_run(target: Target) -> str:
    bucket = str(target.outputs.get("media_bucket", ""))
    key = ("public/verify/" if target.config.enable_cdn else "verify/") + f"{uuid.uuid4().hex}.txt"
    body = f"ciel verify {target.config.name} {time.time():.0f}\n".encode()
    presigner = _presigner(target)

    def url(method: str, **extra) -> str:
        return presigner.generate_presigned_url(method, Params={"Bucket": bucket, "Key": key, **extra}, ExpiresIn=300)

    status, answer = _http("PUT", url("put_object", ContentType="text/plain"), body, {"Content-Type": "text/plain"})
    if status != 200:
        raise Failed(f"a presigned upload to {bucket} was refused ({status}: {answer[:200]!r}). Check the app's "
                     "media key (Secret Manager s3-access-key / s3-secret-key) and the bucket's policy")
    status, read = _http("GET", url("get_object"))
    if status != 200 or read != body:
        raise Failed(f"the object just uploaded to {bucket} did not read back ({status})")
    target.probe_key, target.probe_body = key, body
    return f"uploaded and read back {key}"


def _cdn_what(target: Target) -> str:
    return f"anonymous GET {target.get('s3_public_endpoint')}/<the storage check's object>, same bytes"


def _cdn_run(target: Target) -> str:
    if not target.config.enable_cdn:
        raise Skipped("no CDN in this environment (S3_PUBLIC_ENDPOINT is the bucket's endpoint)")
    if target.probe_key is None:
        raise Skipped("the storage check left no object to read through the CDN")
    url = f"{target.get('s3_public_endpoint')}/{target.probe_key}"
    try:
        status, body = _http("GET", url)
    except OSError as error:
        raise Failed(f"the CDN host did not answer ({error}). Check the Edge Services pipeline's DNS and TLS "
                     "stages") from None
    if status != 200 or body != target.probe_body:
        raise Failed(f"GET {url} answered {status}, not the object: check the Edge Services pipeline (its "
                     "backend stage must be the media bucket) and the bucket policy's public/ read")
    return f"read {target.probe_key} through {target.get('s3_public_endpoint')}"


def _queue_what(target: Target) -> str:
    return (f"SendMessage to {target.get('probe_queue_url')} with the app's queue credentials, ReceiveMessage "
            f"until it is back (up to {QUEUE_WAIT:.0f}s), DeleteMessage")


def _queue_run(target: Target) -> str:
    import boto3

    client = boto3.client("sqs", endpoint_url=target.get("queue_endpoint"), region_name=target.config.region,
                          aws_access_key_id=str(target.outputs.get("queue_access_key", "")),
                          aws_secret_access_key=str(target.outputs.get("queue_secret_key", "")),
                          # The CAs the other checks trust (OpenSSL's SSL_CERT_FILE) first.
                          verify=os.environ.get("SSL_CERT_FILE") or os.environ.get("AWS_CA_BUNDLE") or None)
    queue_url, probe = target.get("probe_queue_url"), f"ciel-verify-{uuid.uuid4().hex}"
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.send_message(QueueUrl=queue_url, MessageBody=probe)
        deadline = time.monotonic() + QUEUE_WAIT
        while time.monotonic() < deadline:
            for message in client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10,
                                                  WaitTimeSeconds=1).get("Messages", []):
                client.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                if message["Body"] == probe:
                    return "a probe message went round trip"
    except (BotoCoreError, ClientError) as error:
        raise Failed(f"the probe queue refused the round trip ({error}). Check the app's queue credentials "
                     "(Secret Manager sqs-access-key / sqs-secret-key) and that Queues is enabled") from None
    raise Failed(f"the probe message did not come back within {QUEUE_WAIT:.0f}s")


def _dns_what(target: Target) -> str:
    config = target.config
    if not config.domain:
        return "nothing: no domain in this environment"
    names = [config.api_hostname] + ([config.cdn_custom_domain] if config.cdn_custom_domain else [])
    return (f"list the records of zone {config.domain} (Domains API) and resolve {', '.join(names)} here; "
            f"{config.api_hostname} must be {target.get('lb_ip')}")


def _dns_run(target: Target, found: creds.Credentials) -> str:
    from scaleway.domain.v2beta1 import DomainV2Beta1API

    config = target.config
    if not config.domain:
        raise Skipped("no domain in this environment")
    lb_ip = target.get("lb_ip")
    api = DomainV2Beta1API(found.sdk_client(zone=config.zone, region=config.region))
    relative = config.api_hostname.removesuffix(config.domain).rstrip(".")
    records = [r for r in api.list_dns_zone_records_all(dns_zone=config.domain, name=relative)
               if str(getattr(r.type_, "value", r.type_)).upper() == "A"]  # the SDK spells it "a"
    if lb_ip not in {record.data for record in records}:
        raise Failed(f"zone {config.domain} has no A record {relative} → {lb_ip} (found "
                     f"{[r.data for r in records] or 'none'}): apply the environment again (`ciel deploy`)")
    try:
        resolved = {info[4][0] for info in socket.getaddrinfo(config.api_hostname, 443, proto=socket.IPPROTO_TCP)}
    except OSError:
        raise Warned(f"the zone says {config.api_hostname} → {lb_ip}, but this machine cannot resolve it yet "
                     "(propagation, or no resolver here)") from None
    if lb_ip not in resolved:
        raise Failed(f"{config.api_hostname} resolves to {sorted(resolved)} here, not the LB {lb_ip}: an old record "
                     "is cached or another zone answers")
    return f"{config.api_hostname} → {lb_ip}"


def _logs_what(target: Target) -> str:
    if not target.config.ship_logs_to_cockpit:
        return "nothing: logs stay on the machines (ship_logs_to_cockpit: false)"
    return (f"query count_over_time({{environment=\"{target.config.name}\"}}[{LOGS_WINDOW}]) at "
            f"{target.get('cockpit_logs_url')} with the query-only token; > 0 within {target.wait:.0f}s")


def _logs_run(target: Target) -> str:
    if not target.config.ship_logs_to_cockpit:
        raise Skipped("logs stay on the machines (ship_logs_to_cockpit: false)")
    query = f'count_over_time({{environment="{target.config.name}"}}[{LOGS_WINDOW}])'
    url = f"{target.get('cockpit_logs_url')}/loki/api/v1/query?{urllib.parse.urlencode({'query': query})}"
    headers = {"Authorization": f"Bearer {target.outputs.get('cockpit_query_token', '')}"}
    deadline = time.monotonic() + target.wait
    last = ""
    while True:
        try:
            status, body = _http("GET", url, headers=headers)
            if status == 200:
                result = json.loads(body).get("data", {}).get("result", [])
                count = sum(float(item.get("value", [0, "0"])[1]) for item in result)
                if count > 0:
                    return f"{count:.0f} log lines of {target.config.name} in the last {LOGS_WINDOW}"
                last = "no log line yet"
            else:
                last = f"Cockpit answered {status}: {body[:200]!r}"
        except (OSError, ValueError) as error:
            last = f"{type(error).__name__}: {error}"
        if time.monotonic() > deadline:
            raise Failed(f"no log line of {target.config.name} in Cockpit ({last}). Check the machines' Alloy "
                         "(systemctl status alloy) and the push token (Secret Manager cockpit-push-token)")
        time.sleep(3)


def checks(found: creds.Credentials) -> list[Check]:
    return [
        Check("health", _health_what, _health_run),
        _dependency("database"),
        _dependency("redis"),
        Check("storage", _storage_what, _storage_run),
        Check("cdn", _cdn_what, _cdn_run),
        Check("queue", _queue_what, _queue_run),
        Check("dns", _dns_what, lambda target: _dns_run(target, found)),
        Check("logs", _logs_what, _logs_run),
    ]


# --- running them -----------------------------------------------------------------------------

def verify(env: str, *, force_offline: bool = False, engine_choice: str | None = None,
           outputs: dict | None = None, only: tuple[str, ...] = (), wait: float = WAIT) -> Verification:
    """Run every check against ENV (live), or list what each would do (offline).

    `outputs`: the core stack's outputs when the caller has them (a deploy that just
    applied), sensitive ones included; else they are read from the remote state."""
    config = load_environment(env)
    found = creds.detect(force_offline)
    verification = Verification(env=env, live=found.live)
    if found.live and outputs is None:
        from ciel.outputs import core_outputs

        outputs = core_outputs(env, found, engine_choice, include_sensitive=True)
    target = Target(config=config, outputs=outputs or {}, wait=wait)
    try:
        _run_checks(verification, target, found, only)
    finally:
        _remove_probe_object(target)
    return verification


def _run_checks(verification: Verification, target: Target, found: creds.Credentials, only: tuple[str, ...]) -> None:
    for check in checks(found):
        if only and check.name not in only:
            continue
        what = check.what(target)
        if not found.live:
            verification.results.append(CheckResult(check.name, "skip", "offline: nothing was called", what))
            continue
        say(f"→ verify {check.name}: {what}")
        started = time.monotonic()
        try:
            status, detail = "pass", check.run(target)
        except Failed as reason:
            status, detail = "fail", str(reason)
        except Warned as reason:
            status, detail = "warn", str(reason)
        except Skipped as reason:
            status, detail = "skip", str(reason)
        verification.results.append(CheckResult(check.name, status, detail, what, time.monotonic() - started))


def _remove_probe_object(target: Target) -> None:
    if target.probe_key is None:
        return
    url = _presigner(target).generate_presigned_url(
        "delete_object", Params={"Bucket": str(target.outputs.get("media_bucket")), "Key": target.probe_key},
        ExpiresIn=300)
    try:
        status, _ = _http("DELETE", url)
    except OSError as error:
        status = str(error)
    if status != 204:
        say(f"  could not delete the probe object {target.probe_key} ({status}): delete it by hand")
