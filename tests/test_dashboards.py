"""infra/dashboards.py and `ciel dashboard`: a panel for every alerted signal, showing what
its alert measures and where it fires, on metrics Scaleway's own rules use."""

from __future__ import annotations

import json
import re

import pytest

from infra.alerts import alerted_signals
from infra.dashboards import LOGS, METRICS, dashboard, rows
from lab.families.cockpit import PRECONFIGURED_RULES
from tests.conftest import config_for, run_ciel

ENVIRONMENTS = ("dev", "staging", "prod")


def _panels(model: dict) -> list[dict]:
    return [panel for panel in model["panels"] if panel["type"] != "row"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_alerted_signal_has_a_panel_with_its_measure_and_its_limit(env):
    config = config_for(env)
    panels = {panel["title"]: panel for panel in _panels(dashboard(config))}
    signals = alerted_signals(config)
    assert signals
    for signal in signals:
        panel = panels[signal.signal]
        assert panel["targets"][0]["expr"] == signal.rule.measure
        steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1] == {"color": "red", "value": signal.rule.limit}
        assert signal.action in panel["description"]


def test_panels_follow_the_configuration_as_the_alerts_do():
    def titles(**overrides):
        return {row.title: [panel.title for panel in row.panels] for row in rows(config_for("dev", **overrides))}

    assert "Cache" not in titles()  # self-managed Redis: Scaleway measures no managed cluster
    assert titles(use_managed_redis=True)["Cache"] == ["Redis memory", "Redis CPU"]
    assert "Traffic: the load balancer" not in titles(enable_load_balancer=False, enable_https=False)
    without_alerts = titles(alerts=False)
    assert list(without_alerts) == ["What the bill counts", "Logs"]


def test_every_metric_a_panel_reads_is_one_scaleways_rules_use():
    known = set()
    for rule in PRECONFIGURED_RULES:
        known |= set(re.findall(r"\b[a-z]+_[a-zA-Z0-9_]+\b", rule[7]))
    for env in ENVIRONMENTS:
        for row in rows(config_for(env, use_managed_redis=True)):
            for panel in row.panels:
                if panel.source != METRICS:
                    continue
                names = set(re.findall(r"\b[a-z]+_[a-zA-Z0-9_]+\b", re.sub(r"\{[^}]*\}|\[[^]]*\]", "", panel.query)))
                assert names and names <= known, (panel.title, names - known)


def test_log_panels_select_this_environment_with_the_labels_alloy_sets():
    from infra.cloudinit.app import MIGRATION_LOG_LABEL

    (logs,) = [row for row in rows(config_for("staging")) if row.title == "Logs"]
    for panel in logs.panels:
        assert panel.source == LOGS
        assert 'app="ciel", environment="staging"' in panel.query
    assert any(f'unit="{MIGRATION_LOG_LABEL}"' in panel.query for panel in logs.panels)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_the_layout_has_unique_ids_and_no_overlapping_panels(env):
    model = dashboard(config_for(env))
    ids = [panel["id"] for panel in model["panels"]]
    assert len(ids) == len(set(ids))
    cells = set()
    for panel in model["panels"]:
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24
        covered = {(x, y) for x in range(box["x"], box["x"] + box["w"]) for y in range(box["y"], box["y"] + box["h"])}
        assert not cells & covered, panel["title"]
        cells |= covered
    assert {panel["datasource"]["uid"] for panel in _panels(model)} == {"${metrics}", "${logs}"}
    assert {variable["name"] for variable in model["templating"]["list"]} == {"metrics", "logs"}


def test_ciel_dashboard_writes_the_json_and_calls_nothing(tmp_path):
    out = tmp_path / "prod.json"
    result = run_ciel("dashboard", "--env", "prod", "--out", str(out),
                      env={"SCW_API_URL": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9"})
    assert result.returncode == 0, result.stderr
    model = json.loads(out.read_text())
    assert (model["uid"], model["title"]) == ("ciel-prod", "Ciel — prod")
    assert f"{len(_panels(model))} panels" in result.stdout
    printed = run_ciel("dashboard", "--env", "prod", "--out", "-")
    assert json.loads(printed.stdout) == model


def test_ciel_dashboard_refuses_an_unknown_environment():
    result = run_ciel("dashboard", "--env", "qa")
    assert result.returncode != 0 and "qa" in result.stderr and "dev" in result.stderr
