"""Spending limits per runtime, per tenant and per provider, over fixed periods.

A call first *reserves* the most it may cost; the reservation is then *settled* with the
actual cost or *released* if the call cost nothing. Admission counts settled spend plus
everything still reserved, so concurrent calls cannot jointly overshoot a limit.

Pure bookkeeping: no I/O, no tasks. Time comes from an injected ``clock`` (seconds; the
runtime passes ``trio.current_time``). Money is exact ``Decimal`` USD.
"""

from __future__ import annotations

import decimal
import math
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Literal, final

import msgspec

from protocols import SwitchyardError

__all__ = [
    "BudgetConfig",
    "BudgetExceeded",
    "BudgetGuard",
    "BudgetScope",
    "BudgetStatus",
    "Reservation",
]

BudgetScope = Literal["runtime", "tenant", "provider"]

_SCOPES = ("runtime", "tenant", "provider")
_EXACT = decimal.Context(prec=60, traps=[decimal.InvalidOperation])
_ZERO = Decimal(0)
# Per-tenant/per-provider tables are swept of idle buckets once they reach this size.
_PRUNE_MIN = 1024


def _is_money(x: object) -> bool:
    return isinstance(x, Decimal) and x.is_finite() and x >= 0


def _require_money(x: object, field: str) -> None:
    if not _is_money(x):
        raise ValueError(f"{field}: expected a finite Decimal >= 0, got {x!r}")


