"""`python -m lab serve ...`: the lab process itself (started by `ciel lab up`)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path

from lab.api import Lab
from lab.families import register_all
from lab.server import serve_api
from lab.store import Store


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m lab")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve the emulated Scaleway API until SIGTERM")
    serve.add_argument("--dir", type=Path, required=True)
    serve.add_argument("--api-port", type=int, required=True)
    serve.add_argument("--s3-port", type=int, required=True)
    serve.add_argument("--proxy-port", type=int, required=True)
    args = parser.parse_args()

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    store = Store(args.dir / "state.json")
    lab = register_all(Lab(store))
    from lab.objectstorage import serve_object_storage
    from lab.runtime import Runtime

    servers = serve_object_storage(args.dir, args.s3_port, args.proxy_port)
    # After the CA exists (Object Storage makes it): the LBs' TLS and the API server use it.
    # Before the API answers: `ciel lab up` returns once it does, data plane included.
    runtime = Runtime.start(lab, args.dir, args.api_port, proxy_port=args.proxy_port)
    servers.append(serve_api(lab, args.api_port))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print(f"lab: API on 127.0.0.1:{args.api_port}, S3 on {args.s3_port}, proxy on {args.proxy_port}", flush=True)
    stop.wait()
    runtime.stop()
    for server in servers:
        server.shutdown()
        server.server_close()
    store.save()


if __name__ == "__main__":
    main()
