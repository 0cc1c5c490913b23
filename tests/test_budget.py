from __future__ import annotations

import math
from collections import defaultdict
from decimal import Decimal

import msgspec
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import actors._budget as budget_module
from actors._budget import (
    BudgetConfig,
    BudgetExceeded,
    BudgetGuard,
    BudgetStatus,
    Reservation,
)
from protocols import SwitchyardError

D = Decimal


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def runtime(limit: str, period_s: float = 60.0) -> BudgetConfig:
    return BudgetConfig(limit_usd=D(limit), period_s=period_s)


# --- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"limit_usd": D(-1), "period_s": 1.0}, "limit_usd"),
        ({"limit_usd": 5.0, "period_s": 1.0}, "limit_usd"),
        ({"limit_usd": D(1), "period_s": 0.0}, "period_s"),
        ({"limit_usd": D(1), "period_s": math.inf}, "period_s"),
        ({"limit_usd": D(1), "period_s": True}, "period_s"),
        ({"limit_usd": D(1), "period_s": 1.0, "scope": "galaxy"}, "scope"),
        ({"limit_usd": D(1), "period_s": 1.0, "scope": "runtime", "key": "x"}, "key"),
        ({"limit_usd": D(1), "period_s": 1.0, "scope": "tenant", "key": ""}, "key"),
    ],
)
def test_invalid_config_names_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        BudgetConfig(**kwargs)  # type: ignore[arg-type]


def test_config_from_plain_numbers() -> None:
    cfg = msgspec.convert(
        {"limit_usd": 12.5, "period_s": 3600, "scope": "tenant", "key": "acme"}, BudgetConfig
    )
    assert cfg.limit_usd == D("12.5")


def test_guard_rejects_non_configs() -> None:
    with pytest.raises(ValueError, match=r"configs\[0\]"):
        BudgetGuard([{"limit_usd": 1}], clock=FakeClock())  # type: ignore[list-item]


# --- reserve, settle, release ----------------------------------------------------------------


def test_runtime_budget_counts_spent_and_in_flight() -> None:
    guard = BudgetGuard([runtime("1.00")], clock=FakeClock())
    a = guard.reserve(provider="openai", tenant=None, max_cost=D("0.60"))
    with pytest.raises(BudgetExceeded) as info:
        guard.reserve(provider="anthropic", tenant="acme", max_cost=D("0.50"))
    err = info.value
    assert (err.scope, err.key, err.limit, err.spent, err.reserved, err.requested) == (
        "runtime",
        None,
        D("1.00"),
        D(0),
        D("0.60"),
        D("0.50"),
    )
    a.settle(D("0.30"))
    b = guard.reserve(provider="anthropic", tenant="acme", max_cost=D("0.50"))
    # Exactly at the limit is allowed.
    c = guard.reserve(provider="gemini", tenant=None, max_cost=D("0.20"))
    assert guard.would_exceed("gemini", None, D("0.000001"))
    b.release()
    c.settle(D("0.20"))
    [status] = guard.status()
    assert (status.spent_usd, status.reserved_usd) == (D("0.50"), D(0))


def test_budget_exceeded_is_a_final_typed_error() -> None:
    guard = BudgetGuard(
        [BudgetConfig(limit_usd=D(1), period_s=10.0, scope="provider", key="openai")],
        clock=FakeClock(3.0),
    )
    with pytest.raises(BudgetExceeded) as info:
        guard.reserve(provider="openai", tenant=None, max_cost=D(2))
    err = info.value
    assert isinstance(err, SwitchyardError)
    assert (err.retryable, err.failover, err.kind) == (False, False, "budget_exceeded")
    assert err.provider == "openai"
    assert err.resets_in == pytest.approx(7.0)
    d = err.to_dict()
    assert d["type"] == "budget_exceeded"
    assert (d["limit_usd"], d["spent_usd"], d["requested_usd"]) == ("1", "0", "2")
    assert "provider budget for 'openai'" in err.message


def test_unknown_actual_keeps_the_reserved_maximum() -> None:
    guard = BudgetGuard([runtime("1")], clock=FakeClock())
    guard.reserve(provider="p", tenant=None, max_cost=D("0.4")).settle(None)
    [status] = guard.status()
    assert status.spent_usd == D("0.4")


