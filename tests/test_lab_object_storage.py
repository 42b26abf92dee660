"""The lab's Object Storage and Queues: the real provider creating buckets and queues
through the lab's proxy, the proxy refusing everything else, and the S3 state backend
with `ciel state bootstrap`."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from tests.conftest import run_ciel
from tests.lab_support import apply_then_replan, engine, free_port, running_lab

# The provider's S3 and SQS clients refuse to build when AWS_CA_BUNDLE is set (they bring
# their own HTTP client), against Scaleway as against the lab: the engine runs without it.
NO_AWS_CA_BUNDLE = {"AWS_CA_BUNDLE": ""}

# As infra/constructs/storage.py and messaging.py synthesize them for prod (the IAM
# application of the policy's first statement is another family's: a fixed ID here).
STORAGE_AND_MESSAGING = """
resource "scaleway_object_bucket" "media" {
  name   = "ciel-prod-media-a1b2c3"
  region = "fr-par"
  tags   = { app = "ciel", environment = "prod", layer = "storage" }
  versioning { enabled = true }
  lifecycle_rule {
    id                                     = "abort-incomplete-uploads"
    enabled                                = true
    abort_incomplete_multipart_upload_days = 7
  }
  lifecycle_rule {
    id      = "to-glacier"
    enabled = true
    transition {
      days          = 90
      storage_class = "GLACIER"
    }
  }
  cors_rule {
    allowed_headers = ["*"]
    allowed_methods = ["GET", "PUT", "POST", "HEAD"]
    allowed_origins = ["https://app.ciel.example.com"]
    expose_headers  = ["ETag"]
    max_age_seconds = 3000
  }
}
resource "scaleway_object_bucket_acl" "media" {
  bucket = scaleway_object_bucket.media.name
  region = "fr-par"
  acl    = "private"
}
resource "scaleway_object_bucket_policy" "media" {
  bucket = scaleway_object_bucket.media.name
  region = "fr-par"
  policy = jsonencode({
    Version = "2023-04-17"
    Id      = "ciel-prod-media"
    Statement = [
      {
        Sid       = "AppObjectsReadWrite"
        Effect    = "Allow"
        Principal = { SCW = "application_id:5b1c2d3e-0000-4000-8000-00000000abcd" }
        Action    = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket",
                     "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
        Resource  = [scaleway_object_bucket.media.name, "${scaleway_object_bucket.media.name}/*"]
      },
      {
        Sid       = "CdnReadsPublicPrefixOnly"
        Effect    = "Allow"
        Principal = "*"
        Action    = ["s3:GetObject"]
        Resource  = ["${scaleway_object_bucket.media.name}/public/*"]
      },
    ]
  })
}

resource "scaleway_mnq_sqs" "main" { region = "fr-par" }
resource "scaleway_mnq_sqs_credentials" "manager" {
  name   = "ciel-prod-queue-manager"
  region = "fr-par"
  permissions {
    can_manage  = true
    can_publish = false
    can_receive = false
  }
  depends_on = [scaleway_mnq_sqs.main]
}
resource "scaleway_mnq_sqs_credentials" "app" {
  name   = "ciel-prod-app"
  region = "fr-par"
  permissions {
    can_manage  = false
    can_publish = true
    can_receive = true
  }
  depends_on = [scaleway_mnq_sqs.main]
}
resource "scaleway_mnq_sqs_queue" "dead_letter" {
  name            = "ciel-media-jobs-dlq"
  region          = "fr-par"
  sqs_endpoint    = scaleway_mnq_sqs.main.endpoint
  access_key      = scaleway_mnq_sqs_credentials.manager.access_key
  secret_key      = scaleway_mnq_sqs_credentials.manager.secret_key
  message_max_age = 1209600
}
resource "scaleway_mnq_sqs_queue" "media_jobs" {
  name                       = "ciel-media-jobs"
  region                     = "fr-par"
  sqs_endpoint               = scaleway_mnq_sqs.main.endpoint
  access_key                 = scaleway_mnq_sqs_credentials.manager.access_key
  secret_key                 = scaleway_mnq_sqs_credentials.manager.secret_key
  message_max_age            = 345600
  visibility_timeout_seconds = 300
  receive_wait_time_seconds  = 10
  dead_letter_queue {
    id                = scaleway_mnq_sqs_queue.dead_letter.id
    max_receive_count = 5
  }
}