@final
class BudgetConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A spending limit of ``limit_usd`` per ``period_s`` seconds.

    ``scope`` says what it limits: the whole runtime, a tenant (``Metadata.tenant``) or a
    provider (by its configured name). ``key`` names the one tenant or provider it applies
    to; ``None`` gives *each* tenant or provider its own limit of ``limit_usd``. A runtime
    budget has no key. Requests without a tenant are not limited by tenant budgets.
    Invalid values raise ``ValueError`` naming the field.
    """

    limit_usd: Decimal
    period_s: float
    scope: BudgetScope = "runtime"
    key: str | None = None

    def __post_init__(self) -> None:
        _require_money(self.limit_usd, "limit_usd")
        p = self.period_s
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 < p < math.inf:
            raise ValueError(f"period_s: expected a finite number > 0, got {p!r}")
        if self.scope not in _SCOPES:
            raise ValueError(f"scope: expected one of {', '.join(_SCOPES)}, got {self.scope!r}")
        k = self.key
        if k is not None and (not isinstance(k, str) or not k):
            raise ValueError(f"key: expected a non-empty string or None, got {k!r}")
        if self.scope == "runtime" and k is not None:
            raise ValueError(f"key: a runtime budget takes no key, got {k!r}")


@final
class BudgetExceeded(SwitchyardError):
    """A budget would be exceeded by this request; it is refused, not retried or failed over.

    ``scope``/``key`` name the budget (``key`` is the tenant or provider it was checked for,
    ``None`` for the runtime); ``limit``, ``spent`` (settled this period), ``reserved`` (in
    flight) and ``requested`` (this request's maximum) are USD. ``resets_in`` is the number
    of seconds until the period rolls over.
    """

    retryable = False
    failover = False
    kind = "budget_exceeded"

    def __init__(
        self,
        *,
        scope: BudgetScope,
        key: str | None,
        limit: Decimal,
        spent: Decimal,
        reserved: Decimal,
        requested: Decimal,
        period_s: float,
        resets_in: float,
        provider: str | None = None,
    ) -> None:
        name = f"{scope} budget" if key is None else f"{scope} budget for {key!r}"
        super().__init__(
            f"{name} of ${limit} per {period_s:g}s would be exceeded: spent ${spent}, "
            f"in flight ${reserved}, this request up to ${requested}",
            provider=provider,
            status=429,
        )
        self.scope = scope
        self.key = key
        self.limit = limit
        self.spent = spent
        self.reserved = reserved
        self.requested = requested
        self.period_s = period_s
        self.resets_in = resets_in

    def to_dict(self) -> dict[str, object]:
        return {
            **super().to_dict(),
            "scope": self.scope,
            "key": self.key,
            "limit_usd": str(self.limit),
            "spent_usd": str(self.spent),
            "reserved_usd": str(self.reserved),
            "requested_usd": str(self.requested),
            "period_s": self.period_s,
            "resets_in_s": self.resets_in,
        }


@final
class BudgetStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One budget's current period. Money is ``Decimal`` (strings in msgspec JSON)."""

    scope: BudgetScope
    key: str | None
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal
    period_start: float
    period_end: float


@final
class _Bucket:
    """Spend of one budget (for one key) in its current period, and what is in flight."""

    __slots__ = ("holds", "period_s", "reserved", "spent", "window")

    def __init__(self, period_s: float, now: float) -> None:
        self.period_s = period_s
        self.window = math.floor(now / period_s)
        self.spent = _ZERO
        self.reserved = _ZERO
        self.holds = 0  # live reservations on this bucket

    def roll(self, now: float) -> None:
        window = math.floor(now / self.period_s)
        # In-flight reservations stay: they will be charged to the period they settle in.
        if window > self.window:
            self.window = window
            self.spent = _ZERO


@final
class Reservation:
    """Money held for one call until it is settled or released (exactly once)."""

    __slots__ = ("_buckets", "_clock", "_done", "_max")

    def __init__(
        self, clock: Callable[[], float], buckets: tuple[_Bucket, ...], max_cost: Decimal
    ) -> None:
        self._clock = clock
        self._buckets = buckets
        self._max = max_cost
        self._done = False

    @property
    def max_cost(self) -> Decimal:
        return self._max

    @property
    def done(self) -> bool:
        """True once settled or released."""
        return self._done

    def settle(self, actual: Decimal | None) -> None:
        """Replace the reservation by the call's actual cost.

        ``None`` (cost unknown, e.g. usage missing from a broken stream) charges the reserved
        maximum: it is the only bound we have, so the budget is never under-counted. An
        ``actual`` above the maximum is charged in full. Raises ``RuntimeError`` if already
        settled or released.
        """
        if actual is not None:
            _require_money(actual, "actual")
        self._finish(self._max if actual is None else actual)

    def release(self) -> None:
        """Give the reservation back: the call cost nothing (refused, never sent)."""
        self._finish(_ZERO)

    def _finish(self, charge: Decimal) -> None:
        if self._done:
            raise RuntimeError("reservation already settled or released")
        self._done = True
        now = self._clock()
        for bucket in self._buckets:
            bucket.roll(now)
            bucket.reserved = _EXACT.subtract(bucket.reserved, self._max)
            bucket.holds -= 1
            bucket.spent = _EXACT.add(bucket.spent, charge)


@final
class BudgetGuard:
    """Admits calls only while every budget that applies to them has room.

    Periods are fixed windows ``[n * period_s, (n + 1) * period_s)`` of the injected clock
    (aligned to the clock's zero: pass ``time.time`` for UTC-aligned days). Settled spend
    resets when a window ends; reservations still in flight carry over and are charged to
    the window in which they settle.

    Guarantee: for every budget and key, at all times ``spent + reserved <= limit`` in the
    current window, provided each reservation is settled with ``actual <= max_cost`` (or
    ``None``) or released. Hence the spend settled in any one window never exceeds the
    limit. An ``actual`` above its ``max_cost`` is still charged, and can take the window
    over the limit by that excess; later calls are then refused until it rolls over.
    """

    __slots__ = ("_buckets", "_clock", "_configs", "_prune_at")

    def __init__(self, configs: Iterable[BudgetConfig], *, clock: Callable[[], float]) -> None:
        self._configs = tuple(configs)
        for i, cfg in enumerate(self._configs):
            if not isinstance(cfg, BudgetConfig):
                raise ValueError(f"configs[{i}]: expected a BudgetConfig, got {cfg!r}")
        self._clock = clock
        self._buckets: list[dict[str | None, _Bucket]] = [{} for _ in self._configs]
        self._prune_at = [_PRUNE_MIN] * len(self._configs)

    @property
    def configs(self) -> tuple[BudgetConfig, ...]:
        return self._configs

    def would_exceed(self, provider: str, tenant: str | None, max_cost: Decimal) -> bool:
        """Whether ``reserve`` would refuse this call now; reserves nothing."""
        _require_money(max_cost, "max_cost")
        return self._violation(provider, tenant, max_cost, self._clock()) is not None

    def check(self, provider: str, tenant: str | None, max_cost: Decimal) -> BudgetExceeded | None:
        """The error ``reserve`` would raise now, or None; reserves nothing."""
        _require_money(max_cost, "max_cost")
        return self._violation(provider, tenant, max_cost, self._clock())

    def reserve(self, *, provider: str, tenant: str | None, max_cost: Decimal) -> Reservation:
        """Hold ``max_cost`` against every budget that applies, or raise ``BudgetExceeded``
        (naming the first budget, in configuration order, that has no room)."""
        _require_money(max_cost, "max_cost")
        now = self._clock()
        error = self._violation(provider, tenant, max_cost, now)
        if error is not None:
            raise error
        buckets = []
        for i, key in self._targets(provider, tenant):
            bucket = self._bucket(i, key, now)
            bucket.reserved = _EXACT.add(bucket.reserved, max_cost)
            bucket.holds += 1
            buckets.append(bucket)
        return Reservation(self._clock, tuple(buckets), max_cost)

    def status(self) -> list[BudgetStatus]:
        """Every budget (and key) that has seen traffic, in its current window."""
        now = self._clock()
        out = []
        for cfg, table in zip(self._configs, self._buckets, strict=True):
            window = math.floor(now / cfg.period_s)
            for key, bucket in table.items():
                bucket.roll(now)
                out.append(
                    BudgetStatus(
                        scope=cfg.scope,
                        key=key,
                        limit_usd=cfg.limit_usd,
                        spent_usd=bucket.spent,
                        reserved_usd=bucket.reserved,
                        period_start=window * cfg.period_s,
                        period_end=(window + 1) * cfg.period_s,
                    )
                )
        return out

    def _targets(self, provider: str, tenant: str | None) -> Iterator[tuple[int, str | None]]:
        for i, cfg in enumerate(self._configs):
            if cfg.scope == "runtime":
                yield i, None
                continue
            subject = tenant if cfg.scope == "tenant" else provider
            if subject is not None and (cfg.key is None or cfg.key == subject):
                yield i, subject

    def _violation(
        self, provider: str, tenant: str | None, max_cost: Decimal, now: float
    ) -> BudgetExceeded | None:
        for i, key in self._targets(provider, tenant):
            cfg = self._configs[i]
            window = math.floor(now / cfg.period_s)
            bucket = self._buckets[i].get(key)
            spent = reserved = _ZERO
            if bucket is not None:
                bucket.roll(now)
                spent, reserved = bucket.spent, bucket.reserved
            if _EXACT.add(_EXACT.add(spent, reserved), max_cost) > cfg.limit_usd:
                return BudgetExceeded(
                    scope=cfg.scope,
                    key=key,
                    limit=cfg.limit_usd,
                    spent=spent,
                    reserved=reserved,
                    requested=max_cost,
                    period_s=cfg.period_s,
                    resets_in=(window + 1) * cfg.period_s - now,
                    provider=provider if cfg.scope == "provider" else None,
                )
        return None

    def _bucket(self, i: int, key: str | None, now: float) -> _Bucket:
        table = self._buckets[i]
        bucket = table.get(key)
        if bucket is None:
            if len(table) >= self._prune_at[i]:
                self._prune(table, math.floor(now / self._configs[i].period_s))
                self._prune_at[i] = max(_PRUNE_MIN, 2 * len(table))
            bucket = table[key] = _Bucket(self._configs[i].period_s, now)
        else:
            bucket.roll(now)
        return bucket

    @staticmethod
    def _prune(table: dict[str | None, _Bucket], window: int) -> None:
        # A bucket from an earlier window with nothing in flight holds no information: its
        # spend would be reset on next use anyway.
        idle = [k for k, b in table.items() if b.window < window and b.holds == 0]
        for k in idle:
            del table[k]