def test_actual_above_maximum_is_charged_in_full() -> None:
    guard = BudgetGuard([runtime("1")], clock=FakeClock())
    guard.reserve(provider="p", tenant=None, max_cost=D("0.5")).settle(D("1.2"))
    assert guard.status()[0].spent_usd == D("1.2")
    assert guard.would_exceed("p", None, D(0))


def test_a_reservation_finishes_exactly_once() -> None:
    guard = BudgetGuard([runtime("1")], clock=FakeClock())
    r = guard.reserve(provider="p", tenant=None, max_cost=D("0.5"))
    assert isinstance(r, Reservation) and r.max_cost == D("0.5")
    before = r.done
    r.settle(D("0.1"))
    assert (before, r.done) == (False, True)
    with pytest.raises(RuntimeError):
        r.release()
    with pytest.raises(RuntimeError):
        r.settle(D("0.1"))
    assert guard.status()[0].spent_usd == D("0.1")


@pytest.mark.parametrize("bad", [D(-1), D("NaN"), 0.5])
def test_invalid_amounts_are_rejected(bad: object) -> None:
    guard = BudgetGuard([runtime("1")], clock=FakeClock())
    with pytest.raises(ValueError, match="max_cost"):
        guard.reserve(provider="p", tenant=None, max_cost=bad)  # type: ignore[arg-type]
    r = guard.reserve(provider="p", tenant=None, max_cost=D(1))
    with pytest.raises(ValueError, match="actual"):
        r.settle(bad)  # type: ignore[arg-type]
    assert not r.done


def test_would_exceed_reserves_nothing() -> None:
    guard = BudgetGuard(
        [BudgetConfig(limit_usd=D(1), period_s=60.0, scope="tenant")], clock=FakeClock()
    )
    for _ in range(5):
        assert not guard.would_exceed("p", "acme", D(1))
    assert guard.status() == []
    guard.reserve(provider="p", tenant="acme", max_cost=D(1))
    assert guard.would_exceed("p", "acme", D("0.01"))


def test_no_budgets_means_no_limits() -> None:
    guard = BudgetGuard([], clock=FakeClock())
    r = guard.reserve(provider="p", tenant="t", max_cost=D(10**9))
    r.settle(D(10**9))
    assert not guard.would_exceed("p", "t", D(10**9))


# --- scopes ----------------------------------------------------------------------------------


def test_named_tenant_budget_limits_only_that_tenant() -> None:
    guard = BudgetGuard(
        [BudgetConfig(limit_usd=D(1), period_s=60.0, scope="tenant", key="acme")],
        clock=FakeClock(),
    )
    guard.reserve(provider="p", tenant="acme", max_cost=D(1)).settle(D(1))
    assert guard.would_exceed("p", "acme", D("0.01"))
    assert not guard.would_exceed("p", "globex", D(5))
    assert not guard.would_exceed("p", None, D(5))
    with pytest.raises(BudgetExceeded) as info:
        guard.reserve(provider="other", tenant="acme", max_cost=D("0.01"))
    assert (info.value.scope, info.value.key, info.value.provider) == ("tenant", "acme", None)


def test_each_tenant_budget_gives_every_tenant_its_own_limit() -> None:
    guard = BudgetGuard(
        [BudgetConfig(limit_usd=D(1), period_s=60.0, scope="tenant")], clock=FakeClock()
    )
    guard.reserve(provider="p", tenant="acme", max_cost=D(1)).settle(D(1))
    guard.reserve(provider="p", tenant="globex", max_cost=D("0.25")).settle(D("0.25"))
    assert guard.would_exceed("p", "acme", D("0.01"))
    assert not guard.would_exceed("p", "globex", D("0.75"))
    assert guard.would_exceed("p", "globex", D("0.76"))
    # Untenanted traffic is not any tenant's spend.
    assert not guard.would_exceed("p", None, D(100))
    keys = {s.key: s.spent_usd for s in guard.status()}
    assert keys == {"acme": D(1), "globex": D("0.25")}


