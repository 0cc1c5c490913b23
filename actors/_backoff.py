"""Retry pacing: jittered exponential backoff and a retry budget that caps retry load.

Pure bookkeeping: randomness comes from an injected ``random.Random`` and time from an
injected ``clock`` (seconds; the runtime passes ``trio.current_time``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import final

import msgspec

from actors._checks import is_int as _is_int
from actors._checks import is_number as _is_number
from actors._checks import require as _require
from actors._stats import WindowedCounter

__all__ = [
    "Backoff",
    "BackoffConfig",
    "RetryBudget",
    "RetryBudgetConfig",
    "RetryBudgetSnapshot",
]

_BUCKETS = 10


@final
class BackoffConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Backoff tuning: delays grow from ``base_s``, doubling per retry up to ``cap_s``;
    at most ``max_retries`` retries per call. Invalid values raise ``ValueError``."""

    base_s: float = 0.1
    cap_s: float = 5.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        b = self.base_s
        _require(_is_number(b) and 0.0 < b < math.inf, "base_s", "a finite number > 0", b)
        c = self.cap_s
        _require(
            _is_number(c) and b <= c < math.inf, "cap_s", f"a finite number >= base_s ({b!r})", c
        )
        m = self.max_retries
        _require(_is_int(m) and m >= 0, "max_retries", "an integer >= 0", m)


@final
class Backoff:
    """Full-jitter exponential backoff.

    Guarantees: ``delay(n)`` is uniform in ``[0, min(cap_s, base_s * 2**n))`` for any
    ``n >= 0`` (no overflow for huge ``n``); with ``retry_after`` it is never less than
    ``retry_after``: the server's Retry-After is a floor and is not capped.
    """

    __slots__ = ("_base", "_cap", "_cap_exponent", "_config", "_rng")

    def __init__(self, config: BackoffConfig, *, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        self._base = config.base_s
        self._cap = config.cap_s
        # Smallest n with base * 2**n >= cap: from there on the ceiling is cap, and
        # computing 2**n for a large n would overflow a float.
        k = 0
        while math.ldexp(self._base, k) < self._cap:
            k += 1
        self._cap_exponent = k

    @property
    def config(self) -> BackoffConfig:
        return self._config

    def delay(self, retry_number: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry ``retry_number`` (0 for the first retry).

        ``retry_after`` (the server's Retry-After, in seconds) is a floor; NaN or
        negative values are ignored.
        """
        if retry_number < 0:
            raise ValueError(f"retry_number: expected an integer >= 0, got {retry_number!r}")
        if retry_number >= self._cap_exponent:
            ceiling = self._cap
        else:
            ceiling = math.ldexp(self._base, retry_number)
        jittered = self._rng.random() * ceiling
        if retry_after is not None and retry_after > jittered:
            return retry_after
        return jittered


@final
class RetryBudgetConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Retry budget tuning: retries may be up to ``ratio`` of the requests seen in the last
    ``window_s`` seconds, and ``min_retries`` per window are always allowed so low traffic
    can still retry. Invalid values raise ``ValueError``."""

    ratio: float = 0.2
    window_s: float = 10.0
    min_retries: int = 3

    def __post_init__(self) -> None:
        r = self.ratio
        _require(_is_number(r) and 0.0 <= r < math.inf, "ratio", "a finite number >= 0", r)
        w = self.window_s
        _require(_is_number(w) and 0.0 < w < math.inf, "window_s", "a finite number > 0", w)
        m = self.min_retries
        _require(_is_int(m) and m >= 0, "min_retries", "an integer >= 0", m)


@final
class RetryBudgetSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Point-in-time view of a ``RetryBudget``; ``ratio`` is the configured ratio."""

    requests_in_window: int
    retries_in_window: int
    ratio: float


@final
class RetryBudget:
    """Caps retries to a fraction of recent traffic so retries cannot amplify an outage.

    ``record_request`` is for original requests only; ``try_spend`` for each retry.

    Guarantee: a retry is allowed only if, counting it, the retries in the window are at
    most ``max(min_retries, ratio * requests in the window)``. The window is ``window_s``
    long, kept in 10 fixed buckets (width ``b = window_s / 10``), so it always spans
    between ``window_s - b`` and ``window_s`` of history. Hence, for a retry allowed at
    time t: retries in ``(t - window_s + b, t]`` <= ``max(min_retries, ratio * requests in
    [t - window_s, t])``. That one-bucket slack is the price of bounded memory.
    """

    __slots__ = ("_clock", "_config", "_requests", "_retries")

    def __init__(self, config: RetryBudgetConfig, *, clock: Callable[[], float]) -> None:
        self._config = config
        self._clock = clock
        now = clock()
        self._requests = WindowedCounter(config.window_s, now=now, buckets=_BUCKETS)
        self._retries = WindowedCounter(config.window_s, now=now, buckets=_BUCKETS)

    @property
    def config(self) -> RetryBudgetConfig:
        return self._config

    def record_request(self, now: float | None = None) -> None:
        """Count one original (non-retry) request (``now``: the clock's time, if at hand)."""
        self._requests.add(self._clock() if now is None else now)

    def try_spend(self) -> bool:
        """Allow one retry if the budget has room, counting it if so."""
        now = self._clock()
        allowed = self._config.ratio * self._requests.total(now)
        if allowed < self._config.min_retries:
            allowed = self._config.min_retries
        if self._retries.total(now) + 1 > allowed:
            return False
        self._retries.add(now)
        return True

    def snapshot(self) -> RetryBudgetSnapshot:
        now = self._clock()
        return RetryBudgetSnapshot(
            requests_in_window=self._requests.total(now),
            retries_in_window=self._retries.total(now),
            ratio=self._config.ratio,
        )
