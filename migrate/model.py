"""What a cutover works on, and what it remembers."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum


class Step(str, Enum):
    PREFLIGHT = "preflight"
    PREVIEW = "preview"
    SWITCH = "switch"
    BAKE = "bake"
    DRAIN = "drain"
    RETIRE = "retire"


FORWARD = [Step.PREFLIGHT, Step.PREVIEW, Step.SWITCH, Step.BAKE, Step.DRAIN, Step.RETIRE]


class Status(str, Enum):
    IN_PROGRESS = "in_progress"
    DONE = "done"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"


@dataclass(frozen=True)
class Target:
    """The resources the cutover moves between (IDs are bare UUIDs, zone apart)."""

    zone: str
    lb_id: str
    lb_address: str  # where probes are sent (the LB's public IP, or a test proxy host:port)
    public_host: str | None  # Host header of production probes (the API host), if any
    preview_host: str
    frontend_ids: list[str]
    instance_backend_id: str
    cluster_backend_id: str
    instance_ips: list[str]
    api_server_ids: list[str]
    worker_server_ids: list[str]

    @classmethod
    def from_dict(cls, data: dict) -> "Target":
        return cls(**data)


@dataclass(frozen=True)
class Thresholds:
    probe_requests: int
    min_success_ratio: float
    max_p95_ms: int
    bake_seconds: float
    bake_check_interval: float  # seconds between checks while baking
    in_flight_seconds: float  # longest request (LB timeout_server): wait after the switch before draining
    worker_stop_seconds: float  # a worker's graceful stop (visibility timeout + long poll)
    worker_replicas: int  # cluster workers that must run before instance workers stop
    wait_timeout: float  # how long to wait for an LB to settle or a server to change state

    @classmethod
    def from_dict(cls, data: dict) -> "Thresholds":
        return cls(**data)


@dataclass
class Record:
    """The persisted state of one environment's cutover."""

    env: str
    target: dict
    thresholds: dict
    status: str = Status.IN_PROGRESS.value
    completed: list[str] = field(default_factory=list)
    current: str | None = None
    switched_at: float | None = None
    rollback_reason: str | None = None
    history: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "Record":
        return cls(**data)

    @property
    def state(self) -> str:
        """A readable state: the last completed step, or the terminal status."""
        if self.status != Status.IN_PROGRESS.value:
            return self.status
        return self.completed[-1] if self.completed else "planned"