def test_provider_budgets_named_and_each() -> None:
    guard = BudgetGuard(
        [
            BudgetConfig(limit_usd=D(5), period_s=60.0, scope="provider"),
            BudgetConfig(limit_usd=D(1), period_s=60.0, scope="provider", key="openai"),
        ],
        clock=FakeClock(),
    )
    guard.reserve(provider="openai", tenant="t", max_cost=D(1)).settle(D(1))
    with pytest.raises(BudgetExceeded) as info:
        guard.reserve(provider="openai", tenant="t", max_cost=D("0.5"))
    assert (info.value.scope, info.value.key, info.value.limit) == ("provider", "openai", D(1))
    # A router can see the expensive provider is out and pick another.
    assert guard.would_exceed("openai", "t", D("0.5"))
    assert not guard.would_exceed("anthropic", "t", D("0.5"))
    guard.reserve(provider="anthropic", tenant="t", max_cost=D(5)).settle(D(5))
    with pytest.raises(BudgetExceeded) as info:
        guard.reserve(provider="anthropic", tenant="t", max_cost=D("0.01"))
    assert (info.value.key, info.value.limit, info.value.spent) == ("anthropic", D(5), D(5))


def test_refusal_reserves_nothing_anywhere() -> None:
    guard = BudgetGuard(
        [runtime("10"), BudgetConfig(limit_usd=D(1), period_s=60.0, scope="tenant")],
        clock=FakeClock(),
    )
    with pytest.raises(BudgetExceeded) as info:
        guard.reserve(provider="p", tenant="acme", max_cost=D(2))
    assert info.value.scope == "tenant"
    assert all(s.reserved_usd == 0 for s in guard.status())
    assert not guard.would_exceed("p", None, D(10))


def test_first_exceeded_budget_in_configuration_order_is_reported() -> None:
    guard = BudgetGuard(
        [
            BudgetConfig(limit_usd=D(1), period_s=60.0, scope="tenant"),
            runtime("1"),
        ],
        clock=FakeClock(),
    )
    with pytest.raises(BudgetExceeded) as info:
        guard.reserve(provider="p", tenant="acme", max_cost=D(2))
    assert info.value.scope == "tenant"


# --- periods ---------------------------------------------------------------------------------


def test_periods_are_fixed_windows_aligned_to_multiples_of_period() -> None:
    clock = FakeClock(5.0)
    guard = BudgetGuard([runtime("1", period_s=10.0)], clock=clock)
    guard.reserve(provider="p", tenant=None, max_cost=D(1)).settle(D(1))
    [s] = guard.status()
    assert (s.period_start, s.period_end) == (0.0, 10.0)
    clock.t = 9.999
    assert guard.would_exceed("p", None, D("0.01"))
    clock.t = 10.0
    assert not guard.would_exceed("p", None, D(1))
    [s] = guard.status()
    assert (s.spent_usd, s.period_start, s.period_end) == (D(0), 10.0, 20.0)


def test_in_flight_reservations_carry_into_the_next_period() -> None:
    clock = FakeClock(0.0)
    guard = BudgetGuard([runtime("1", period_s=10.0)], clock=clock)
    guard.reserve(provider="p", tenant=None, max_cost=D("0.5")).settle(D("0.5"))
    slow = guard.reserve(provider="p", tenant=None, max_cost=D("0.5"))
    clock.advance(10.0)
    # The old period's spend is gone, but the call still in flight is held in the new one.
    assert guard.would_exceed("p", None, D("0.51"))
    slow.settle(D("0.4"))
    [s] = guard.status()
    assert (s.spent_usd, s.reserved_usd) == (D("0.4"), D(0))
    assert not guard.would_exceed("p", None, D("0.6"))


