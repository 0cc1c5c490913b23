"""The runtime's configuration (everything except the providers themselves)."""

from __future__ import annotations

import math

import msgspec

from actors import (
    BreakerConfig,
    BudgetConfig,
    ModelPrice,
    PolicyName,
    RetryConfig,
    SupervisorConfig,
    TaskType,
)

__all__ = ["RouterConfig", "RuntimeConfig"]


class RouterConfig(msgspec.Struct, frozen=True, kw_only=True):
    """``policy`` orders providers; ``mailbox_capacity`` bounds dispatches waiting for the
    router; ``latency_explore`` is the share of requests the latency policy spends
    re-measuring a provider that is not the fastest. ``handoff``: while the router and a
    provider actor are idle, the caller's task routes its request and serves a non-streaming
    one itself, under the actors' limits (see ``ProviderActor.serve_handoff``); False sends
    every request through both mailboxes."""

    policy: PolicyName = "priority"
    mailbox_capacity: int = 1024
    latency_explore: float = 0.05
    handoff: bool = True

    def __post_init__(self) -> None:
        if self.mailbox_capacity < 1:
            raise ValueError(
                f"router.mailbox_capacity: expected an integer >= 1, got {self.mailbox_capacity}"
            )


class RuntimeConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How the runtime behaves.

    ``default_timeout_s``: a request's deadline when it sets no ``timeout``.
    ``grace_period_s``: on shutdown, how long in-flight requests may take to finish.
    ``stream_buffer``: events buffered per streaming attempt; a slow reader slows the upstream.
    A full buffer costs a trip through the scheduler for both sides (about 20 µs), so it holds
    what one network read usually brings; it is filled only as far as the reader lags.
    ``seed``: seeds every random choice (jitter, weighted routing) so runs can be replayed.
    ``log_requests``: a debug log line per attempt (off on the hot path by default).
    ``freeze_heap``: once the runtime has opened (prices loaded, actors started), collect
    garbage once and freeze what is alive (``gc.freeze()``): modules, classes and price data
    move to the collector's permanent generation, and full collections stop walking them.
    Such a pause lands on every request in flight (at c64 in the benchmark: 40-60 ms;
    frozen, 3-5 ms). Not over a freeze already made (the program's own, or an earlier
    runtime's), so once per process. The cost: a reference cycle among objects alive at that
    moment is never reclaimed once unreachable (objects freed by reference counting, nearly
    all, still are; actors restarting leave none), and that one collection pauses the open
    (tens of ms). False leaves the collector alone.

    Cost and smart routing: ``budgets`` cap spending per runtime, tenant or provider over a
    period; ``prices`` add or override per-million-token prices (keys ``"kind:model"`` or
    ``"model"``); ``quality`` adds or overrides quality scores per model; ``task_routes``
    maps task types (code, math, extraction, long_context, creative, chat) to the providers
    or models preferred for them, most preferred first.
    """

    router: RouterConfig = RouterConfig()
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    supervision: SupervisorConfig = SupervisorConfig()
    default_timeout_s: float = 60.0
    grace_period_s: float = 5.0
    stream_buffer: int = 64
    seed: int | None = None
    log_requests: bool = False
    freeze_heap: bool = True
    budgets: tuple[BudgetConfig, ...] = ()
    prices: dict[str, ModelPrice] = {}
    quality: dict[str, float] = {}
    task_routes: dict[TaskType, tuple[str, ...]] = {}

    def __post_init__(self) -> None:
        for name in ("default_timeout_s", "grace_period_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)) or (
                name == "default_timeout_s" and value == 0
            ):
                raise ValueError(f"{name}: expected seconds > 0, got {value}")
        if self.stream_buffer < 1:
            raise ValueError(f"stream_buffer: expected an integer >= 1, got {self.stream_buffer}")
