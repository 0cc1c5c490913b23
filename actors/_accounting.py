"""Cost accounting for one runtime: prices, the ledger, budgets and quality scores together.

Provider workers use it around each attempt: ``admit`` reserves the attempt's maximum cost
against every budget that applies (before any provider call), ``settle`` prices the real
usage, records it in the ledger and turns the reservation into spend. The router uses
``max_cost``, ``quality`` and ``over_budget`` to rank and skip providers.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import final

from protocols import Request, Usage
from protocols._validate import DEFAULT_MAX_OUTPUT_TOKENS

from ._budget import BudgetConfig, BudgetExceeded, BudgetGuard, Reservation
from ._ledger import CostLedger
from ._pricing import PriceBook
from ._quality import DEFAULT_QUALITY

__all__ = ["Accounting"]


@final
class Accounting:
    def __init__(
        self,
        *,
        prices: PriceBook | None = None,
        budgets: tuple[BudgetConfig, ...] = (),
        quality: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` times budget periods; it should read wall-clock seconds, so that a
        daily budget resets at midnight UTC."""
        self.prices = prices or PriceBook()
        self.ledger = CostLedger()
        self.budget = BudgetGuard(budgets, clock=clock) if budgets else None
        self.quality_table = {**DEFAULT_QUALITY, **(quality or {})}

    @staticmethod
    def split_tokens(request: Request) -> tuple[int, int]:
        """(prompt tokens, the most output tokens) of the limiter's estimate."""
        output = request.options.max_tokens or DEFAULT_MAX_OUTPUT_TOKENS
        return max(0, request.estimated_tokens - output), output

    def max_cost(self, kind: str, model: str, request: Request) -> Decimal | None:
        prompt, output = self.split_tokens(request)
        return self.prices.estimate_cost(kind, model, prompt, output)

    def quality(self, model: str) -> float | None:
        return self.quality_table.get(model)

    def over_budget(
        self, provider: str, tenant: str | None, max_cost: Decimal | None
    ) -> BudgetExceeded | None:
        """The budget this call would break now, if any (reserves nothing)."""
        if self.budget is None or max_cost is None:
            return None
        return self.budget.check(provider, tenant, max_cost)

    def admit(
        self, *, provider: str, tenant: str | None, max_cost: Decimal | None
    ) -> Reservation | None:
        """Reserve ``max_cost``; raises ``BudgetExceeded``. None when nothing to reserve.

        A model with no known price cannot be held to a budget; it is let through and its
        spending shows as unknown in the ledger.
        """
        if self.budget is None or max_cost is None:
            return None
        return self.budget.reserve(provider=provider, tenant=tenant, max_cost=max_cost)

    def settle(
        self,
        reservation: Reservation | None,
        *,
        provider: str,
        kind: str,
        model: str,
        tenant: str | None,
        usage: Usage,
        billed_failure: bool = False,
    ) -> Decimal | None:
        cost = self.prices.cost(kind, model, usage)
        if reservation is not None and not reservation.done:
            reservation.settle(cost)
        self.ledger.record(
            provider=provider, model=model, tenant=tenant, cost=cost, billed_failure=billed_failure
        )
        return cost

    @staticmethod
    def release(reservation: Reservation | None) -> None:
        if reservation is not None and not reservation.done:
            reservation.release()

    @staticmethod
    def estimated_usage(request: Request, delivered_chars: int, reported: Usage | None) -> Usage:
        """Usage of an attempt that broke after output: what the provider reported, else
        the prompt estimate and about four characters a delivered token."""
        if reported is not None:
            return reported
        prompt, _ = Accounting.split_tokens(request)
        return Usage(input_tokens=prompt, output_tokens=math.ceil(delivered_chars / 4))
