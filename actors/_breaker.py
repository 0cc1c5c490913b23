"""Circuit breaker: stop sending to a provider whose recent failure rate is too high.

Pure bookkeeping over an injected ``clock`` (seconds; the runtime passes
``trio.current_time``). Which outcomes count as failures is the caller's decision.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal, TypeAlias, final

import msgspec

from actors._checks import is_int as _is_int
from actors._checks import is_number as _is_number
from actors._checks import require as _require
from actors._stats import WindowedCounter

__all__ = ["BreakerConfig", "BreakerSnapshot", "BreakerState", "CircuitBreaker"]

BreakerState: TypeAlias = Literal["closed", "open", "half_open"]

_BUCKETS = 10


@final
class BreakerConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Circuit breaker tuning. Invalid values raise ``ValueError`` naming the field.

    * ``failure_threshold``: failure rate in (0, 1] at or above which the breaker opens.
    * ``min_requests``: verdicts needed in the window before the rate is trusted.
    * ``window_s``: length of the rolling window of verdicts.
    * ``cooldown_s``: how long the breaker stays open before probing.
    * ``max_cooldown_s``: cap for the cool-down, which doubles each time a half-open
      probe fails and resets when the breaker closes.
    * ``half_open_probes``: maximum concurrent probes, and successes needed to close.
    """

    failure_threshold: float = 0.5
    min_requests: int = 10
    window_s: float = 10.0
    cooldown_s: float = 5.0
    max_cooldown_s: float = 60.0
    half_open_probes: int = 2

    def __post_init__(self) -> None:
        ft = self.failure_threshold
        _require(_is_number(ft) and 0.0 < ft <= 1.0, "failure_threshold", "a number in (0, 1]", ft)
        mr = self.min_requests
        _require(_is_int(mr) and mr >= 1, "min_requests", "an integer >= 1", mr)
        ws = self.window_s
        _require(_is_number(ws) and 0.0 < ws < math.inf, "window_s", "a finite number > 0", ws)
        cd = self.cooldown_s
        _require(_is_number(cd) and 0.0 < cd < math.inf, "cooldown_s", "a finite number > 0", cd)
        mc = self.max_cooldown_s
        _require(
            _is_number(mc) and cd <= mc < math.inf,
            "max_cooldown_s",
            f"a finite number >= cooldown_s ({cd!r})",
            mc,
        )
        hp = self.half_open_probes
        _require(_is_int(hp) and hp >= 1, "half_open_probes", "an integer >= 1", hp)


