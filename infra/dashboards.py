"""An environment's dashboard for Cockpit's Grafana, as code: each alerted signal's measure
beside the limit its alert fires at, the counts that drive the bill, and the app's logs.

The panels follow the alerts (infra/alerts.py), so what the dashboard shows and what pages
someone are one list: a signal's panel plots the left side of Scaleway's own rule
expression and draws its limit as a red threshold. Metric names are therefore only those
Scaleway's preconfigured rules use; log queries use the labels our machines' Alloy sets
(infra/cloudinit/app.py). Queries name data sources through dashboard variables, so the
JSON imports into any Grafana whose Prometheus and Loki sources are Cockpit's.

Grafana's Terraform provider would provision it with the rest of the plan; it is not
served by the Go module proxy this project builds providers from, so `ciel dashboard
--env ENV` writes the JSON for review and import instead (docs/observability.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from infra.alerts import UNCOVERED, AlertedSignal, alerted_signals
from infra.cloudinit.app import MIGRATION_LOG_LABEL
from infra.config import EnvironmentConfig

METRICS = "${metrics}"  # the dashboard variables the panels' data sources point at
LOGS = "${logs}"
PANEL_WIDTH, PANEL_HEIGHT, PER_ROW = 8, 8, 3


@dataclass(frozen=True)
class Panel:
    title: str
    query: str
    source: str  # METRICS or LOGS
    unit: str = "short"  # Grafana's unit id
    limit: float | None = None  # drawn as a red threshold: where the alert fires
    description: str = ""
    kind: str = "timeseries"
    legend: str = "{{resource_id}}"


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...]


def _signal_panel(signal: AlertedSignal) -> Panel:
    rule = signal.rule
    ratio = 0 < rule.limit < 1
    return Panel(signal.signal, rule.measure, METRICS, unit="percentunit" if ratio else "short", limit=rule.limit,
                 description=f"{rule.name} fires above {rule.limit:g} ({rule.threshold}): {signal.action}")


# Which row a signal's panel sits in, by the product Scaleway files its rule under.
_LAYER_OF_PRODUCT = {"LB": "Traffic: the load balancer", "Instance": "Machines", "PostgreSQL": "Database",
                     "Redis": "Cache", "Kubernetes": "Cluster"}


def rows(config: EnvironmentConfig) -> list[Row]:
    """The dashboard's rows for `config`, in reading order."""
    by_layer: dict[str, list[Panel]] = {layer: [] for layer in _LAYER_OF_PRODUCT.values()}
    for signal in alerted_signals(config):
        by_layer[_LAYER_OF_PRODUCT[signal.rule.product]].append(_signal_panel(signal))
    labels = f'app="ciel", environment="{config.name}"'
    counts = (
        Panel("machines running", "count(instance_server_vcpu_count)", METRICS, legend="machines",
              description="Instances Cockpit sees in this project: each one is on the bill."),
        Panel("cluster nodes", "sum(kubernetes_cluster_k8s_shoot_nodes)", METRICS, legend="nodes",
              description="Kapsule nodes (phase 2): the pool's size between k8s_pool_min_size and max_size."),
    )
    logs = (
        Panel("log lines by role", f"sum by (role) (count_over_time({{{labels}}}[5m]))", LOGS, legend="{{role}}",
              description="What the app's machines write (Alloy, infra/cloudinit/app.py)."),
        Panel("error lines by role", f'sum by (role) (count_over_time({{{labels}}} |~ "(?i)error" [5m]))', LOGS,
              legend="{{role}}", description="Lines that say error: the first place to look when a check fails."),
        Panel("database migrations", f'{{{labels}, unit="{MIGRATION_LOG_LABEL}"}}', LOGS, kind="logs", legend="",
              description="`ciel db migrate` runs on the API machines, line by line."),
    )
    laid_out = [Row(layer, tuple(panels)) for layer, panels in by_layer.items() if panels]
    return [*laid_out, Row("What the bill counts", counts), Row("Logs", logs)]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict:
    datasource = {"type": "prometheus" if panel.source == METRICS else "loki", "uid": panel.source}
    rendered = {
        "id": panel_id, "type": panel.kind, "title": panel.title, "description": panel.description,
        "datasource": datasource, "gridPos": {"h": PANEL_HEIGHT, "w": PANEL_WIDTH, "x": x, "y": y},
        "targets": [{"refId": "A", "datasource": datasource, "expr": panel.query, "legendFormat": panel.legend}],
    }
    if panel.kind == "timeseries":
        steps = [{"color": "green", "value": None}]
        if panel.limit is not None:
            steps.append({"color": "red", "value": panel.limit})
        rendered["fieldConfig"] = {
            "defaults": {"unit": panel.unit, "thresholds": {"mode": "absolute", "steps": steps},
                         "custom": {"thresholdsStyle": {"mode": "line" if panel.limit is not None else "off"}}},
            "overrides": []}
    return rendered


def dashboard(config: EnvironmentConfig) -> dict:
    """The Grafana dashboard model (JSON) of `config`'s environment."""
    panels, panel_id, y = [], 1, 0
    for row in rows(config):
        panels.append({"id": panel_id, "type": "row", "title": row.title, "collapsed": False,
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []})
        panel_id, y = panel_id + 1, y + 1
        for index, panel in enumerate(row.panels):
            x = (index % PER_ROW) * PANEL_WIDTH
            panels.append(_panel_json(panel, panel_id, x, y + (index // PER_ROW) * PANEL_HEIGHT))
            panel_id += 1
        y += -(-len(row.panels) // PER_ROW) * PANEL_HEIGHT
    return {
        "uid": f"ciel-{config.name}", "title": f"Ciel — {config.name}",
        "description": f"Tier {config.tier}. Not on it yet, as not alerted yet (docs/observability.md): "
                       f"{', '.join(UNCOVERED)}.",
        "tags": ["ciel", config.name, config.tier], "timezone": "utc", "refresh": "1m", "schemaVersion": 39,
        "editable": True, "time": {"from": "now-6h", "to": "now"},
        "templating": {"list": [
            {"name": "metrics", "label": "metrics", "type": "datasource", "query": "prometheus"},
            {"name": "logs", "label": "logs", "type": "datasource", "query": "loki"},
        ]},
        "panels": panels,
    }


def dashboard_json(model: dict) -> str:
    """A model as written to disk: stable key order, so a review diff shows only changes."""
    return json.dumps(model, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
