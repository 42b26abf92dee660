"""infra/alerts.py: every environment is alerted on the plan's signals it runs, each rule
pinned, applicable and explained; docs/observability.md's table is this table."""

from __future__ import annotations

import re

import pytest

from infra.alerts import ALERTED, UNCOVERED, alerted_signals, preconfigured_alert_ids
from lab.families.cockpit import PRECONFIGURED_RULES
from tests.conftest import REPO_ROOT, config_for, one, synth_core

# The plan's scaling signals and the failures it asks alerts for (issue 14's list).
PLAN_SIGNALS = {
    "API CPU (instances)": "API CPU", "database CPU": "database CPU",
    "database connections vs max_connections": "database connections", "database disk": "disk",
    "Redis memory": "Redis memory", "API 5xx ratio": "error rate", "p95 latency": "latency",
    "queue depth": "queue depth", "oldest message age": "queue age",
    "dead-letter queue not empty": "dead-letter queue", "certificate expiry": "certificate expiry",
}


def test_each_signal_of_the_plan_has_a_rule_or_says_why_not_yet():
    alerted = {signal.signal for signal in ALERTED}
    assert set(PLAN_SIGNALS) <= alerted | set(UNCOVERED)
    assert not alerted & set(UNCOVERED)
    assert all(signal.action and signal.rule.threshold for signal in ALERTED)


def test_pinned_rules_are_in_the_local_scaleways_catalogue_under_the_same_name_and_expression():
    catalogue = {rule[0]: (rule[1], rule[2], rule[7]) for rule in PRECONFIGURED_RULES}
    for signal in ALERTED:
        rule = signal.rule
        assert catalogue.get(rule.rule_id) == (rule.name, rule.product, rule.expression), signal.signal
        assert rule.expression == f"{rule.measure} > {rule.limit:g}"  # what the dashboard splits


EVERY_ENVIRONMENT = {"InstanceHighCPUUsage", "PostgreSQLHighCPULoad", "PostgresqlTooManyConnections",
                     "PostgreSQLHighStorageUsage", "NodesNotReady"}
LOAD_BALANCER = {"LBBackendServerDown", "LBBackendDown", "LBHighConnectionLoad", "LBHighCPULoad"}


@pytest.mark.parametrize(("env", "overrides", "expected"), [
    ("dev", {}, EVERY_ENVIRONMENT | LOAD_BALANCER),
    ("prod", {}, EVERY_ENVIRONMENT | LOAD_BALANCER | {"HighMemoryUsage", "HighCpuUsage"}),
    ("dev", {"enable_load_balancer": False, "enable_https": False}, EVERY_ENVIRONMENT),
    ("dev", {"alerts": False}, set()),
])
def test_an_environment_gets_the_rules_of_what_its_configuration_runs(env, overrides, expected):
    assert {signal.rule.name for signal in alerted_signals(config_for(env, **overrides))} == expected


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_neither_phase_2_nor_the_retire_step_changes_the_rules(env):
    """The alert manager is shared: deploy phase2 and the retire step refuse to change it."""
    phase1 = preconfigured_alert_ids(config_for(env))
    assert preconfigured_alert_ids(config_for(env, phase=2)) == phase1
    assert preconfigured_alert_ids(config_for(env, phase=2, traffic="cluster", instances_retired=True)) == phase1


def test_the_alert_manager_enables_them_and_the_extra_ids_once():
    extra = "09396fbe-bddc-47a3-8072-c4246bef03c1"  # APIServerHighMemoryUsage, added by hand
    config = config_for("staging", preconfigured_alert_ids=[extra, "6c6843af-1815-46df-9e52-6feafcf31fd7"])
    ids = preconfigured_alert_ids(config)
    assert ids == sorted(set(ids)) and extra in ids and len(ids) == len(alerted_signals(config)) + 1
    manager = one(synth_core("staging"), "scaleway_cockpit_alert_manager")
    assert manager["preconfigured_alert_ids"] == preconfigured_alert_ids(config_for("staging"))
    assert "preconfigured_alert_ids" not in one(synth_core("dev", alerts=False), "scaleway_cockpit_alert_manager")


def test_the_documented_table_is_the_code():
    text = (REPO_ROOT / "docs/observability.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| signal")]
    alerted = [re.findall(r"\| ([^|]+?) \| `(\w+)` \([^)]*`([0-9a-f-]{36})`\) \| ([^|]+?) \|", row) for row in rows]
    documented = [found[0] for found in alerted if found]
    assert documented == [(s.signal, s.rule.name, s.rule.rule_id, s.rule.threshold) for s in ALERTED]
    for signal in ALERTED:
        assert signal.action in text
    for signal, why in UNCOVERED.items():
        assert f"| {signal} | {why} |" in text
