"""Observability layer: Cockpit through its current resources.

A metrics and a logs data source (the deprecated `scaleway_cockpit` is not used), a push
token for the machines' agents, and the alert manager with an email contact point.
Preconfigured alerts are enabled by ID: listing them needs the live API (a data source),
which the offline path cannot call, so their IDs are pinned in infra/alerts.py, which
picks those on the plan's signals that the environment runs (`alerts: false` turns them
off; `preconfigured_alert_ids` adds more). The table is in docs/observability.md.
"""

from __future__ import annotations

from constructs import Construct

from infra.alerts import preconfigured_alert_ids
from infra.config import EnvironmentConfig
from infra.providers import scaleway


class Observability(Construct):
    def __init__(self, scope: Construct, id_: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, id_)
        source = scaleway("cockpit_source")
        alert_manager = scaleway("cockpit_alert_manager")
        token = scaleway("cockpit_token")

        self.metrics = source.CockpitSource(self, "metrics", name=f"ciel-{config.name}-metrics", type="metrics",
                                            retention_days=config.metrics_retention_days, region=config.region)
        self.logs = source.CockpitSource(self, "logs", name=f"ciel-{config.name}-logs", type="logs",
                                         retention_days=config.logs_retention_days, region=config.region)
        # Write-only: a leaked agent token cannot read anything back.
        self.push_token = token.CockpitToken(
            self, "push_token", name=f"ciel-{config.name}-push", region=config.region,
            scopes=token.CockpitTokenScopes(write_metrics=True, write_logs=True, query_metrics=False, query_logs=False))
        # Read-only, for `ciel verify`: are this environment's logs arriving?
        self.query_token = token.CockpitToken(
            self, "query_token", name=f"ciel-{config.name}-verify", region=config.region,
            scopes=token.CockpitTokenScopes(write_metrics=False, write_logs=False, query_metrics=True, query_logs=True))
        contacts = [alert_manager.CockpitAlertManagerContactPoints(email=config.alert_email)] if config.alert_email else None
        self.alert_manager = alert_manager.CockpitAlertManager(
            self, "alert_manager", region=config.region, contact_points=contacts,
            preconfigured_alert_ids=preconfigured_alert_ids(config) or None)
