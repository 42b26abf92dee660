"""Runs a cutover in its own process against the test's fakes, and kills itself (SIGKILL,
no cleanup at all) right after a given step: `python -m tests.fakes.cutover_driver ARGS_JSON`."""

from __future__ import annotations

import json
import os
import signal
import sys

from scaleway import Client

from migrate.cluster import ClusterSide
from migrate.engine import Cutover
from migrate.instances import Instances
from migrate.loadbalancer import LoadBalancer
from migrate.model import Target, Thresholds
from migrate.probes import HttpProber
from migrate.resilience import RetryPolicy
from migrate.store import CutoverStore


def main() -> None:
    args = json.loads(sys.argv[1])
    target, thresholds = Target.from_dict(args["target"]), Thresholds.from_dict(args["thresholds"])
    client = Client(access_key="SCWABCDEFGHIJKLMNOPQ", secret_key="11111111-2222-4333-8444-555555555555",
                    default_zone=target.zone, default_region="fr-par", api_url=args["api_url"])
    policy = RetryPolicy(attempts=5, first_delay=0.01, max_delay=0.05, timeout=5)

    def kill_after(step: str) -> None:
        if step == args["kill_after"]:
            os.kill(os.getpid(), signal.SIGKILL)

    log = lambda line: print(line, flush=True)  # noqa: E731
    Cutover(CutoverStore(args["env"], __import__("pathlib").Path(args["store"])),
            lb=LoadBalancer(client, target.zone, target.lb_id, log=log, policy=policy, poll_seconds=0.02,
                            wait_timeout=10),
            instances=Instances(client, target.zone, log=log, policy=policy, poll_seconds=0.02),
            cluster=ClusterSide.connect(args["kube_url"], "test-token", None, log=log),
            prober=HttpProber(target.lb_address), log=log, confirm_retire=lambda q: True,
            retire=lambda: None, after_step=kill_after).run(args["env"], target, thresholds)


if __name__ == "__main__":
    main()
