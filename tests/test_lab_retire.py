"""The cutover's retire step applied for real, on the local Scaleway: after the cutover's
LB calls have moved the frontends to the cluster and emptied the instances' backend, the
retire apply deletes exactly the phase-1 compute, then records it, and the next deploy
finds nothing to change. No step of ours is stood in for; Scaleway is the lab."""

from __future__ import annotations

import pytest
from scaleway import Client

from ciel.deploy import deploy_phase1
from ciel.retire import compute_to_delete, retire_instances
from ciel.state_bucket import bootstrap
from infra.config import load_environment
from migrate.loadbalancer import LoadBalancer
from tests.lab_support import lab_json, running_lab

pytestmark = pytest.mark.engine


def bare(zoned_id: str) -> tuple[str, str]:
    zone, _, object_id = str(zoned_id).partition("/")
    return zone, object_id


def test_retire_deletes_exactly_the_compute_on_the_lab_then_records_it(tmp_path, environments_dir, monkeypatch):
    path = environments_dir / "qa.yaml"
    path.write_text('tier: mvp\nprivate_network_cidr: 10.0.0.0/24\nphase: 2\napi_instance_count: 2\nimage_tag: "1.0.0"\n')
    with running_lab(tmp_path / "lab") as lab_env:
        for name, value in lab_env.items():
            monkeypatch.setenv(name, value)
        bootstrap("qa")
        deployed = deploy_phase1("qa", force_phase1=True, auto_approve=True)
        assert deployed.applied
        expected = compute_to_delete(load_environment("qa"))

        # What the cutover's switch and drain did through the SDK before retire.
        out = deployed.outputs
        zone, lb_id = bare(out["lb_id"])
        client = Client(access_key=lab_env["SCW_ACCESS_KEY"], secret_key=lab_env["SCW_SECRET_KEY"],
                        default_project_id=lab_env["SCW_DEFAULT_PROJECT_ID"], default_zone=zone,
                        default_region="fr-par", api_url=lab_env["SCW_API_URL"])
        balancer = LoadBalancer(client, zone, lb_id, log=lambda line: None, poll_seconds=0.2)
        for frontend in out["public_frontend_ids"]:
            balancer.set_frontend_backend(bare(frontend)[1], bare(out["cluster_backend_id"])[1])
        balancer.set_backend_servers(bare(out["instance_backend_id"])[1], [])

        retired = retire_instances("qa")
        assert retired.applied
        assert {c.address for c in retired.plan.changes} == expected
        assert all(c.actions == ("delete",) for c in retired.plan.changes)
        config = load_environment("qa")
        assert (config.traffic, config.instances_retired) == ("cluster", True)
        servers = lab_json(lab_env, f"/instance/v1/zones/{zone}/servers")["servers"]
        assert [s["name"] for s in servers] == ["ciel-qa-redis"]  # the data layer stays

        again = deploy_phase1("qa", force_phase1=True, auto_approve=True)
        assert again.plan.changes == [] and not again.applied
