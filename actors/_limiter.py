"""Token-bucket admission control for provider rate limits (requests and tokens per minute).

Pure bookkeeping: callers ask how long to wait, sleep themselves, then try again.
Time comes from an injected ``clock`` returning seconds (the runtime passes
``trio.current_time``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import final

import msgspec

__all__ = ["Clock", "LimiterSnapshot", "RateLimiter", "TokenBucket"]

Clock = Callable[[], float]


def _delay_until(now: float, t: float) -> float:
    """A delay ``d >= 0`` such that ``now + d >= t`` holds in float arithmetic."""
    if t <= now:
        return 0.0
    d = t - now
    # t - now can round down so that now + d < t; a caller sleeping d would wake just short
    # of t and spin on ever tinier waits. Nudge d up until the sum really reaches t.
    while now + d < t:
        d = math.nextafter(d, math.inf)
    return d


def _check_amount(amount: float) -> None:
    if not amount >= 0.0:  # also rejects NaN
        raise ValueError(f"amount: expected a number >= 0, got {amount!r}")


@final
class TokenBucket:
    """A token bucket: holds up to ``capacity`` tokens, refilled continuously.

    ``capacity`` is ``burst`` if given, else ``rate_per_minute``; the bucket refills at
    ``rate_per_minute / 60`` tokens per second and starts full.

    Guarantees:

    * Over any time window of length ``w``, the total amount admitted by ``try_take`` is at
      most ``capacity + rate_per_minute / 60 * w`` (tokens handed back with a positive
      ``adjust`` are not counted as admitted). Charging extra with a negative ``adjust``
      only lowers what is admitted.
    * Nothing is admitted before a time passed to ``pause_until``.
    * ``wait_time(a) == 0.0`` exactly when ``try_take(a)`` would succeed now; otherwise a
      caller that sleeps ``wait_time(a)`` on the same clock finds ``try_take(a)`` succeeds,
      unless someone else took tokens, charged debt or paused in between.
    """

    __slots__ = ("_capacity", "_clock", "_level", "_paused_until", "_rate", "_rpm", "_stamp")

    def __init__(self, rate_per_minute: float, *, clock: Clock, burst: float | None = None) -> None:
        if not 0.0 < rate_per_minute < math.inf:
            raise ValueError(
                f"rate_per_minute: expected a finite number > 0, got {rate_per_minute!r}"
            )
        if burst is not None and not 0.0 < burst < math.inf:
            raise ValueError(f"burst: expected a finite number > 0, got {burst!r}")
        self._rpm = float(rate_per_minute)
        self._rate = self._rpm / 60.0
        self._capacity = float(burst) if burst is not None else self._rpm
        self._clock = clock
        self._level = self._capacity
        self._stamp = clock()
        self._paused_until = -math.inf

    @property
    def capacity(self) -> float:
        """Maximum tokens the bucket holds (the largest single take that can ever succeed)."""
        return self._capacity

    @property
    def rate_per_minute(self) -> float:
        return self._rpm

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            level = self._level + (now - self._stamp) * self._rate
            self._level = level if level < self._capacity else self._capacity
            self._stamp = now

    def _ready_at(self, amount: float) -> float:
        """Earliest time ``amount`` tokens are there, ignoring pauses. Call after ``_refill``."""
        level = self._level
        if level >= amount:
            return -math.inf
        if amount > self._capacity:
            return math.inf
        stamp = self._stamp
        t = stamp + (amount - level) / self._rate
        # Mirror _refill's arithmetic exactly: since each float operation is monotone, a
        # refill at any time >= t then yields at least `amount`, so sleeping until t suffices.
        while level + (t - stamp) * self._rate < amount:
            t = math.nextafter(t, math.inf)
        return t

    def _admits(self, amount: float, now: float) -> bool:
        """Refill to ``now`` and say whether ``amount`` could be taken at ``now``."""
        self._refill(now)
        return now >= self._paused_until and self._level >= amount

    def wait_time(self, amount: float = 1.0) -> float:
        """Seconds until ``amount`` could be taken: 0.0 if now, ``math.inf`` if never
        (``amount > capacity``). Accounts for pauses and debt."""
        _check_amount(amount)
        now = self._clock()
        self._refill(now)
        t = self._ready_at(amount)
        if self._paused_until > t:
            t = self._paused_until
        return _delay_until(now, t)

    def try_take(self, amount: float = 1.0) -> bool:
        """Take ``amount`` tokens if they are available now and the bucket is not paused."""
        _check_amount(amount)
        now = self._clock()
        if not self._admits(amount, now):
            return False
        self._level -= amount
        return True

    def adjust(self, delta: float) -> None:
        """Hand back (``delta > 0``) or charge (``delta < 0``) tokens.

        The level never exceeds ``capacity`` but may go negative: debt that must refill
        before anything else is admitted.
        """
        if delta != delta:
            raise ValueError("delta: expected a number, got nan")
        self._refill(self._clock())
        level = self._level + delta
        self._level = level if level < self._capacity else self._capacity

    def pause_until(self, t: float) -> None:
        """Admit nothing before time ``t``. Never shortens an existing pause (NaN is ignored)."""
        if t > self._paused_until:
            self._paused_until = t

    def pause_remaining(self) -> float:
        """Seconds left in the current pause (0.0 if not paused)."""
        left = self._paused_until - self._clock()
        return left if left > 0.0 else 0.0

    def level(self) -> float:
        """Tokens available now (negative while in debt)."""
        self._refill(self._clock())
        return self._level


@final
class LimiterSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Point-in-time view of a ``RateLimiter``; ``None`` means that dimension is unlimited."""

    rpm: float | None
    tpm: float | None
    requests_available: float | None
    tokens_available: float | None
    paused_for_s: float


