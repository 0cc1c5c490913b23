"""Health snapshots: typed, JSON-serialisable views of the actor tree."""

from __future__ import annotations

from typing import Literal

from msgspec import Struct

from ._backoff import RetryBudgetSnapshot
from ._breaker import BreakerSnapshot
from ._ledger import LedgerSnapshot
from ._limiter import LimiterSnapshot
from ._supervisor import ActorState, RestartStrategy

__all__ = ["ActorHealth", "LatencySnapshot", "RuntimeHealth", "SupervisorHealth"]


class LatencySnapshot(Struct, frozen=True, kw_only=True):
    """Percentiles over the most recent ``samples`` (milliseconds); None with no samples."""

    p50_ms: float | None
    p95_ms: float | None
    samples: int


class ActorHealth(Struct, frozen=True, kw_only=True):
    """One actor. Provider-only fields are None for the router."""

    name: str
    kind: Literal["router", "provider"]
    state: ActorState
    restarts: int
    last_crash: str | None
    last_crash_at: float | None
    mailbox_depth: int
    mailbox_capacity: int
    in_flight: int
    max_concurrency: int | None = None
    breaker: BreakerSnapshot | None = None
    limiter: LimiterSnapshot | None = None
    latency: LatencySnapshot | None = None
    ttft: LatencySnapshot | None = None
    successes: int = 0
    errors: dict[str, int] = {}

    @property
    def can_serve(self) -> bool:
        """Running with a breaker that lets requests through."""
        if self.state != "running":
            return False
        return self.breaker is None or self.breaker.state != "open"


class SupervisorHealth(Struct, frozen=True, kw_only=True):
    strategy: RestartStrategy
    max_restarts: int
    period_s: float
    escalate: bool


class RuntimeHealth(Struct, frozen=True, kw_only=True):
    """The whole tree. ``serving`` is true when the router and at least one provider can serve."""

    state: Literal["running", "closing", "closed"]
    serving: bool
    requests_in_flight: int
    supervisor: SupervisorHealth
    retry_budget: RetryBudgetSnapshot
    actors: tuple[ActorHealth, ...]
    costs: LedgerSnapshot | None = None

    def actor(self, name: str) -> ActorHealth:
        for a in self.actors:
            if a.name == name:
                return a
        raise KeyError(f"no actor named {name!r}")
