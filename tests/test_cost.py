"""`ciel cost`: lines from what the stack creates, priced from the dated table (or the catalog)."""

from __future__ import annotations

import json
import socket
import threading
from urllib.parse import parse_qs, urlparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ciel import cost as costs
from infra.pricing import PLAN_TARGETS, load_prices, refreshed_price_file, total
from tests.conftest import of_type, run_ciel, synth_core


def test_cost_command_prints_its_lines_a_total_and_the_tier_table():
    result = run_ciel("cost", "--env", "dev")
    assert result.returncode == 0, result.stderr
    for text in ("instances (1 api, 1 redis, 1 worker)", "load balancer", "PostgreSQL 16", "public gateway", "total",
                 "[1] Scaleway public price list, fr-par (hourly × 730), 2026-08-15", "price from", "plan's target",
                 "mvp", "growth", "scale"):
        assert text in result.stdout


def test_every_line_is_quantity_times_unit_price_and_the_total_is_their_sum():
    _, _, lines = costs.environment_cost("prod")
    for line in lines:
        assert line.monthly == round(line.quantity * line.unit_price, 2)
    assert total(lines) == round(sum(line.monthly for line in lines), 2)


def test_lines_count_what_the_stack_creates():
    config, table, lines = costs.environment_cost("prod")
    stack = synth_core("prod")
    servers = of_type(stack, "scaleway_instance_server")
    assert sum(line.quantity for line in lines if line.item.startswith("instances")) == len(servers)
    (database,) = [line for line in lines if line.item.startswith("PostgreSQL 16")]
    assert database.quantity == 2 and database.unit_price == table.price("database_node", config.db_node_type)
    (replicas,) = [line for line in lines if line.item.startswith("PostgreSQL read replicas")]
    assert replicas.quantity == len(of_type(stack, "scaleway_rdb_read_replica")) == 1


def test_the_mvp_tier_lands_near_the_plans_fifty_euros():
    mvp = {figure.tier: figure for figure in costs.tier_figures("dev")}["mvp"]
    low, high = PLAN_TARGETS["mvp"]
    assert (mvp.target_low, mvp.target_high) == (low, high) == (50, 50)
    assert abs(mvp.ours - 50) / 50 <= 0.25, f"mvp costs {mvp.ours:.2f} €/month, not about 50"


def test_each_tier_costs_more_than_the_one_below():
    figures = [figure.ours for figure in costs.tier_figures("dev")]
    assert figures == sorted(figures) and len(set(figures)) == 3


def test_an_offer_without_a_price_is_an_error_not_a_zero():
    table = load_prices(prefer_refreshed=False)
    with pytest.raises(KeyError, match="no price for instance offer 'DEV9-Z'"):
        table.price("instance", "DEV9-Z")


