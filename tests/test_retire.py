"""The cutover's retire step through the real deploy path (issue: it was refused every
time, after recording the retirement; its tests replaced it with a lambda).

Offline, the engine plans against an empty state, so a delete cannot show in a plan;
what retire deletes is the difference between the phase-2 stack and the retired one,
and the real offline plan of the retired configuration must hold exactly the rest.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ciel.retire import RetirePlanCheck, compute_to_delete, retire_instances
from ciel.workspace import PlanResult, ResourceChange
from foundation.errors import CielError
from infra.config import load_environment
from infra.config.loader import record_settings

pytestmark = pytest.mark.engine

COMPUTE_TYPES = {"scaleway_instance_server", "scaleway_instance_private_nic", "scaleway_ipam_ip", "terraform_data",
                 "scaleway_instance_security_group", "scaleway_instance_placement_group"}


@pytest.fixture
def qa_in_phase2(environments_dir):
    path = environments_dir / "qa.yaml"
    path.write_text("# QA: in phase 2, two API instances\ntier: mvp\nprivate_network_cidr: 10.0.0.0/24\nphase: 2\n"
                    'api_instance_count: 2\nimage_tag: "1.0.0"\n')
    return path


def test_retire_deletes_exactly_the_phase1_compute_and_nothing_shared(qa_in_phase2):
    expected = compute_to_delete(load_environment("qa"))
    by_type: dict[str, int] = {}
    for address in expected:
        by_type[address.split(".")[0]] = by_type.get(address.split(".")[0], 0) + 1
    # 2 API + 1 worker units (server, NIC, address, boot config), 2 security groups, 1 placement group.
    assert by_type == {"scaleway_instance_server": 3, "scaleway_instance_private_nic": 3, "scaleway_ipam_ip": 3,
                       "terraform_data": 3, "scaleway_instance_security_group": 2,
                       "scaleway_instance_placement_group": 1}
    assert all(".compute_" in address for address in expected)

    before = qa_in_phase2.read_text()
    outcome = retire_instances("qa")  # the real path: deploy of the retired configuration, real engine plan
    planned = {change.address for change in outcome.plan.changes}
    assert not planned & expected
    # Everything else stays: the shared layers, the LB (now on the cluster), the cluster, Redis.
    types = {change.type for change in outcome.plan.changes}
    assert {"scaleway_lb", "scaleway_rdb_instance", "scaleway_k8s_cluster", "scaleway_object_bucket"} <= types
    assert [c for c in outcome.plan.changes if c.type == "scaleway_instance_server"][0].address.split(".")[1] \
        .startswith("cache_")
    assert not outcome.applied
    # Offline nothing was applied, so nothing is recorded: the file still says the instances
    # exist (the old retire wrote it first, was then refused, and every later run refused too).
    assert qa_in_phase2.read_text() == before


def _plan(*changes: tuple[str, tuple[str, ...]], with_state: bool) -> PlanResult:
    raw = {"prior_state": {"values": {"root_module": {"resources": [{"address": "x"}]}}}} if with_state else {}
    return PlanResult(plan_file=Path("plan.tfplan"), raw=raw,
                      changes=[ResourceChange(a, a.split(".")[0], actions) for a, actions in changes])


def test_a_live_retire_plan_that_touches_anything_else_is_refused():
    check = RetirePlanCheck(frozenset({"scaleway_instance_server.compute_api_0_AAAAAAAA",
                                       "scaleway_instance_private_nic.compute_api_0_nic_BBBBBBBB"}))
    check(_plan(("scaleway_instance_server.compute_api_0_AAAAAAAA", ("delete",)),
                ("scaleway_instance_private_nic.compute_api_0_nic_BBBBBBBB", ("delete",)), with_state=True))
    check(_plan(with_state=True))  # already retired (a crash after the apply): nothing to do, fine
    with pytest.raises(CielError, match="does more than delete.*scaleway_lb_frontend.edge_http"):
        check(_plan(("scaleway_instance_server.compute_api_0_AAAAAAAA", ("delete",)),
                    ("scaleway_lb_frontend.edge_http_CCCCCCCC", ("update",)), with_state=True))
    with pytest.raises(CielError, match="does more than delete"):
        check(_plan(("scaleway_instance_server.compute_api_0_AAAAAAAA", ("delete", "create")), with_state=True))
    with pytest.raises(CielError, match="still declares"):
        check(_plan(("scaleway_instance_server.compute_api_0_AAAAAAAA", ("create",)), with_state=False))


def test_a_deploy_that_deletes_an_instance_needs_it_named(qa_in_phase2):
    """`instances_retired: true` written by hand (no cutover) turns into deletions in the
    next plan: the deploy guard refuses them unless each instance is named."""
    from ciel.deploy import unconfirmed_instance_deletions

    record_settings("qa", traffic="cluster", instances_retired=True)
    plan = PlanResult(plan_file=Path("p"), raw={}, changes=[
        ResourceChange("scaleway_instance_server.compute_api_0_AAAAAAAA", "scaleway_instance_server", ("delete",),
                       name="ciel-qa-api-0"),
        ResourceChange("scaleway_instance_server.compute_api_1_AAAAAAAB", "scaleway_instance_server",
                       ("delete", "create"), name="ciel-qa-api-1"),
        ResourceChange("scaleway_instance_server.cache_server_CCCCCCCC", "scaleway_instance_server", ("delete",),
                       name="ciel-qa-redis")])
    assert [c.name for c in unconfirmed_instance_deletions(plan, ())] == ["ciel-qa-api-0"]
    assert unconfirmed_instance_deletions(plan, ("ciel-qa-api-0",)) == []
