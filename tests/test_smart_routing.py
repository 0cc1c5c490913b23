"""Cost tracking and smart routing, simulated on in-process providers under the mock clock."""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

import pytest
import structlog.testing
import trio

from actors import BackoffConfig, BudgetConfig, BudgetExceeded, ModelPrice, RetryConfig
from protocols import AllProvidersFailed, ErrorEvent, Finish, StreamInterrupted
from runtime import ProviderSpec, RouterConfig, RuntimeConfig, open_runtime
from runtime.testing import MockProvider

HI = [{"role": "user", "content": "hello there, how are you today?"}]
CODE = [{"role": "user", "content": "Fix this bug: def add(a, b): return a - b  # in Python"}]

# Per-million-token prices (input, output) of three made-up models.
PRICES = {
    "cheap-1": ModelPrice.of(input=0.10, output=0.40),
    "mid-1": ModelPrice.of(input=1.00, output=4.00),
    "dear-1": ModelPrice.of(input=10.00, output=40.00),
}


def trio_providers(**overrides: dict) -> list[MockProvider]:
    made = []
    for name, model in (("cheap", "cheap-1"), ("mid", "mid-1"), ("dear", "dear-1")):
        made.append(MockProvider(name=name, model=model, **overrides.get(name, {})))
    return made


def config(**fields) -> RuntimeConfig:
    return RuntimeConfig(seed=1, prices=PRICES, **fields)


def expected_cost(response) -> Decimal:
    price = PRICES[response.model]
    usage = response.usage
    return (usage.input_tokens * price.input + usage.output_tokens * price.output) / 1_000_000


async def test_every_response_carries_its_cost(autojump_clock):
    async with open_runtime(trio_providers(), config=config()) as rt:
        response = await rt.complete(HI)
        assert response.cost_usd == expected_cost(response)
        async with rt.stream(HI) as events:
            finish = [e async for e in events][-1]
    assert isinstance(finish, Finish) and finish.response is not None
    assert finish.cost_usd == finish.response.cost_usd == expected_cost(finish.response)


async def test_cost_policy_picks_the_cheapest_healthy_provider(autojump_clock):
    cheap, mid, dear = trio_providers()
    specs = [ProviderSpec(provider=p, priority=-i) for i, p in enumerate([cheap, mid, dear])]
    async with open_runtime(specs, config=config(), policy="cost") as rt:
        assert {(await rt.complete(HI)).provider for _ in range(10)} == {"cheap"}
        cheap.always_fail = True  # cheap is down: failover walks the cost order
        no_retry = await rt.complete(HI)
        assert no_retry.provider == "mid"
        rt.kill("cheap")
        assert (await rt.complete(HI)).provider == "mid"


async def test_policy_can_be_chosen_per_request(autojump_clock):
    specs = [ProviderSpec(provider=p, priority=-i) for i, p in enumerate(trio_providers())]
    async with open_runtime(specs, config=config()) as rt:
        assert (await rt.complete(HI)).provider == "dear"  # priority: dear is -2
        assert (await rt.complete(HI, policy="cost")).provider == "cheap"


async def test_speed_policy_converges_and_reconverges(autojump_clock):
    fast = MockProvider(name="fast", latency=0.05)
    medium = MockProvider(name="medium", latency=0.1)
    slow = MockProvider(name="slow", latency=0.3)
    cfg = RuntimeConfig(seed=3, router=RouterConfig(policy="speed", latency_explore=0.05))
    async with open_runtime([slow, medium, fast], config=cfg) as rt:
        first = [(await rt.complete(HI)).provider for _ in range(100)]
        # Each is measured once, then the fastest takes all but the exploration share.
        assert set(first[:3]) == {"fast", "medium", "slow"}
        assert Counter(first[3:])["fast"] >= 85
        fast.latency = 0.5  # the fastest slows down
        after = [(await rt.complete(HI)).provider for _ in range(100)]
        switch = next(i for i, name in enumerate(after) if name != "fast")
        assert switch <= 5
        assert Counter(after[5:])["medium"] >= 80
        fast.latency = 0.01  # it recovers: exploration notices within a few dozen requests
        recovered = [(await rt.complete(HI)).provider for _ in range(200)]
    back = next(i for i, name in enumerate(recovered) if name == "fast")
    assert back <= 45  # the first exploration of it (every 20th request) re-measures it
    assert Counter(recovered[back + 5 :])["fast"] >= 0.85 * len(recovered[back + 5 :])


