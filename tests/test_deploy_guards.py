"""The deploy's safety rules, on plan results: data layers are never destroyed by a deploy,
and changed instances are rolled one at a time, API first, with a health wait after each."""

from __future__ import annotations

from pathlib import Path

from ciel import rollout
from ciel.deploy import data_layer_destroys
from ciel.workspace import PlanResult, ResourceChange


def plan_of(*changes: tuple[str, str, tuple[str, ...]]) -> PlanResult:
    return PlanResult(plan_file=Path("plan.tfplan"), raw={},
                      changes=[ResourceChange(address, type_, actions) for address, type_, actions in changes])


def test_replacing_or_deleting_a_data_layer_is_caught():
    plan = plan_of(
        ("scaleway_rdb_instance.database_instance_D7FC2283", "scaleway_rdb_instance", ("delete", "create")),
        ("scaleway_object_bucket.storage_media_CC16E75F", "scaleway_object_bucket", ("delete",)),
        ("scaleway_instance_server.cache_server_C48BFD8C", "scaleway_instance_server", ("delete", "create")),
        ("scaleway_instance_server.compute_api_0_8541E40A", "scaleway_instance_server", ("delete", "create")),
        ("scaleway_rdb_instance.database_instance_D7FC2283", "scaleway_rdb_instance", ("update",)),
    )
    caught = [c.address for c in data_layer_destroys(plan)]
    assert caught == ["scaleway_rdb_instance.database_instance_D7FC2283", "scaleway_object_bucket.storage_media_CC16E75F",
                      "scaleway_instance_server.cache_server_C48BFD8C"]


def test_instances_are_rolled_api_first_one_unit_at_a_time_with_a_health_wait_after_each_api():
    plan = plan_of(
        ("scaleway_instance_server.compute_worker_0_A2C01852", "scaleway_instance_server", ("delete", "create")),
        ("scaleway_instance_private_nic.compute_worker_0_nic_22222222", "scaleway_instance_private_nic",
         ("delete", "create")),
        ("scaleway_instance_server.compute_api_1_11111111", "scaleway_instance_server", ("delete", "create")),
        ("scaleway_instance_server.compute_api_0_8541E40A", "scaleway_instance_server", ("delete", "create")),
        ("terraform_data.compute_api_0_boot_config_4C17A9CA", "terraform_data", ("delete", "create")),
        ("scaleway_instance_private_nic.compute_api_0_nic_33333333", "scaleway_instance_private_nic",
         ("delete", "create")),
        ("scaleway_instance_private_nic.compute_api_10_nic_44444444", "scaleway_instance_private_nic",
         ("delete", "create")),
        ("scaleway_instance_server.cache_server_C48BFD8C", "scaleway_instance_server", ("update",)),
    )
    replaced = rollout.replaced_instances(plan)
    assert [c.address.split(".")[1] for c in replaced] == [
        "compute_api_0_8541E40A", "compute_api_1_11111111", "compute_worker_0_A2C01852"]
    events = []
    rollout.roll(lambda addresses: events.append(("apply", sorted(a.split(".")[1] for a in addresses))), plan,
                 lambda: events.append(("wait", [])))
    assert events == [
        ("apply", ["compute_api_0_8541E40A", "compute_api_0_boot_config_4C17A9CA", "compute_api_0_nic_33333333"]),
        ("wait", []), ("apply", ["compute_api_1_11111111"]), ("wait", []),
        ("apply", ["compute_worker_0_A2C01852", "compute_worker_0_nic_22222222"])]
