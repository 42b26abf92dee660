"""Object Storage and Queues for the lab: S3 and SQS from moto, on 127.0.0.1.

moto is a maintained S3/SQS emulator; it stands in for the two Scaleway services that
speak AWS protocols. The Terraform state backend and `ciel state bootstrap` reach it
directly (CIEL_S3_ENDPOINT).
"""

from __future__ import annotations

from pathlib import Path


class _MotoServer:
    def __init__(self, port: int) -> None:
        from moto.server import ThreadedMotoServer

        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()

    def shutdown(self) -> None:
        self.server.stop()

    def server_close(self) -> None:
        return None


def serve_object_storage(directory: Path, s3_port: int, proxy_port: int) -> list:
    return [_MotoServer(s3_port)]
