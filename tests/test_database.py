"""Database construct: PostgreSQL 16, private only, least-privilege users, tier settings."""

from __future__ import annotations

from tests.conftest import of_type, one, synth_core


def test_postgres_16_on_the_private_network_with_ipam_and_backups():
    instance = one(synth_core("dev"), "scaleway_rdb_instance")
    assert instance["engine"] == "PostgreSQL-16"
    assert instance["private_network"]["enable_ipam"] is True
    assert instance["disable_backup"] is False and instance["backup_schedule_retention"] == 7
    assert instance["encryption_at_rest"] is True


def test_postgres_settings_come_from_the_configuration():
    assert one(synth_core("dev"), "scaleway_rdb_instance")["settings"] == {
        "work_mem": "4", "max_connections": "100", "effective_cache_size": "768"}
    tuned = one(synth_core("dev", db_work_mem_mb=16), "scaleway_rdb_instance")
    assert tuned["settings"]["work_mem"] == "16"


def test_dev_has_no_ha_nor_replica_and_prod_has_both():
    dev, prod = synth_core("dev"), synth_core("prod")
    assert one(dev, "scaleway_rdb_instance")["is_ha_cluster"] is False
    assert of_type(dev, "scaleway_rdb_read_replica") == []
    assert one(prod, "scaleway_rdb_instance")["is_ha_cluster"] is True
    replica = one(prod, "scaleway_rdb_read_replica")
    assert replica["private_network"]["enable_ipam"] is True


def test_the_ciel_database_and_its_users_have_only_what_they_need():
    stack = synth_core("dev")
    assert one(stack, "scaleway_rdb_database")["name"] == "ciel"
    users = {u["name"]: u for u in of_type(stack, "scaleway_rdb_user")}
    assert set(users) == {"ciel_app", "ciel_migrator"}
    assert not any(u["is_admin"] for u in users.values())
    permissions = {p["user_name"]: p["permission"] for p in of_type(stack, "scaleway_rdb_privilege")}
    assert sorted(permissions.values()) == ["all", "readwrite"]


def test_database_url_output_is_sensitive_and_uses_the_app_user():
    output = synth_core("dev")["output"]["database_url"]
    assert output["sensitive"] is True
    assert output["value"].startswith("postgresql://ciel_app:") and "sslmode=require" in output["value"]
