"""Sliding-window RPM/TPM accounting."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class LimitStatus:
    """The outcome of one admission check, enough to write rate-limit headers.

    ``exceeded`` is ``"requests"``, ``"tokens"`` or None (admitted). Reset
    times are seconds until the oldest request in the window leaves it.
    """

    exceeded: str | None
    rpm: int | None
    tpm: int | None
    used_requests: int
    used_tokens: int
    reset_requests: float
    reset_tokens: float
    retry_after: float

    @property
    def remaining_requests(self) -> int:
        return max(0, (self.rpm or 0) - self.used_requests)

    @property
    def remaining_tokens(self) -> int:
        return max(0, (self.tpm or 0) - self.used_tokens)


class RateWindow:
    """Requests and tokens admitted within the last ``window`` seconds.

    A request costs 1 request and (input + output) tokens; rejected requests
    cost nothing. A request is rejected if the window already holds ``rpm``
    requests, or if its tokens would take the window past ``tpm``.
    """

    __slots__ = ("_events", "_tokens", "rpm", "tpm", "window")

    def __init__(self, rpm: int | None, tpm: int | None, window: float = 60.0) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.window = window
        self._events: deque[tuple[float, int]] = deque()
        self._tokens = 0

    @property
    def active(self) -> bool:
        return self.rpm is not None or self.tpm is not None

    def reset(self) -> None:
        self._events.clear()
        self._tokens = 0

    def admit(self, now: float, tokens: int) -> LimitStatus:
        """Check one request at time ``now`` and, if admitted, count it."""
        events = self._events
        horizon = now - self.window
        while events and events[0][0] <= horizon:
            self._tokens -= events.popleft()[1]
        exceeded: str | None = None
        if self.rpm is not None and len(events) >= self.rpm:
            exceeded = "requests"
        elif self.tpm is not None and self._tokens + tokens > self.tpm:
            exceeded = "tokens"
        if exceeded is None:
            events.append((now, tokens))
            self._tokens += tokens
        reset = events[0][0] + self.window - now if events else 0.0
        if exceeded == "tokens" and self.tpm is not None:
            retry = self._tokens_free_at(now, tokens)
        else:
            retry = reset
        return LimitStatus(
            exceeded=exceeded,
            rpm=self.rpm,
            tpm=self.tpm,
            used_requests=len(events),
            used_tokens=self._tokens,
            reset_requests=reset,
            reset_tokens=reset,
            retry_after=max(retry, 0.0),
        )

    def _tokens_free_at(self, now: float, tokens: int) -> float:
        assert self.tpm is not None
        need = self._tokens + tokens - self.tpm
        for at, cost in self._events:
            need -= cost
            if need <= 0:
                return at + self.window - now
        # Larger than the whole budget: it will never fit; say one window.
        return self.window