class _Catalog(BaseHTTPRequestHandler):
    """Scaleway's public catalog endpoint, answering with two products."""

    products = [
        {"sku": "/compute/dev1_s/run_par1", "service_category": "Compute", "product_category": "Instance",
         "product": "DEV1-S", "variant": "DEV1-S", "description": "", "status": "general_availability", "badges": [],
         "locality": {"zone": "fr-par-1"}, "price": {"retail_price": {"currency_code": "EUR", "units": 0,
                                                                        "nanos": 10000000}},
         "unit_of_measure": {"unit": "hour", "size": 1}},
        {"sku": "/network/lb_s/run_par1", "service_category": "Network", "product_category": "Load Balancer",
         "product": "LB-S", "variant": "LB-S", "description": "", "status": "general_availability", "badges": [],
         "locality": {"zone": "fr-par-1"}, "price": {"retail_price": {"currency_code": "EUR", "units": 12,
                                                                        "nanos": 500000000}},
         "unit_of_measure": {"unit": "month", "size": 1}},
    ]
    requests: list[str] = []

    def do_GET(self):  # noqa: N802 (http.server naming)
        type(self).requests.append(self.path)
        page = int(parse_qs(urlparse(self.path).query).get("page", ["1"])[0])
        listed = self.products if page == 1 else []  # the SDK pages until an empty page
        body = json.dumps({"products": listed, "total_count": len(self.products)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_refresh_reads_the_catalog_through_the_sdk_and_cost_then_uses_it(monkeypatch):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Catalog)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("SCW_API_URL", f"http://127.0.0.1:{server.server_port}")
    try:
        found, message = costs.refresh("dev")
    finally:
        server.shutdown()
    assert message == "Refreshed 2 prices from the product catalog."
    assert found == {"instance": {"DEV1-S": 7.3}, "load_balancer": {"LB-S": 12.5}}
    assert _Catalog.requests and _Catalog.requests[0].startswith("/product-catalog/v2alpha1/public-catalog/products")
    assert "zone=fr-par-1" in _Catalog.requests[0]
    try:
        table = load_prices()
        assert table.price("instance", "DEV1-S") == 7.3 and table.price("instance", "DEV1-M") == 14.45
        # Each price says where it comes from: the catalog for the two it had, the dated table for the rest.
        today = costs.date.today().isoformat()
        assert table.origin("instance", "DEV1-S") == f"Scaleway public product catalog (v2alpha1), fr-par-1, {today}"
        assert table.origin("instance", "DEV1-M") == f"{table.source}, {table.as_of}" and table.as_of == "2026-08-15"
        origins = {line.offer: line.origin for line in costs.environment_cost("dev")[2]}
        assert "product catalog" in origins["DEV1-S"] and "product catalog" in origins["LB-S"]
        assert origins["DB-DEV-S"] == "Scaleway public price list, fr-par (hourly × 730), 2026-08-15"
        shown = run_ciel("cost", "--env", "dev").stdout
        assert "[1] Scaleway public price list" in shown and "[2] Scaleway public product catalog" in shown
    finally:
        refreshed_price_file().unlink()


def test_refresh_without_network_falls_back_to_the_dated_table_and_says_so():
    """No answer at the catalog's address (nothing listens on it): one line, no traceback."""
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = run_ciel("cost", "--env", "dev", "--refresh", env={"SCW_API_URL": f"http://127.0.0.1:{port}"})
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "Could not read Scaleway's product catalog" in result.stderr and "prices.yaml" in result.stderr
    assert "Monthly cost — dev" in result.stdout and "[1] Scaleway public price list" in result.stdout


def test_cost_shows_what_phase_2_adds_and_the_total_while_both_phases_run():
    _, _, phase1 = costs.environment_cost("dev")
    config, table, both = costs.both_phases_cost("dev")
    added = [line for line in both if line not in phase1]
    assert {line.item.split(" (")[0] for line in added} >= {"Kapsule nodes", "Kapsule control plane",
                                                             "private LB of the api Service"}
    assert total(both) == round(total(phase1) + sum(line.monthly for line in added), 2)
    result = run_ciel("cost", "--env", "dev")
    assert "Added by phase 2" in result.stdout and "While both phases run:" in result.stdout


def test_the_readme_tier_table_is_what_ciel_cost_computes_and_names_every_departure():
    from tests.conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    section = readme[readme.index("### Tiers beside the plan"):]
    rows = {cells[0]: cells for cells in (
        [cell.strip() for cell in line.strip("|").split("|")] for line in section.splitlines()
        if line.startswith("| ") and not line.startswith("| tier") and not line.startswith("| ---"))}
    figures = {figure.tier: figure for figure in costs.tier_figures("dev")}
    assert set(rows) == set(figures) == set(PLAN_TARGETS)
    for tier, figure in figures.items():
        _, target, ours, difference, why = rows[tier]
        assert (target, ours, difference) == (figure.target, f"{figure.ours:.2f}", f"{figure.difference:+.2f}"), tier
        for item, monthly, _ in figure.departures:
            assert item in why or item.lower() in why, (tier, item)


def test_a_tier_outside_its_target_says_where_it_departs():
    for figure in costs.tier_figures("dev"):
        inside = figure.target_low * 0.9 <= figure.ours <= figure.target_high * 1.1
        assert inside or figure.departures, f"{figure.tier}: {figure.ours:.2f} €/month against {figure.target}, unexplained"


def test_a_departure_naming_a_line_the_tier_no_longer_has_is_an_error(monkeypatch):
    from infra import pricing

    monkeypatch.setitem(pricing.PLAN_DEPARTURES, "scale", (("a line nobody creates", "why"),))
    with pytest.raises(KeyError, match="'a line nobody creates', which tier scale no longer has"):
        costs.tier_figures("dev")