output "app" {
  value     = scaleway_mnq_sqs_credentials.app
  sensitive = true
}
output "queue" { value = scaleway_mnq_sqs_queue.media_jobs.url }
output "dead_letter_arn" { value = scaleway_mnq_sqs_queue.dead_letter.arn }
"""


def _wait_listening(*ports: int, timeout: float = 20.0) -> None:
    """`ciel lab up` returns once the API answers; S3 and the proxy follow a moment later."""
    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"nothing listens on 127.0.0.1:{port}"
                time.sleep(0.05)


def _sqs_client(lab_env: dict[str, str], credentials: dict):
    import boto3
    from botocore.config import Config

    return boto3.client("sqs", endpoint_url="https://sqs.mnq.fr-par.scaleway.com", region_name="fr-par",
                        aws_access_key_id=credentials["access_key"], aws_secret_access_key=credentials["secret_key"],
                        verify=lab_env["SSL_CERT_FILE"], config=Config(proxies={"https": lab_env["HTTPS_PROXY"]}))


@pytest.mark.engine
def test_buckets_and_queues_apply_through_the_proxy_outlive_a_restart_and_destroy(tmp_path):
    from botocore.exceptions import ClientError

    from lab import runner

    with running_lab(tmp_path / "work") as lab_env:
        ports = runner.running_ports()
        _wait_listening(ports.s3, ports.proxy)
        engine_env = {**lab_env, **NO_AWS_CA_BUNDLE}
        applied, replan, output = apply_then_replan(tmp_path / "tf", engine_env, STORAGE_AND_MESSAGING)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "8 added" in applied.stdout
        assert replan == 0, output

        outputs = {name: value["value"] for name, value in
                   json.loads(engine(tmp_path / "tf", engine_env, "output", "-json").stdout).items()}
        project = lab_env["SCW_DEFAULT_PROJECT_ID"]
        assert outputs["queue"] == f"https://sqs.mnq.fr-par.scaleway.com/project-{project}/ciel-media-jobs"
        assert outputs["dead_letter_arn"] == f"arn:scw:sqs:fr-par:project-{project}:ciel-media-jobs-dlq"
        # The application's credentials publish and receive, and may not manage queues.
        app = _sqs_client(lab_env, outputs["app"])
        app.send_message(QueueUrl=outputs["queue"], MessageBody="resize 42")
        received = app.receive_message(QueueUrl=outputs["queue"], WaitTimeSeconds=1)["Messages"]
        assert [message["Body"] for message in received] == ["resize 42"]
        with pytest.raises(ClientError, match="can_manage"):
            app.create_queue(QueueName="not-allowed")

        runner.down()  # buckets and queues outlive a restart, as the API's resources do
        runner.up(ports)
        _wait_listening(ports.s3, ports.proxy)
        after_restart = engine(tmp_path / "tf", engine_env, "plan", "-detailed-exitcode", "-input=false")
        assert after_restart.returncode == 0, after_restart.stdout + after_restart.stderr

        destroyed = engine(tmp_path / "tf", engine_env, "destroy", "-auto-approve", "-input=false")
        assert destroyed.returncode == 0, destroyed.stdout + destroyed.stderr
        assert "8 destroyed" in destroyed.stdout


class _FakeMoto(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, str, bytes]] = []

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.seen.append((self.command, self.headers["Host"], self.path, body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        return None


def _proxy_answer(port: int, request: bytes) -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        client.sendall(request)
        answer = client.recv(4096)
    return answer, time.monotonic() - started


def test_the_proxy_serves_emulated_hosts_only_and_never_resolves_or_dials_another(tmp_path, monkeypatch):
    from lab.objectstorage import Authority, _Proxy

    moto = HTTPServer(("127.0.0.1", free_port()), _FakeMoto)
    threading.Thread(target=moto.serve_forever, daemon=True).start()
    proxy = _Proxy(free_port(), moto.server_address[1], Authority(tmp_path))
    # Every name resolution and connection made by a thread other than this test's own.
    outbound: list[object] = []
    test_thread = threading.current_thread()
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host, *args, **kwargs):
        if threading.current_thread() is not test_thread:
            outbound.append(("resolve", host))
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(sock, address):
        if threading.current_thread() is not test_thread:
            outbound.append(("connect", address))
        return real_connect(sock, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    try:
        port = proxy.server_address[1]
        for request in (b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
                        b"CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\n\r\n",
                        b"CONNECT s3.fr-par.scw.cloud:80 HTTP/1.1\r\n\r\n",
                        b"CONNECT s3.fr-par.scw.cloud.example.com:443 HTTP/1.1\r\n\r\n",
                        b"GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n"):
            answer, seconds = _proxy_answer(port, request)
            assert answer.startswith(b"HTTP/1.1 403"), (request, answer)
            assert seconds < 1, (request, seconds)  # refused from the name, not after trying
        assert outbound == []

        # An emulated host: TLS with a certificate of the lab's CA, the request relayed to moto
        # (a CreateBucket gains the endpoint's region, which Scaleway implies and moto wants).
        host = "ciel-media.s3.nl-ams.scw.cloud"
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
            assert raw.recv(4096).startswith(b"HTTP/1.1 200")
            trust = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
            with trust.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(f"PUT / HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n".encode())
                assert tls.recv(4096).startswith(b"HTTP/1.1 200")
        [(method, seen_host, path, body)] = _FakeMoto.seen
        assert (method, seen_host, path) == ("PUT", host, "/")
        assert b"<LocationConstraint>nl-ams</LocationConstraint>" in body
        moto_address = ("127.0.0.1", moto.server_address[1])
        assert ("connect", moto_address) in outbound
        assert all(target in ("127.0.0.1", moto_address) for _, target in outbound), outbound
    finally:
        proxy.shutdown()
        proxy.server_close()
        moto.shutdown()
        moto.server_close()
    assert (tmp_path / "ca-key.pem").stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE KEY" not in (tmp_path / "ca.pem").read_bytes()


@pytest.mark.engine
def test_state_bootstrap_then_the_s3_backend_keeps_state_and_its_lock_in_the_lab(tmp_path):
    import boto3

    from lab import runner

    with running_lab(tmp_path / "work") as lab_env:
        ports = runner.running_ports()
        _wait_listening(ports.s3)
        bootstrap = run_ciel("state", "bootstrap", "--env", "dev", env=lab_env)
        assert bootstrap.returncode == 0, bootstrap.stdout + bootstrap.stderr
        bucket = f"ciel-tfstate-{lab_env['SCW_DEFAULT_PROJECT_ID']}"
        assert f"bucket {bucket} created" in bootstrap.stdout + bootstrap.stderr

        # The backend as infra/stacks/backend.py configures it, and a resource needing no provider.
        directory = tmp_path / "tf"
        directory.mkdir()
        (directory / "main.tf").write_text(f"""
