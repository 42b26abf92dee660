"""`ciel cost`: an environment's monthly cost, line by line, and the plan's tier tables."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date

from toolchain import bindings, node
from infra.config import EnvironmentConfig, load_environment
from infra.config.tiers import TIER_PRESETS, preset


@dataclass(frozen=True)
class TierFigure:
    tier: str
    target_low: int
    target_high: int
    ours: float
    departures: tuple[tuple[str, float, str], ...] = ()  # (cost line, its €/month, why)

    @property
    def target(self) -> str:
        return f"~{self.target_low}" if self.target_low == self.target_high else f"~{self.target_low}–{self.target_high}"

    @property
    def difference(self) -> float:
        """Ours against the plan's figure (the middle of a range)."""
        return round(self.ours - (self.target_low + self.target_high) / 2, 2)


def _synthesized(config: EnvironmentConfig) -> dict:
    """The offline synthesis of `config`: exactly what a plan would create."""
    bindings.ensure_importable()
    os.environ.update(node.runtime_env())
    from infra.app import synthesize
    from infra.pricing import synthesized_document

    return synthesized_document(synthesize(config, remote_state=None).directory)


def environment_cost(env: str, config: EnvironmentConfig | None = None):
    from infra.pricing import cluster_lb_line, cost_lines, load_prices

    config = config or load_environment(env)
    table = load_prices()
    lines = cost_lines(_synthesized(config), table)
    if config.phase == 2:
        lines.append(cluster_lb_line(config.cluster_lb_type, table))
    return config, table, lines


def both_phases_cost(env: str):
    """What ENV costs while the cluster runs beside the instances (between phase 2 and the
    cutover's retire step): its phase-1 lines plus the cluster's."""
    config = load_environment(env)
    return environment_cost(env, EnvironmentConfig(**{**config.model_dump(), "phase": 2}))


def tier_figures(env: str) -> list[TierFigure]:
    """Each tier's preset, on a bare environment in `env`'s region, priced like `env`."""
    from infra.pricing import PLAN_DEPARTURES, PLAN_TARGETS, cost_lines, load_prices, total

    base = load_environment(env)
    table = load_prices()
    figures = []
    for tier in TIER_PRESETS:
        config = EnvironmentConfig(name=env, tier=tier, region=base.region, zone=base.zone,
                                   private_network_cidr=base.private_network_cidr, image_tag=base.image_tag,
                                   **preset(tier))
        low, high = PLAN_TARGETS[tier]
        lines = cost_lines(_synthesized(config), table)
        monthly = {line.item: line.monthly for line in lines}
        departures = []
        for item, why in PLAN_DEPARTURES[tier]:
            if item not in monthly:  # a preset changed under the explanation
                raise KeyError(f"infra/pricing PLAN_DEPARTURES[{tier!r}] names {item!r}, which tier {tier} no "
                               f"longer has (its lines: {', '.join(monthly)})")
            departures.append((item, monthly[item], why))
        figures.append(TierFigure(tier, low, high, total(lines), tuple(departures)))
    return figures


def refresh(env: str) -> tuple[dict[str, dict[str, float]] | None, str]:
    """Re-read our offers' prices from the public catalog. Returns what was found (None
    when the catalog could not be read) and a line saying so; the dated table then stays
    the price source."""
    import requests

    from infra.pricing import load_prices, refresh_prices
    from migrate.resilience import ApiError, RetryPolicy, call

    from ciel import credentials as creds

    config = load_environment(env)
    # The catalog is public, but the SDK insists on a key pair: real ones when there are,
    # the offline placeholders otherwise.
    client = creds.detect().sdk_client(zone=config.zone, region=config.region)
    try:
        # One quick attempt: without network there is nothing to wait for.
        found = call("GET product catalog", lambda: refresh_prices(
            client, load_prices(prefer_refreshed=False), config.zone, date.today().isoformat()),
            RetryPolicy(attempts=2, first_delay=1.0, timeout=20.0), log=lambda line: None)
    except (ApiError, OSError, requests.RequestException) as error:
        return None, (f"Could not read Scaleway's product catalog ({error}); prices below come from the dated "
                      "table infra/pricing/prices.yaml")
    return found, f"Refreshed {sum(len(v) for v in found.values())} prices from the product catalog."
