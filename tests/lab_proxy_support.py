"""An in-process lab with its proxy, for the data planes the proxy serves (the CDN, Cockpit
logs): the emulated API over HTTP (what the `scaleway` SDK talks to), moto, and the proxy
with its own CA — no `ciel lab up`, no data plane processes, so it runs beside a full lab."""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.runner import LAB_ACCESS_KEY, LAB_PROJECT_ID, LAB_SECRET_KEY
from tests.lab_support import free_port

REGION = "fr-par"


@dataclass
class ProxiedLab:
    lab: object  # lab.api.Lab
    api_url: str
    proxy_url: str
    ca_file: Path
    proxy: object  # lab.objectstorage._Proxy

    def sdk(self):
        from scaleway import Client

        return Client(access_key=LAB_ACCESS_KEY, secret_key=LAB_SECRET_KEY, api_url=self.api_url,
                      default_project_id=LAB_PROJECT_ID, default_region=REGION)

    def s3(self, region: str = REGION):
        """boto3 at Object Storage's endpoint, through the proxy, as the provider reaches it."""
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=f"https://s3.{region}.scw.cloud", region_name=region,
                            aws_access_key_id=LAB_ACCESS_KEY, aws_secret_access_key=LAB_SECRET_KEY,
                            verify=str(self.ca_file),
                            config=Config(proxies={"https": self.proxy_url}, s3={"addressing_style": "path"}))

    def https(self, method: str, host: str, path: str, *, headers: dict | None = None,
              body: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request to https://<host><path> through the proxy (CONNECT), trusting the lab's CA."""
        import requests

        answer = requests.request(method, f"https://{host}{path}", headers=headers, data=body, timeout=10,
                                  proxies={"https": self.proxy_url}, verify=str(self.ca_file))
        return answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, answer.content

    def connect(self, host: str) -> bytes:
        """The proxy's first answer to CONNECT host:443."""
        connection = http.client.HTTPConnection("127.0.0.1", self.proxy.server_address[1], timeout=5)
        try:
            connection.request("CONNECT", f"{host}:443", headers={"Host": f"{host}:443"})
            answer = connection.getresponse()
            # After a 200 the tunnel is open: nothing more comes until the client speaks TLS.
            return f"{answer.status} ".encode() + (answer.read() if answer.status != 200 else b"")
        finally:
            connection.close()

    def trusts(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture
def proxied_lab(tmp_path, monkeypatch):
    from moto.server import ThreadedMotoServer

    from lab.api import Lab
    from lab.families import register_all
    from lab.objectstorage import S3_HOSTS, Authority, _Proxy
    from lab.server import serve_api
    from lab.store import Store

    # As lab/objectstorage.py's serve_object_storage sets them for its moto (read per request).
    monkeypatch.setenv("MOTO_ALLOW_NONEXISTENT_REGION", "true")
    monkeypatch.setenv("MOTO_S3_CUSTOM_ENDPOINTS", ",".join(f"https://{host}" for host in S3_HOSTS))
    lab = register_all(Lab(Store()))
    api_port = free_port()
    api = serve_api(lab, api_port)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    _, moto_port = moto.get_host_and_port()
    directory = tmp_path / "proxy"
    directory.mkdir()
    proxy = _Proxy(free_port(), moto_port, Authority(directory))
    try:
        yield ProxiedLab(lab, f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{proxy.server_address[1]}",
                         directory / "ca.pem", proxy)
    finally:
        proxy.shutdown()
        proxy.server_close()
        moto.stop()
        api.shutdown()
        api.server_close()
