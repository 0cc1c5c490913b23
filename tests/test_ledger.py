from __future__ import annotations

import random
from collections import defaultdict
from decimal import Decimal

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors._ledger import CostLedger, CostTotals, LedgerSnapshot

D = Decimal
CENT = D("0.01")

PROVIDERS = ["openai", "anthropic", "gemini"]
MODELS = ["gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "my-llama"]
TENANTS = ["acme", "globex", None]

Entry = tuple[str, str, str | None, Decimal | None, bool]

# Costs with up to 10 decimal places, as token counts times per-million prices produce.
costs = st.one_of(
    st.none(),
    st.integers(0, 10**12).map(lambda n: D(n).scaleb(-10)),
)
entries = st.tuples(
    st.sampled_from(PROVIDERS),
    st.sampled_from(MODELS),
    st.sampled_from(TENANTS),
    costs,
    st.booleans(),
)


def check(ledger: CostLedger, recorded: list[Entry]) -> None:
    snap = ledger.snapshot()
    known = [c for _, _, _, c, _ in recorded if c is not None]
    expected = sum(known, D(0))
    assert snap.total.cost_usd == expected
    assert snap.total.cost_usd.quantize(CENT) == expected.quantize(CENT)
    assert ledger.total_cost == expected
    assert snap.total.requests == len(recorded)
    assert snap.total.unknown_cost_requests == len(recorded) - len(known)
    assert snap.total.billed_failures == sum(1 for e in recorded if e[4])
    assert ledger.unknown_cost_requests == snap.total.unknown_cost_requests
    assert ledger.billed_failures == snap.total.billed_failures

    for index, table in ((0, snap.by_provider), (1, snap.by_model), (2, snap.by_tenant)):
        by_key: dict[object, list[Entry]] = defaultdict(list)
        for e in recorded:
            by_key[e[index]].append(e)
        if index == 2:
            untenanted = by_key.pop(None, [])
            assert snap.untenanted.requests == len(untenanted)
            assert snap.untenanted.cost_usd == sum(
                (e[3] for e in untenanted if e[3] is not None), D(0)
            )
        assert set(table) == set(by_key)
        for key, group in by_key.items():
            totals = table[str(key)]
            assert totals.cost_usd == sum((e[3] for e in group if e[3] is not None), D(0))
            assert totals.requests == len(group)
            assert totals.unknown_cost_requests == sum(1 for e in group if e[3] is None)
            assert totals.billed_failures == sum(1 for e in group if e[4])
        # The slices partition the whole.
        parts = sum((t.cost_usd for t in table.values()), D(0))
        if index == 2:
            parts += snap.untenanted.cost_usd
        assert parts == snap.total.cost_usd


def record_all(recorded: list[Entry]) -> CostLedger:
    ledger = CostLedger()
    for provider, model, tenant, cost, failed in recorded:
        ledger.record(
            provider=provider, model=model, tenant=tenant, cost=cost, billed_failure=failed
        )
    return ledger


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(entries, max_size=300))
def test_totals_are_exact_sums(recorded: list[Entry]) -> None:
    check(record_all(recorded), recorded)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32), st.integers(2_000, 5_000))
def test_totals_are_exact_over_thousands_of_entries(seed: int, n: int) -> None:
    # Hypothesis picks the seed and size; thousands of entries drawn one by one would be
    # too large an example for it to handle well.
    rng = random.Random(seed)
    recorded: list[Entry] = []
    for _ in range(n):
        cost = None if rng.random() < 0.1 else D(rng.randrange(10**12)).scaleb(-10)
        recorded.append(
            (
                rng.choice(PROVIDERS),
                rng.choice(MODELS),
                rng.choice(TENANTS),
                cost,
                rng.random() < 0.05,
            )
        )
    check(record_all(recorded), recorded)


def test_float_sums_would_drift_but_the_ledger_does_not() -> None:
    ledger = CostLedger()
    for _ in range(10_000):
        ledger.record(provider="openai", model="m", tenant=None, cost=D("0.0001"))
    assert ledger.total_cost == D(1)
    assert sum([0.0001] * 10_000) != 1.0


def test_unknown_costs_are_counted_not_added_as_zero() -> None:
    ledger = CostLedger()
    ledger.record(provider="openai", model="a", tenant="t", cost=D("1.25"))
    ledger.record(provider="openai", model="b", tenant="t", cost=None)
    snap = ledger.snapshot()
    assert snap.total == CostTotals(
        cost_usd=D("1.25"), requests=2, unknown_cost_requests=1, billed_failures=0
    )
    assert snap.by_model["b"] == CostTotals(
        cost_usd=D(0), requests=1, unknown_cost_requests=1, billed_failures=0
    )
    # A reader can tell "free" from "unknown": only known-cost requests carry a cost.
    known = snap.total.requests - snap.total.unknown_cost_requests
    assert snap.total.cost_usd / known == D("1.25")


def test_billed_failures_are_in_totals_and_counted() -> None:
    ledger = CostLedger()
    ledger.record(provider="anthropic", model="m", tenant=None, cost=D("0.5"))
    ledger.record(provider="anthropic", model="m", tenant=None, cost=D("0.2"), billed_failure=True)
    ledger.record(provider="anthropic", model="m", tenant=None, cost=None, billed_failure=True)
    snap = ledger.snapshot()
    assert snap.total.cost_usd == D("0.7")
    assert snap.total.billed_failures == 2
    assert snap.total.unknown_cost_requests == 1
    assert snap.untenanted.requests == 3
    assert snap.by_tenant == {}


@pytest.mark.parametrize("bad", [D(-1), D("NaN"), D("Infinity"), 0.5])
def test_invalid_costs_are_rejected(bad: object) -> None:
    with pytest.raises(ValueError, match="cost"):
        CostLedger().record(provider="p", model="m", tenant=None, cost=bad)  # type: ignore[arg-type]


def test_snapshot_is_json_with_money_as_exact_strings() -> None:
    ledger = CostLedger()
    ledger.record(provider="openai", model="gpt-4o-mini", tenant="acme", cost=D("0.0000015"))
    ledger.record(provider="openai", model="gpt-4o-mini", tenant="acme", cost=D("0.1"))
    snap = ledger.snapshot()
    raw = msgspec.json.encode(snap)
    doc = msgspec.json.decode(raw)
    assert doc["total"]["cost_usd"] == "0.1000015"
    assert doc["by_tenant"]["acme"]["requests"] == 2
    assert msgspec.json.decode(raw, type=LedgerSnapshot) == snap


def test_snapshot_is_a_copy() -> None:
    ledger = CostLedger()
    ledger.record(provider="p", model="m", tenant=None, cost=D(1))
    before = ledger.snapshot()
    ledger.record(provider="p", model="m", tenant=None, cost=D(1))
    assert before.total.cost_usd == D(1)
    assert before.by_provider["p"].requests == 1
