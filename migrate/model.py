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
    bake_check_interval: float  # seconds between reads of the cluster backend while baking (the watch)
    in_flight_seconds: float  # longest request (LB timeout_server): wait after the switch before draining
    worker_stop_seconds: float  # a worker's graceful stop (visibility timeout + long poll)
    worker_replicas: int  # cluster workers that must run before instance workers stop
    wait_timeout: float  # how long to wait for an LB to settle or a server to change state
    bake_probe_requests: int = 5  # probes per watch read while baking: a small batch keeps each read short
    no_data_reads: int = 3  # consecutive inconclusive reads ("no data") that count as a failure

    @classmethod
    def from_dict(cls, data: dict) -> "Thresholds":
        return cls(**data)


PASSING_CHECKS = ("passed", "condpass")
INCONCLUSIVE_CHECKS = ("unknown", "neutral")


@dataclass(frozen=True)
class ServerHealth:
    """One backend server as the LB sees it (`list_backend_stats`).

    `state` is the LB's operational state of the server — whether it sends it traffic:
    running (up), stopping (up, failing checks: on its way down), starting (down, passing
    checks: on its way up, until the LB's rise count is met), stopped (down). `check` is
    the last health check's result: passed, condpass, failed, or unknown/neutral (none
    yet, or one in progress). "Passed" is not "up": a server is ready only when both say so.
    """

    state: str
    check: str

    @property
    def ready(self) -> bool:
        return self.state == "running" and self.check in PASSING_CHECKS

    @property
    def rising(self) -> bool:
        """Down but passing its checks: the LB puts it up once its rise count is met."""
        return self.state == "starting" and self.check in PASSING_CHECKS

    @property
    def inconclusive(self) -> bool:
        """Up, with a check in progress (or none reported yet): read again."""
        return self.state == "running" and self.check in INCONCLUSIVE_CHECKS

    def __str__(self) -> str:
        return f"{self.state}/{self.check}"

    def __repr__(self) -> str:
        return repr(str(self))


def rollback_worst_case(*, fall: int, check_delay: float, check_timeout: float, watch_interval: float,
                        frontends: int, apply_seconds: float) -> float:
    """Seconds, at worst, from the cluster failing during the bake to every public frontend
    back on the instances:

        fall × (check delay + check timeout)   the LB marks the server down (each check
                                               starts at most a delay after the last one
                                               ended, and a hung check lasts its timeout)
      + watch interval                         the bake's next read of the backend sees it
      + frontends × apply time                 each frontend switched back: one LB change,
                                               applied (pending → ready), after the other

    `apply_seconds` is one LB change from the request to its `ready` (including the poll
    that sees it). The bake does not wait for the LB's fall count (it rolls back at the
    first read where the cluster has no server up and passing), so this is an upper bound.
    """
    return fall * (check_delay + check_timeout) + watch_interval + frontends * apply_seconds


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
