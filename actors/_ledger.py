"""Cost accounting: what was spent, by provider, by model and by tenant.

Pure bookkeeping: no I/O, no tasks. Money is kept as exact ``Decimal`` USD, so every total is
exactly the sum of the costs recorded into it. A cost that is not known (an unpriced model)
is counted, never added as 0.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from decimal import Decimal
from typing import final

import msgspec

__all__ = ["CostLedger", "CostTotals", "LedgerSnapshot"]

# Sums never round: 60 digits hold any realistic spend to far below a billionth of a cent.
_EXACT = decimal.Context(prec=60, traps=[decimal.InvalidOperation])


@final
class CostTotals(msgspec.Struct, frozen=True, kw_only=True):
    """Totals for one slice of traffic.

    ``cost_usd`` is the exact sum of the known costs; JSON encoders from msgspec write it as a
    string (``"0.0012345"``) so no precision is lost. ``requests`` counts every recorded
    attempt; ``unknown_cost_requests`` those whose cost is unknown (not included in
    ``cost_usd``); ``billed_failures`` the failed attempts that were billed (included).
    """

    cost_usd: Decimal
    requests: int
    unknown_cost_requests: int
    billed_failures: int


@final
class LedgerSnapshot(msgspec.Struct, frozen=True, kw_only=True):
    """Point-in-time totals. ``untenanted`` covers requests without a tenant, which are in
    ``total`` but not in ``by_tenant``. Encode with ``msgspec.json`` (money as strings)."""

    total: CostTotals
    by_provider: dict[str, CostTotals]
    by_model: dict[str, CostTotals]
    by_tenant: dict[str, CostTotals]
    untenanted: CostTotals


@final
class _Acc:
    __slots__ = ("billed_failures", "cost", "requests", "unknown")

    def __init__(self) -> None:
        self.cost = Decimal(0)
        self.requests = 0
        self.unknown = 0
        self.billed_failures = 0

    def add(self, cost: Decimal | None, billed_failure: bool) -> None:
        self.requests += 1
        if cost is None:
            self.unknown += 1
        else:
            self.cost = _EXACT.add(self.cost, cost)
        if billed_failure:
            self.billed_failures += 1

    def merge(self, other: _Acc) -> None:
        self.cost = _EXACT.add(self.cost, other.cost)
        self.requests += other.requests
        self.unknown += other.unknown
        self.billed_failures += other.billed_failures

    def freeze(self) -> CostTotals:
        return CostTotals(
            cost_usd=self.cost,
            requests=self.requests,
            unknown_cost_requests=self.unknown,
            billed_failures=self.billed_failures,
        )


@final
class CostLedger:
    """Running cost totals, overall and by provider, model and tenant.

    Guarantee: every total's ``cost_usd`` is exactly the sum of the known costs recorded into
    it, and each attempt is counted once in ``total``, once under its provider and model,
    and once under its tenant (or ``untenanted``).
    """

    __slots__ = ("_cells",)

    def __init__(self) -> None:
        # One running total per (provider, model, tenant): a request adds to one, and the
        # slices are summed when asked for, which is rarer than requests.
        self._cells: dict[tuple[str, str, str | None], _Acc] = {}

    def record(
        self,
        *,
        provider: str,
        model: str,
        tenant: str | None,
        cost: Decimal | None,
        billed_failure: bool = False,
    ) -> None:
        """Record one billed attempt. ``cost`` is ``None`` when it is unknown.

        ``billed_failure`` marks an attempt that failed but was still billed (a stream broken
        after output arrived); its cost counts like any other. A negative or non-finite
        ``cost`` raises ``ValueError``.
        """
        if cost is not None and not (isinstance(cost, Decimal) and cost.is_finite() and cost >= 0):
            raise ValueError(f"cost: expected a finite Decimal >= 0 or None, got {cost!r}")
        key = (provider, model, tenant)
        cell = self._cells.get(key)
        if cell is None:
            cell = self._cells[key] = _Acc()
        cell.add(cost, billed_failure)

    @property
    def total_cost(self) -> Decimal:
        """Exact sum of every known cost recorded."""
        return self._sum(self._cells.values()).cost

    @property
    def unknown_cost_requests(self) -> int:
        return sum(cell.unknown for cell in self._cells.values())

    @property
    def billed_failures(self) -> int:
        return sum(cell.billed_failures for cell in self._cells.values())

    def snapshot(self) -> LedgerSnapshot:
        by_provider: dict[str, _Acc] = {}
        by_model: dict[str, _Acc] = {}
        by_tenant: dict[str, _Acc] = {}
        untenanted = _Acc()
        total = _Acc()
        for (provider, model, tenant), cell in self._cells.items():
            total.merge(cell)
            _slot(by_provider, provider).merge(cell)
            _slot(by_model, model).merge(cell)
            (untenanted if tenant is None else _slot(by_tenant, tenant)).merge(cell)
        return LedgerSnapshot(
            total=total.freeze(),
            by_provider={k: v.freeze() for k, v in by_provider.items()},
            by_model={k: v.freeze() for k, v in by_model.items()},
            by_tenant={k: v.freeze() for k, v in by_tenant.items()},
            untenanted=untenanted.freeze(),
        )

    @staticmethod
    def _sum(cells: Iterable[_Acc]) -> _Acc:
        total = _Acc()
        for cell in cells:
            total.merge(cell)
        return total


def _slot(table: dict[str, _Acc], key: str) -> _Acc:
    acc = table.get(key)
    if acc is None:
        acc = table[key] = _Acc()
    return acc