@final
class BreakerSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Point-in-time view of a ``CircuitBreaker``.

    ``rejected_count`` counts refused ``try_acquire`` calls; ``open_until_s`` is the
    seconds left in the cool-down while open, else None.
    """

    state: BreakerState
    failures_in_window: int
    requests_in_window: int
    failure_rate: float
    opened_count: int
    rejected_count: int
    total_successes: int
    total_failures: int
    open_until_s: float | None


@final
class CircuitBreaker:
    """Closed / open / half-open circuit breaker over a rolling window of verdicts.

    Guarantees:

    * Closed: every call is allowed. The breaker opens on a failure once the window holds
      at least ``min_requests`` verdicts and ``failures / requests >= failure_threshold``.
      The window is ``window_s`` long, kept in 10 fixed buckets, so a verdict stops
      counting between ``0.9 * window_s`` and ``window_s`` after it was recorded.
    * Open: nothing is allowed until the cool-down has elapsed, then the breaker is
      half-open (checked lazily on the next call).
    * Half-open: at most ``half_open_probes`` calls are in flight. ``half_open_probes``
      successes close it with a fresh window and the base cool-down; any failure opens it
      again with the cool-down doubled (capped at ``max_cooldown_s``).

    Each successful ``try_acquire`` must be followed by exactly one of ``record_success``,
    ``record_failure`` or ``release``. Verdicts are attributed to the current state; one
    arriving while open, or while half-open with no probe in flight (a call admitted
    before the breaker opened), only updates the totals.
    """

    __slots__ = (
        "_clock",
        "_config",
        "_cooldown",
        "_failures",
        "_open_until",
        "_opened_count",
        "_probe_successes",
        "_probes_in_flight",
        "_rejected_count",
        "_requests",
        "_state",
        "_total_failures",
        "_total_successes",
    )

    def __init__(self, config: BreakerConfig, *, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        now = clock()
        self._requests = WindowedCounter(config.window_s, now=now, buckets=_BUCKETS)
        self._failures = WindowedCounter(config.window_s, now=now, buckets=_BUCKETS)
        self._state: BreakerState = "closed"
        self._cooldown = config.cooldown_s
        self._open_until = -math.inf
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._opened_count = 0
        self._rejected_count = 0
        self._total_successes = 0
        self._total_failures = 0

    @property
    def config(self) -> BreakerConfig:
        return self._config

    def _refresh(self, now: float) -> BreakerState:
        if self._state == "open" and now >= self._open_until:
            self._state = "half_open"
            self._probes_in_flight = 0
            self._probe_successes = 0
        return self._state

    def _open(self, now: float) -> None:
        self._state = "open"
        self._open_until = now + self._cooldown
        self._opened_count += 1

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker whose cool-down has elapsed reports half-open."""
        return self._refresh(self._clock())

    def would_allow(self) -> bool:
        """Whether ``try_acquire`` would succeed now, without taking a probe slot."""
        if self._state == "closed":  # the common case; no clock read (a closed one stays so)
            return True
        state = self._refresh(self._clock())
        if state == "closed":
            return True
        if state == "open":
            return False
        return self._probes_in_flight < self._config.half_open_probes

    def try_acquire(self) -> bool:
        """Admit a call: always when closed, never when open, and when half-open only while
        fewer than ``half_open_probes`` probes are in flight (taking a slot)."""
        if self._state == "closed":
            return True
        state = self._refresh(self._clock())
        if state == "closed":
            return True
        if state == "half_open" and self._probes_in_flight < self._config.half_open_probes:
            self._probes_in_flight += 1
            return True
        self._rejected_count += 1
        return False

    def record_success(self, now: float | None = None) -> None:
        """The admitted call succeeded (``now``: the clock's time, if at hand)."""
        if now is None:
            now = self._clock()
        self._total_successes += 1
        if self._state == "closed":  # the common case: no state change to consider
            self._requests.add(now)
            return
        state = self._refresh(now)
        if state == "closed":
            self._requests.add(now)
        elif state == "half_open" and self._probes_in_flight > 0:
            self._probes_in_flight -= 1
            self._probe_successes += 1
            if self._probe_successes >= self._config.half_open_probes:
                self._state = "closed"
                self._cooldown = self._config.cooldown_s
                self._requests.clear()
                self._failures.clear()

    def record_failure(self) -> None:
        """The admitted call failed."""
        now = self._clock()
        self._total_failures += 1
        state = self._refresh(now)
        if state == "closed":
            self._requests.add(now)
            self._failures.add(now)
            requests = self._requests.total(now)
            if (
                requests >= self._config.min_requests
                and self._failures.total(now) / requests >= self._config.failure_threshold
            ):
                self._open(now)
        elif state == "half_open" and self._probes_in_flight > 0:
            self._probes_in_flight -= 1
            doubled = self._cooldown * 2.0
            cap = self._config.max_cooldown_s
            self._cooldown = doubled if doubled < cap else cap
            self._open(now)

    def release(self) -> None:
        """The admitted call ended without a verdict (e.g. cancelled): free its half-open
        probe slot, if it held one, and record nothing."""
        if self._refresh(self._clock()) == "half_open" and self._probes_in_flight > 0:
            self._probes_in_flight -= 1

    def snapshot(self) -> BreakerSnapshot:
        now = self._clock()
        state = self._refresh(now)
        requests = self._requests.total(now)
        failures = self._failures.total(now)
        return BreakerSnapshot(
            state=state,
            failures_in_window=failures,
            requests_in_window=requests,
            failure_rate=failures / requests if requests else 0.0,
            opened_count=self._opened_count,
            rejected_count=self._rejected_count,
            total_successes=self._total_successes,
            total_failures=self._total_failures,
            open_until_s=self._open_until - now if state == "open" else None,
        )