async def test_constraints_skip_providers_that_break_them(autojump_clock):
    cheap, mid, dear = trio_providers()
    specs = [ProviderSpec(provider=p, priority=-i) for i, p in enumerate([cheap, mid, dear])]
    quality = {"cheap-1": 1200.0, "mid-1": 1300.0, "dear-1": 1400.0}
    async with open_runtime(specs, config=config(quality=quality)) as rt:
        assert (await rt.complete(HI, max_cost_usd=0.01)).provider == "mid"
        assert (await rt.complete(HI, max_cost_usd=0.001)).provider == "cheap"
        assert (await rt.complete(HI, min_quality=1350)).provider == "dear"
        assert (await rt.complete(HI, policy="quality")).provider == "dear"
        with pytest.raises(AllProvidersFailed) as info:
            await rt.complete(HI, max_cost_usd=0.0000001)
        assert "constraints" in info.value.message


async def test_task_type_routes_prefer_the_configured_provider(autojump_clock):
    cheap, mid, dear = trio_providers()
    cfg = config(task_routes={"code": ("dear",)})
    async with open_runtime([cheap, mid, dear], config=cfg, policy="cost") as rt:
        assert (await rt.complete(CODE)).provider == "dear"
        assert (await rt.complete(HI)).provider == "cheap"


async def test_budget_stops_spending_at_the_limit(autojump_clock):
    budget = BudgetConfig(limit_usd=Decimal("0.005"), period_s=86_400, scope="runtime")
    async with open_runtime(trio_providers(), config=config(budgets=(budget,))) as rt:
        answered = 0
        with pytest.raises(BudgetExceeded):
            for _ in range(10_000):
                await rt.complete(HI, max_tokens=20, policy="cost")
                answered += 1
        spent = rt.costs().total.cost_usd
    assert answered > 10
    assert spent <= Decimal("0.005")
    # The next request would have reserved at most this much: spending stopped right there.
    assert Decimal("0.005") - spent < Decimal("0.0001")


async def test_tenant_budget_leaves_other_tenants_alone(autojump_clock):
    budget = BudgetConfig(limit_usd=Decimal("0.00002"), period_s=60, scope="tenant", key="acme")
    async with open_runtime(trio_providers(), config=config(budgets=(budget,))) as rt:
        acme = {"tenant": "acme"}
        with pytest.raises(BudgetExceeded):
            for _ in range(1000):
                await rt.complete(HI, max_tokens=20, metadata=acme, policy="cost")
        await rt.complete(HI, max_tokens=20, metadata={"tenant": "other"}, policy="cost")
        await trio.sleep(61)  # a new period
        await rt.complete(HI, max_tokens=20, metadata=acme, policy="cost")


async def test_provider_budget_routes_to_another_provider(autojump_clock):
    budget = BudgetConfig(limit_usd=Decimal("0.00002"), period_s=60, scope="provider", key="cheap")
    async with open_runtime(trio_providers(), config=config(budgets=(budget,))) as rt:
        answered = [
            (await rt.complete(HI, max_tokens=20, policy="cost")).provider for _ in range(20)
        ]
    assert answered[0] == "cheap"
    assert answered[-1] == "mid"
    assert answered.count("cheap") < 20


async def test_ledger_totals_equal_the_sum_of_response_costs(autojump_clock):
    providers = trio_providers(
        cheap={"failure_rate": 0.3, "seed": 1},
        mid={"failure_rate": 0.2, "seed": 2},
        dear={"failure_rate": 0.1, "seed": 3},
    )
    retry = RetryConfig(backoff=BackoffConfig(max_retries=1))
    total = Decimal(0)
    by_provider: Counter[str] = Counter()
    async with open_runtime(providers, config=config(retry=retry), policy="round_robin") as rt:
        for i in range(3000):
            messages = [{"role": "user", "content": f"question number {i} " * (1 + i % 7)}]
            try:
                response = await rt.complete(messages, max_tokens=50)
            except AllProvidersFailed:
                continue
            assert response.cost_usd is not None
            total += response.cost_usd
            by_provider[response.provider] += 1
        costs = rt.costs()
    assert costs.total.cost_usd == total  # exact, to the last decimal, not just the cent
    assert costs.total.requests == sum(by_provider.values())
    assert {p: t.requests for p, t in costs.by_provider.items()} == dict(by_provider)
    assert sum(p.calls - p.completed for p in providers) > 500  # failures were mixed in


