"""The typed configuration of one environment.

Every field has a description, a safe and cheap default, and validation; the YAML files
in infra/environments/ only state what differs from these defaults. Fields are added
layer by layer as constructs need them.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Regions and their zones where every service we use (VPC, LB, RDB, Kapsule, Queues) exists.
REGION_ZONES: dict[str, tuple[str, ...]] = {
    "fr-par": ("fr-par-1", "fr-par-2"),
    "nl-ams": ("nl-ams-1", "nl-ams-2", "nl-ams-3"),
    "pl-waw": ("pl-waw-1", "pl-waw-2", "pl-waw-3"),
}

Tier = Literal["mvp", "growth", "scale"]
Region = Literal["fr-par", "nl-ams", "pl-waw"]


class EnvironmentConfig(BaseModel):
    """One environment (dev, staging, prod): where it runs and how big it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Environment name; taken from the file name, used in every resource name and tag.")
    tier: Tier = Field("mvp", description="Size preset: mvp (~€50/month), growth (~€200), scale (~€600–800).")
    region: Region = Field("fr-par", description="Scaleway region for regional resources (VPC, database, queues).")
    zone: str = Field("fr-par-1", description="Scaleway zone for zonal resources (instances, LB, gateway); must be in `region`.")
    private_network_cidr: str = Field(
        "10.0.0.0/24",
        description="IPv4 range of the private network that joins every component; RFC 1918, /16 to /28.",
    )

    @field_validator("name")
    @classmethod
    def _name_is_a_label(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9-]{1,19}", value):
            raise ValueError("must be 2–20 characters: lowercase letters, digits and '-', starting with a letter")
        return value

    @field_validator("private_network_cidr")
    @classmethod
    def _cidr_is_private(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value, strict=True)
        except ValueError as error:
            raise ValueError(f"{value!r} is not an IPv4 network in CIDR form ({error}); example: 10.0.0.0/24") from None
        if not network.is_private:
            raise ValueError(f"{value} is not a private (RFC 1918) range; use one inside 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16")
        if not 16 <= network.prefixlen <= 28:
            raise ValueError(f"prefix /{network.prefixlen} is out of range: Scaleway private networks take /16 to /28")
        return str(network)

    @model_validator(mode="after")
    def _zone_in_region(self) -> "EnvironmentConfig":
        zones = REGION_ZONES[self.region]
        if self.zone not in zones:
            raise ValueError(f"zone {self.zone!r} is not in region {self.region}: choose one of {', '.join(zones)}")
        return self

    def tags(self, layer: str) -> list[str]:
        """Scaleway tags are strings; key=value keeps them filterable."""
        return ["app=ciel", f"environment={self.name}", f"layer={layer}"]
