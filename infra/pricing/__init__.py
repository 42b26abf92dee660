"""What an environment costs a month: line by line, from what its stack creates.

The lines come from the synthesized Terraform configuration (the same document the engine
plans), so the cost follows the plan, not a separate model of it. Prices come from
prices.yaml (dated, with its source), or from the refreshed copy `ciel cost --refresh`
wrote into the cache. Usage-priced services (Object Storage, Queues, Cockpit, registry
storage, traffic) are listed with no fixed price.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from foundation import paths

PRICE_FILE = Path(__file__).with_name("prices.yaml")

# The plan's tier targets (€/month), shown beside our figures.
PLAN_TARGETS = {"mvp": (50, 50), "growth": (200, 200), "scale": (600, 800)}

# Where a tier's figure leaves the plan's, and why: (cost line, why it is there). The
# presets follow the plan's tier tables (offers, counts, HA, managed or not, CDN); what
# differs is what those tables leave out and list prices. `ciel cost` prints these under
# the tier table with each line's €/month, and the README's table repeats them (tested).
PLAN_DEPARTURES: dict[str, tuple[tuple[str, str], ...]] = {
    "mvp": (
        ("public gateway", "egress for machines that have no public IP (inbound only through the LB)"),
        ("public gateway IP", "the gateway's flexible IP"),
        ("Secret Manager secrets", "secrets read at run time, never in user data"),
    ),
    "growth": (
        ("public gateway", "as mvp"),
        ("public gateway IP", "as mvp"),
        ("Secret Manager secrets", "as mvp"),
        ("PostgreSQL 16 (HA: 2 nodes)", "the plan's production database with HA: two DB-PRO2-XXS nodes at "
                                        "today's list price (58.40 each); `db_enable_ha: false` saves one"),
    ),
    "scale": (),
}

USAGE_PRICED = [
    ("Object Storage (media bucket)", "per GB stored and egress"),
    ("Scaleway Queues", "per million requests beyond the free tier"),
    ("Cockpit logs and custom metrics", "per GB ingested beyond the free tier"),
    ("Container Registry", "per GB stored beyond the free tier"),
]


@dataclass(frozen=True)
class CostLine:
    item: str
    offer: str
    quantity: float
    unit_price: float
    origin: str = ""  # where the unit price comes from, and its date

    @property
    def monthly(self) -> float:
        return round(self.quantity * self.unit_price, 2)


@dataclass(frozen=True)
class PriceTable:
    prices: dict
    as_of: str
    source: str
    # (section, offer or "") → "<source>, <date>" for prices the refreshed copy replaced;
    # the others are the dated table's.
    refreshed: dict = field(default_factory=dict)

    def price(self, section: str, offer: str | None = None) -> float:
        value = self.prices[section]
        if offer is None:
            return float(value)
        if offer not in value:
            raise KeyError(f"no price for {section} offer {offer!r} in the price table ({self.source})")
        return float(value[offer])

    def origin(self, section: str, offer: str | None = None) -> str:
        return self.refreshed.get((section, offer or ""), f"{self.source}, {self.as_of}")

    def line(self, item: str, offer: str, quantity: float, section: str, priced_as: str | None = None) -> CostLine:
        """A cost line priced from `section` (per offer `priced_as`, when the section has offers)."""
        return CostLine(item, offer, quantity, self.price(section, priced_as), self.origin(section, priced_as))


def refreshed_price_file() -> Path:
    """Per checkout (not in git): prices re-read from the catalog by `ciel cost --refresh`."""
    return paths.work_dir() / "prices-refreshed.yaml"


def load_prices(prefer_refreshed: bool = True) -> PriceTable:
    """The dated table, with the prices `ciel cost --refresh` found replacing theirs (and
    only those: each line says which source priced it)."""
    document = yaml.safe_load(PRICE_FILE.read_text())
    refreshed_file, refreshed = refreshed_price_file(), {}
    if prefer_refreshed and refreshed_file.exists():
        update = yaml.safe_load(refreshed_file.read_text())
        for section, offers in update.get("prices", {}).items():
            document.setdefault(section, {}).update(offers)
            refreshed.update({(section, offer): f"{update['source']}, {update['as_of']}" for offer in offers})
    return PriceTable(prices=document, as_of=str(document["as_of"]), source=str(document["source"]),
                      refreshed=refreshed)


def _resources(synthesized: dict, type_: str) -> list[dict]:
    return list(synthesized.get("resource", {}).get(type_, {}).values())


def cost_lines(synthesized: dict, table: PriceTable) -> list[CostLine]:
    """One line per priced thing the stack creates."""
    lines: list[CostLine] = []
    servers = _resources(synthesized, "scaleway_instance_server")
    by_type: dict[str, list[str]] = {}
    for server in servers:
        role = next((tag.split("=", 1)[1] for tag in server.get("tags", []) if tag.startswith("role=")), "other")
        by_type.setdefault(server["type"], []).append(role)
    for offer, roles in sorted(by_type.items()):
        counted = ", ".join(f"{roles.count(role)} {role}" for role in sorted(set(roles)))
        lines.append(table.line(f"instances ({counted})", offer, len(roles), "instance", offer))
    if servers:
        size = table.price("instance_root_volume_size_gb")
        lines.append(table.line(f"instance root volumes ({size:.0f} GB each)", "SBS", len(servers) * size,
                                "instance_root_volume_gb"))
    for lb in _resources(synthesized, "scaleway_lb"):
        lines.append(table.line("load balancer", lb["type"], 1, "load_balancer", lb["type"]))
    for db in _resources(synthesized, "scaleway_rdb_instance"):
        nodes = 2 if db.get("is_ha_cluster") else 1
        label = "PostgreSQL 16" + (" (HA: 2 nodes)" if nodes == 2 else "")
        lines.append(table.line(label, db["node_type"], nodes, "database_node", db["node_type"]))
        lines.append(table.line(f"database volume ({db['volume_size_in_gb']} GB per node)", db.get("volume_type", "sbs_5k"),
                              nodes * db["volume_size_in_gb"], "database_volume_gb"))
        replicas = _resources(synthesized, "scaleway_rdb_read_replica")
        if replicas:
            lines.append(table.line("PostgreSQL read replicas", db["node_type"], len(replicas), "database_node",
                                    db["node_type"]))
    for cluster in _resources(synthesized, "scaleway_redis_cluster"):
        lines.append(table.line("managed Redis", cluster["node_type"], cluster.get("cluster_size", 1), "redis_node",
                                cluster["node_type"]))
    for gateway in _resources(synthesized, "scaleway_vpc_public_gateway"):
        lines.append(table.line("public gateway", gateway["type"], 1, "public_gateway", gateway["type"]))
    gateway_ips = _resources(synthesized, "scaleway_vpc_public_gateway_ip")
    if gateway_ips:
        lines.append(table.line("public gateway IP", "flexible IP", len(gateway_ips), "public_gateway_ip"))
    for pool in _resources(synthesized, "scaleway_k8s_pool"):
        lines.append(table.line(f"Kapsule nodes (pool at its minimum, up to {pool.get('max_size', pool['size'])})",
                                pool["node_type"], pool["size"], "instance", pool["node_type"]))
    for cluster in _resources(synthesized, "scaleway_k8s_cluster"):
        lines.append(table.line("Kapsule control plane", cluster.get("type", "kapsule"), 1, "kubernetes_control_plane"))
    for plan in _resources(synthesized, "scaleway_edge_services_plan"):
        lines.append(table.line("Edge Services (CDN) plan", plan["name"], 1, "edge_services_plan", plan["name"]))
    secrets = _resources(synthesized, "scaleway_secret")
    if secrets:
        lines.append(table.line("Secret Manager secrets", "version", len(secrets), "secret_version"))
    return lines


def cluster_lb_line(cluster_lb_type: str, table: PriceTable) -> CostLine:
    """The private LB the cloud controller creates for the api Service (not in Terraform)."""
    return table.line("private LB of the api Service (cloud controller)", cluster_lb_type, 1, "load_balancer",
                      cluster_lb_type)


def total(lines: list[CostLine]) -> float:
    return round(sum(line.monthly for line in lines), 2)


def synthesized_document(directory: Path) -> dict:
    return json.loads((directory / "cdk.tf.json").read_text())


# Sections of the price table whose offers the catalog can price, and the catalog's
# product category for each (matched on the product or variant name).
_CATALOG_SECTIONS = {
    "instance": "Instance",
    "load_balancer": "Load Balancer",
    "database_node": "Managed Database",
    "redis_node": "Managed Redis",
    "public_gateway": "Public Gateway",
}
_PER_MONTH = {"hour": 730.0, "minute": 730.0 * 60, "month": 1.0}


def _monthly(product) -> float | None:
    price = product.price.retail_price if product.price else None
    unit = str(product.unit_of_measure.unit) if product.unit_of_measure else None
    if price is None or unit not in _PER_MONTH:
        return None
    size = product.unit_of_measure.size or 1
    return round((price.units + price.nanos / 1e9) * _PER_MONTH[unit] / size, 2)


def refresh_prices(client, table: PriceTable, zone: str, today: str) -> dict[str, dict[str, float]]:
    """Read the offers we price from Scaleway's public catalog; write the refreshed copy.

    `client` is a scaleway.Client (its api_url can point elsewhere, e.g. a test server).
    Returns what was found, per section; offers the catalog does not list keep the table's price.
    """
    from scaleway.product_catalog.v2alpha1 import ProductCatalogV2Alpha1PublicCatalogAPI

    api = ProductCatalogV2Alpha1PublicCatalogAPI(client)
    products = api.list_public_catalog_products_all(zone=zone)
    found: dict[str, dict[str, float]] = {}
    for section, category in _CATALOG_SECTIONS.items():
        wanted = {name.upper(): name for name in table.prices.get(section, {})}
        for product in products:
            if category.lower() not in (product.product_category or "").lower():
                continue
            for label in (product.variant, product.product):
                name = wanted.get((label or "").upper())
                monthly = _monthly(product)
                if name and monthly is not None:
                    found.setdefault(section, {})[name] = monthly
    refreshed_price_file().parent.mkdir(parents=True, exist_ok=True)
    refreshed_price_file().write_text(yaml.safe_dump({
        "as_of": today, "source": f"Scaleway public product catalog (v2alpha1), {zone}", "prices": found}))
    return found
