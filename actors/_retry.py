"""What to do after a failed attempt: retry the same provider, fail over, or give up.

A pure decision over the error's flags, the request's history and deadline, the back-off
schedule and the retry budget. The request's owner applies it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import final

import msgspec

from protocols import SwitchyardError

from ._backoff import Backoff, BackoffConfig, RetryBudget, RetryBudgetConfig

__all__ = ["FailOver", "GiveUp", "RetryConfig", "RetryPolicy", "RetrySame"]


class RetryConfig(msgspec.Struct, frozen=True, kw_only=True):
    """``backoff.max_retries`` retries per provider, paced by full-jitter exponential back-off.

    ``budget`` caps retries to a share of requests, so an outage cannot multiply traffic.
    A ``Retry-After`` longer than ``max_retry_after_s`` fails over instead of waiting.
    ``max_rounds`` is how many passes over the providers one request may make: when every
    provider has failed it, a later pass (after a back-off, paid from the budget) tries
    them again, since a crashed actor or a blip may be over by then.
    """

    backoff: BackoffConfig = BackoffConfig()
    budget: RetryBudgetConfig = RetryBudgetConfig()
    max_retry_after_s: float = 5.0
    max_rounds: int = 2

    def __post_init__(self) -> None:
        if not (self.max_retry_after_s >= 0 and math.isfinite(self.max_retry_after_s)):
            raise ValueError(
                f"max_retry_after_s: expected seconds >= 0, got {self.max_retry_after_s}"
            )
        if self.max_rounds < 1:
            raise ValueError(f"max_rounds: expected an integer >= 1, got {self.max_rounds}")


class RetrySame(msgspec.Struct, frozen=True):
    delay: float


class FailOver(msgspec.Struct, frozen=True):
    pass


class GiveUp(msgspec.Struct, frozen=True):
    pass


Decision = RetrySame | FailOver | GiveUp
_FAIL_OVER = FailOver()
_GIVE_UP = GiveUp()


@final
class RetryPolicy:
    """Shared by every request of a runtime (the budget is global to it)."""

    def __init__(
        self, config: RetryConfig, *, rng: random.Random, clock: Callable[[], float]
    ) -> None:
        self.config = config
        self.backoff = Backoff(config.backoff, rng=rng)
        self.budget = RetryBudget(config.budget, clock=clock)

    def decide(
        self, error: SwitchyardError, *, tries_here: int, now: float, deadline: float
    ) -> Decision:
        """After the ``tries_here``-th failed attempt at one provider ended in ``error``."""
        if error.retryable and tries_here <= self.config.backoff.max_retries:
            retry_after = getattr(error, "retry_after", None)
            if retry_after is None or retry_after <= self.config.max_retry_after_s:
                delay = self.backoff.delay(tries_here - 1, retry_after)
                if now + delay < deadline and self.budget.try_spend():
                    return RetrySame(delay)
        if error.failover or error.retryable:
            return _FAIL_OVER  # out of retries here; another provider may still answer
        return _GIVE_UP

    def next_round(self, *, round_number: int, now: float, deadline: float) -> float | None:
        """Every provider failed in round ``round_number`` (from 1): the delay before
        another round, or None if there is no other round."""
        if round_number >= self.config.max_rounds:
            return None
        delay = self.backoff.delay(round_number)
        if now + delay >= deadline or not self.budget.try_spend():
            return None
        return delay