async def test_broken_streams_after_output_are_billed(autojump_clock):
    a = MockProvider(name="a", model="mid-1", script=["fail_mid_stream"] * 3)
    async with open_runtime([a], config=config()) as rt:
        for _ in range(3):
            async with rt.stream(HI) as events:
                last = [e async for e in events][-1]
            assert isinstance(last, ErrorEvent) and isinstance(last.error, StreamInterrupted)
        costs = rt.costs()
    assert costs.total.billed_failures == 3
    assert costs.total.cost_usd > 0


async def test_failures_before_output_cost_nothing(autojump_clock):
    a = MockProvider(name="a", model="mid-1", always_fail=True)
    async with open_runtime([a], config=config()) as rt:
        with pytest.raises(AllProvidersFailed):
            await rt.complete(HI)
        assert rt.costs().total.cost_usd == 0
        assert rt.costs().total.requests == 0


async def test_unknown_price_is_reported_once_and_counted_as_unknown(autojump_clock):
    a = MockProvider(name="a", model="homegrown-7b")
    with structlog.testing.capture_logs() as logs:
        async with open_runtime([a], config=config()) as rt:
            for _ in range(5):
                response = await rt.complete(HI)
                assert response.cost_usd is None
            costs = rt.costs()
    assert costs.total.unknown_cost_requests == 5
    assert costs.total.cost_usd == 0
    assert len([e for e in logs if "homegrown-7b" in str(e)]) == 1


async def test_costs_show_in_health(autojump_clock):
    async with open_runtime(trio_providers(), config=config()) as rt:
        response = await rt.complete(HI, metadata={"tenant": "acme"})
        health = rt.health()
    assert health.costs is not None
    assert health.costs.by_tenant["acme"].cost_usd == response.cost_usd


async def test_cost_routing_saves_against_the_priciest_provider(autojump_clock):
    """The simulated savings quoted in the closing note: one workload at real list prices
    (genai-prices' bundled data), routed by cost, and always sent to the priciest provider.
    The cheapest fails 5% of the time; those attempts are retried, and never billed."""
    from runtime.testing import MockProvider as Mock

    async def spend(policy: str) -> tuple[Decimal, Counter[str]]:
        providers = [
            Mock(name="openai", kind="openai", model="gpt-4o-mini", failure_rate=0.05, seed=4),
            Mock(name="gemini", kind="gemini", model="gemini-2.5-flash", seed=5),
            Mock(name="anthropic", kind="anthropic", model="claude-sonnet-4-6", seed=6),
        ]
        # Priority puts the priciest (anthropic) first.
        specs = [ProviderSpec(provider=p, priority=-i) for i, p in enumerate(providers)]
        served: Counter[str] = Counter()
        async with open_runtime(specs, config=RuntimeConfig(seed=1), policy=policy) as rt:
            for i in range(1000):
                prompt = [{"role": "user", "content": "Summarise this text. " * (1 + i % 40)}]
                served[(await rt.complete(prompt, max_tokens=300)).provider] += 1
            return rt.costs().total.cost_usd, served

    by_cost, cost_served = await spend("cost")
    priciest, priciest_served = await spend("priority")
    saving = 1 - by_cost / priciest
    print(
        f"\ncost routing: ${by_cost:.6f} {dict(cost_served)} vs priciest ${priciest:.6f} "
        f"{dict(priciest_served)}: {saving:.1%} saved"
    )
    assert priciest_served == {"anthropic": 1000}
    assert cost_served == {"openai": 1000}  # its 5% failures are retried there
    assert saving > Decimal("0.9")