@final
class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits for one provider (either may be None).

    Each admitted call takes one request and its estimated token count. Guarantees: each
    bucket keeps the ``TokenBucket`` bound; ``try_acquire`` takes from both buckets or from
    neither; nothing is admitted before a time given to ``pause_until``/``pause_for`` or
    before the reset of a budget the provider reported as exhausted.
    """

    __slots__ = ("_clock", "_paused_until", "_requests", "_tokens")

    def __init__(self, *, rpm: float | None, tpm: float | None, clock: Clock) -> None:
        # The request bucket holds at least one request so that a fractional rpm (e.g. 0.5,
        # one call every two minutes) still admits single calls instead of never admitting.
        self._requests = (
            None if rpm is None else TokenBucket(rpm, clock=clock, burst=max(1.0, float(rpm)))
        )
        self._tokens = None if tpm is None else TokenBucket(tpm, clock=clock)
        self._clock = clock
        # The pause lives here rather than in the buckets so it also holds when both are None.
        self._paused_until = -math.inf

    def wait_time(self, tokens: int) -> float:
        """Seconds until a call of ``tokens`` tokens could be admitted (max over both limits);
        ``math.inf`` if ``tokens`` exceeds the tokens-per-minute capacity."""
        _check_amount(tokens)
        req = self._requests
        tok = self._tokens
        if req is None and tok is None and self._paused_until == -math.inf:
            return 0.0  # unlimited and never paused: no clock read
        now = self._clock()
        t = self._paused_until
        if req is not None:
            req._refill(now)
            t = max(t, req._ready_at(1.0), req._paused_until)
        if tok is not None:
            tok._refill(now)
            t = max(t, tok._ready_at(tokens), tok._paused_until)
        return _delay_until(now, t)

    def try_acquire(self, tokens: int) -> bool:
        """Atomically take one request and ``tokens`` tokens, only if both are available now."""
        _check_amount(tokens)
        req = self._requests
        tok = self._tokens
        if req is None and tok is None and self._paused_until == -math.inf:
            return True
        now = self._clock()
        if now < self._paused_until:
            return False
        if req is not None and not req._admits(1.0, now):
            return False
        if tok is not None and not tok._admits(tokens, now):
            return False
        if req is not None:
            req._level -= 1.0
        if tok is not None:
            tok._level -= tokens
        return True

    def reconcile(self, estimated: int, actual: int) -> None:
        """Correct a call's token charge once its real usage is known: an underestimate
        becomes debt, an overestimate is refunded (up to capacity)."""
        if self._tokens is not None:
            self._tokens.adjust(estimated - actual)

    def pause_until(self, t: float) -> None:
        """Admit nothing before time ``t`` (e.g. after a 429). Never shortens a pause."""
        if t > self._paused_until:
            self._paused_until = t

    def pause_for(self, seconds: float) -> None:
        """Admit nothing for ``seconds`` from now (e.g. a 429's Retry-After)."""
        self.pause_until(self._clock() + seconds)

    def update_from_headers(
        self,
        *,
        remaining_requests: int | None,
        remaining_tokens: int | None,
        reset_requests_s: float | None,
        reset_tokens_s: float | None,
    ) -> None:
        """Fold in the provider's reported remaining budget.

        Each local level is lowered to at most the reported remaining and never raised
        (the provider may not yet count calls we have in flight). When the provider reports
        a budget exhausted (no request, or no token, left) and gives its reset delay,
        admission pauses until then; this is conservative, as providers report the time
        until the budget is fully replenished.
        """
        now = self._clock()
        req = self._requests
        if remaining_requests is not None:
            if req is not None:
                req._refill(now)
                if remaining_requests < req._level:
                    req._level = float(remaining_requests)
            if remaining_requests < 1 and reset_requests_s is not None:
                self.pause_until(now + reset_requests_s)
        tok = self._tokens
        if remaining_tokens is not None:
            if tok is not None:
                tok._refill(now)
                if remaining_tokens < tok._level:
                    tok._level = float(remaining_tokens)
            if remaining_tokens <= 0 and reset_tokens_s is not None:
                self.pause_until(now + reset_tokens_s)

    def snapshot(self) -> LimiterSnapshot:
        now = self._clock()
        req = self._requests
        tok = self._tokens
        if req is not None:
            req._refill(now)
        if tok is not None:
            tok._refill(now)
        paused = self._paused_until - now
        return LimiterSnapshot(
            rpm=None if req is None else req.rate_per_minute,
            tpm=None if tok is None else tok.rate_per_minute,
            requests_available=None if req is None else req._level,
            tokens_available=None if tok is None else tok._level,
            paused_for_s=paused if paused > 0.0 else 0.0,
        )