terraform {{
  backend "s3" {{
    bucket                      = "{bucket}"
    key                         = "dev/core.tfstate"
    region                      = "fr-par"
    endpoints                   = {{ s3 = "{lab_env['CIEL_S3_ENDPOINT']}" }}
    use_path_style              = true
    use_lockfile                = true
    skip_credentials_validation = true
    skip_region_validation      = true
    skip_requesting_account_id  = true
    skip_metadata_api_check     = true
    skip_s3_checksum            = true
  }}
}}
resource "terraform_data" "marker" {{ input = "lab" }}
""")
        for step in (("init", "-input=false"), ("apply", "-auto-approve", "-input=false")):
            done = engine(directory, lab_env, *step)
            assert done.returncode == 0, done.stdout + done.stderr

        s3 = boto3.client("s3", endpoint_url=lab_env["CIEL_S3_ENDPOINT"], region_name="fr-par",
                          aws_access_key_id=lab_env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=lab_env["AWS_SECRET_ACCESS_KEY"])
        assert [item["Key"] for item in s3.list_objects_v2(Bucket=bucket)["Contents"]] == ["dev/core.tfstate"]
        state = json.loads(s3.get_object(Bucket=bucket, Key="dev/core.tfstate")["Body"].read())
        assert [resource["type"] for resource in state["resources"]] == ["terraform_data"]
        # The bucket is versioned: each lock file taken and released leaves a version and a delete marker.
        versions = s3.list_object_versions(Bucket=bucket, Prefix="dev/core.tfstate.tflock")
        assert versions.get("Versions") and versions.get("DeleteMarkers")

        # A lock held elsewhere stops the next run (the lab honours S3 conditional writes).
        s3.put_object(Bucket=bucket, Key="dev/core.tfstate.tflock",
                      Body=json.dumps({"ID": "elsewhere", "Who": "someone@else"}).encode())
        blocked = engine(directory, lab_env, "plan", "-lock-timeout=0s", "-input=false")
        assert blocked.returncode != 0 and "Error acquiring the state lock" in blocked.stderr, blocked.stderr