def test_idle_buckets_from_old_periods_are_pruned(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(budget_module, "_PRUNE_MIN", 8)
    clock = FakeClock()
    guard = BudgetGuard([BudgetConfig(limit_usd=D(1), period_s=10.0, scope="tenant")], clock=clock)
    held = guard.reserve(provider="p", tenant="held", max_cost=D("0.5"))
    for i in range(7):
        guard.reserve(provider="p", tenant=f"t{i}", max_cost=D("0.1")).settle(D("0.1"))
    clock.advance(10.0)
    guard.reserve(provider="p", tenant="new", max_cost=D("0.1"))
    assert {s.key for s in guard.status()} == {"held", "new"}
    held.settle(D("0.5"))
    assert guard.would_exceed("p", "held", D("0.6"))


async def test_rollover_on_the_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    guard = BudgetGuard([runtime("2", period_s=3600.0)], clock=trio.current_time)
    start_window = math.floor(trio.current_time() / 3600.0)
    r = guard.reserve(provider="p", tenant=None, max_cost=D(2))
    await trio.sleep(1.0)
    r.settle(D("1.5"))
    assert guard.would_exceed("p", None, D(1))
    await trio.sleep((start_window + 1) * 3600.0 - trio.current_time())
    assert not guard.would_exceed("p", None, D(2))
    [s] = guard.status()
    assert isinstance(s, BudgetStatus) and s.spent_usd == 0


# --- the invariant ---------------------------------------------------------------------------

CONFIGS = [
    runtime("5", period_s=7.0),
    BudgetConfig(limit_usd=D(2), period_s=5.0, scope="tenant"),
    BudgetConfig(limit_usd=D(1), period_s=3.0, scope="tenant", key="acme"),
    BudgetConfig(limit_usd=D(3), period_s=11.0, scope="provider"),
    BudgetConfig(limit_usd=D("1.5"), period_s=2.0, scope="provider", key="openai"),
]
PROVIDERS = ["openai", "anthropic"]
TENANTS = ["acme", "globex", None]

money = st.integers(0, 150).map(lambda n: D(n) / 100)
op = st.one_of(
    st.tuples(st.just("reserve"), st.sampled_from(PROVIDERS), st.sampled_from(TENANTS), money),
    # The full maximum is the edge case that matters, so it is drawn often.
    st.tuples(
        st.just("settle"),
        st.integers(0, 50),
        st.one_of(st.just(1.0), st.floats(0, 1)),
        st.booleans(),
    ),
    st.tuples(st.just("release"), st.integers(0, 50)),
    st.tuples(st.just("tick"), st.floats(0, 4, allow_nan=False)),
)


def applicable(provider: str, tenant: str | None) -> list[tuple[int, str | None]]:
    out: list[tuple[int, str | None]] = []
    for i, cfg in enumerate(CONFIGS):
        subject = {"runtime": None, "tenant": tenant, "provider": provider}[cfg.scope]
        if cfg.scope == "runtime":
            out.append((i, None))
        elif subject is not None and cfg.key in (None, subject):
            out.append((i, subject))
    return out


@settings(max_examples=400, deadline=None)
@given(st.lists(op, max_size=120))
def test_settled_spend_never_exceeds_a_limit(ops: list[tuple[object, ...]]) -> None:
    clock = FakeClock(0.0)
    guard = BudgetGuard(CONFIGS, clock=clock)
    live: list[tuple[Reservation, list[tuple[int, str | None]]]] = []
    # Independent model: what was charged to each (budget, key, window).
    settled: dict[tuple[int, str | None, int], Decimal] = defaultdict(Decimal)

    def charge(targets: list[tuple[int, str | None]], amount: Decimal) -> None:
        for i, key in targets:
            window = math.floor(clock.t / CONFIGS[i].period_s)
            settled[i, key, window] += amount

    for step in ops:
        match step:
            case ("reserve", str() as provider, tenant, Decimal() as max_cost):
                assert tenant is None or isinstance(tenant, str)
                refuse = guard.would_exceed(provider, tenant, max_cost)
                try:
                    r = guard.reserve(provider=provider, tenant=tenant, max_cost=max_cost)
                except BudgetExceeded:
                    assert refuse
                else:
                    assert not refuse
                    live.append((r, applicable(provider, tenant)))
            case ("settle", int() as pick, float() as fraction, bool() as unknown) if live:
                r, targets = live.pop(pick % len(live))
                if unknown:
                    r.settle(None)
                    charge(targets, r.max_cost)
                else:
                    actual = (r.max_cost * D(fraction)).quantize(D("0.0001"), "ROUND_DOWN")
                    r.settle(actual)
                    charge(targets, actual)
            case ("release", int() as pick) if live:
                r, _ = live.pop(pick % len(live))
                r.release()
            case ("tick", float() as dt):
                clock.advance(dt)
            case _:
                pass
        for (i, _, _), total in settled.items():
            assert total <= CONFIGS[i].limit_usd
        for s in guard.status():
            assert s.spent_usd + s.reserved_usd <= s.limit_usd
