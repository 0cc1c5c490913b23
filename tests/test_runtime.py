"""The runtime's request semantics: routing, retries, failover, deadlines, cancellation."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors import BackoffConfig, BreakerConfig, ProviderSpec, RetryBudgetConfig, RetryConfig
from protocols import (
    AllProvidersFailed,
    InvalidRequest,
    Message,
    RateLimited,
    RuntimeClosed,
    ServerError,
    Timeout,
)
from runtime import RouterConfig, RuntimeConfig, open_runtime
from runtime.testing import MockProvider

HI = [{"role": "user", "content": "hi"}]


def config(**overrides: object) -> RuntimeConfig:
    base: dict[str, object] = {"seed": 1}
    base.update(overrides)
    return RuntimeConfig(**base)  # type: ignore[arg-type]


async def test_complete_answers_and_reports_attempt(autojump_clock):
    a = MockProvider(name="a")
    async with open_runtime([a], config=config()) as rt:
        response = await rt.complete([Message(role="user", content="hello")])
    assert response.provider == "a"
    assert response.text == "a answers: hello"
    assert response.attempts == 1
    assert response.request_id.startswith("req-")
    assert response.usage.output_tokens == 3


async def test_invalid_request_is_rejected_before_any_provider_call(autojump_clock):
    a = MockProvider(name="a")
    async with open_runtime([a], config=config()) as rt:
        with pytest.raises(InvalidRequest) as info:
            await rt.complete([{"role": "robot", "content": "x"}])
        assert info.value.field == "messages[0].role"
        with pytest.raises(InvalidRequest) as info:
            await rt.complete(HI, temprature=0.5)
        assert info.value.field == "temprature"
    assert a.calls == 0


async def test_invalid_request_from_provider_is_neither_retried_nor_failed_over(autojump_clock):
    a = MockProvider(name="a", always_fail=True, error=InvalidRequest("bad", field="tools"))
    b = MockProvider(name="b")
    async with open_runtime([a, b], config=config()) as rt:
        with pytest.raises(InvalidRequest):
            await rt.complete(HI)
    assert a.calls == 1
    assert b.calls == 0


async def test_retryable_error_is_retried_with_backoff_then_fails_over(autojump_clock):
    a = MockProvider(name="a", always_fail=True)
    b = MockProvider(name="b")
    retry = RetryConfig(backoff=BackoffConfig(base_s=1.0, cap_s=8.0, max_retries=2))
    async with open_runtime([a, b], config=config(retry=retry)) as rt:
        start = trio.current_time()
        response = await rt.complete(HI)
        elapsed = trio.current_time() - start
    assert response.provider == "b"
    assert a.calls == 3  # one try and two retries
    assert response.attempts == 4
    # Full jitter: each delay is in [0, base * 2**n]; the sum is at most 1 + 2 seconds.
    assert 0 < elapsed <= 3.0


async def test_retry_after_is_honoured_as_a_floor(autojump_clock):
    limited = RateLimited("slow down", retry_after=2.5, provider="a")
    a = MockProvider(name="a", script=["fail", "ok"], error=limited)
    async with open_runtime([a], config=config()) as rt:
        start = trio.current_time()
        response = await rt.complete(HI)
        assert trio.current_time() - start >= 2.5
    assert response.provider == "a"
    assert a.calls == 2


async def test_long_retry_after_fails_over_at_once(autojump_clock):
    limited = RateLimited("come back in a minute", retry_after=60, provider="a")
    a = MockProvider(name="a", always_fail=True, error=limited)
    b = MockProvider(name="b")
    async with open_runtime([a, b], config=config()) as rt:
        start = trio.current_time()
        response = await rt.complete(HI)
        assert trio.current_time() - start < 1.0
    assert response.provider == "b"
    assert a.calls == 1


async def test_all_providers_failing_gives_every_attempt(autojump_clock):
    a = MockProvider(name="a", always_fail=True)
    b = MockProvider(name="b", always_fail=True)
    retry = RetryConfig(backoff=BackoffConfig(max_retries=1), max_rounds=1)
    async with open_runtime([a, b], config=config(retry=retry)) as rt:
        with pytest.raises(AllProvidersFailed) as info:
            await rt.complete(HI)
    attempts = info.value.attempts
    assert [x.provider for x in attempts] == ["a", "a", "b", "b"]
    assert all(isinstance(x.error, ServerError) for x in attempts)
    assert info.value.status == 503


async def test_retry_budget_caps_retries_during_an_outage(autojump_clock):
    a = MockProvider(name="a", always_fail=True)
    budget = RetryBudgetConfig(ratio=0.2, window_s=1000.0, min_retries=0)
    retry = RetryConfig(backoff=BackoffConfig(max_retries=3), budget=budget, max_rounds=1)
    breaker = BreakerConfig(min_requests=10_000)  # keep the breaker out of this test
    async with open_runtime([a], config=config(retry=retry, breaker=breaker)) as rt:
        for _ in range(100):
            with pytest.raises(AllProvidersFailed):
                await rt.complete(HI)
    retries = a.calls - 100
    # Without the budget an outage would triple traffic (3 retries each).
    assert retries <= 20
    assert retries >= 15


async def test_deadline_bounds_a_hanging_provider(autojump_clock):
    a = MockProvider(name="a", script=["hang"])
    async with open_runtime([a], config=config()) as rt:
        start = trio.current_time()
        with pytest.raises(Timeout):
            await rt.complete(HI, timeout=5.0)
        assert trio.current_time() - start == pytest.approx(5.0)
        await trio.testing.wait_all_tasks_blocked()
        assert a.cancelled == 1
        assert rt.health().actor("a").in_flight == 0


async def test_attempt_timeout_fails_over_from_a_hanging_provider(autojump_clock):
    a = MockProvider(name="a", script=["hang"])
    b = MockProvider(name="b")
    specs = [ProviderSpec(provider=a, attempt_timeout_s=2.0), ProviderSpec(provider=b)]
    no_retries = RetryConfig(backoff=BackoffConfig(max_retries=0))
    async with open_runtime(specs, config=config(retry=no_retries)) as rt:
        start = trio.current_time()
        response = await rt.complete(HI, timeout=30)
        assert trio.current_time() - start < 10
    assert response.provider == "b"
    assert a.cancelled == 1


async def test_caller_cancellation_cancels_upstream_and_frees_the_slot(autojump_clock):
    a = MockProvider(name="a", latency=100.0)
    async with open_runtime([ProviderSpec(provider=a, max_concurrency=1)], config=config()) as rt:
        with trio.move_on_after(1.0):
            await rt.complete(HI)
        await trio.testing.wait_all_tasks_blocked()
        assert a.cancelled == 1
        assert rt.health().actor("a").in_flight == 0
        # The single slot is free again: a fast request gets through.
        a.latency = 0.0
        assert (await rt.complete(HI)).provider == "a"


async def test_priority_policy_prefers_lower_priority_number(autojump_clock):
    a = MockProvider(name="a")
    b = MockProvider(name="b")
    specs = [ProviderSpec(provider=a, priority=2), ProviderSpec(provider=b, priority=1)]
    async with open_runtime(specs, config=config()) as rt:
        for _ in range(5):
            assert (await rt.complete(HI)).provider == "b"


async def test_round_robin_spreads_requests_evenly(autojump_clock):
    providers = [MockProvider(name=n) for n in "abc"]
    async with open_runtime(providers, policy="round_robin", config=config()) as rt:
        for _ in range(30):
            await rt.complete(HI)
    assert [p.calls for p in providers] == [10, 10, 10]


async def test_weighted_policy_follows_weights(autojump_clock):
    a = MockProvider(name="a")
    b = MockProvider(name="b")
    specs = [ProviderSpec(provider=a, weight=3), ProviderSpec(provider=b, weight=1)]
    async with open_runtime(specs, policy="weighted", config=config()) as rt:
        for _ in range(400):
            await rt.complete(HI)
    assert 0.65 < a.calls / 400 < 0.85


async def test_least_busy_sends_each_request_to_the_idlest_provider(autojump_clock):
    providers = [MockProvider(name=n, latency=10.0) for n in "abc"]
    async with open_runtime(providers, policy="least_busy", config=config()) as rt:
        async with trio.open_nursery() as nursery:
            for expected in range(1, 4):
                for _ in range(3):
                    nursery.start_soon(rt.complete, HI)
                    await trio.testing.wait_all_tasks_blocked()
                loads = [rt.health().actor(n).in_flight for n in "abc"]
                assert loads == [expected] * 3


async def test_latency_policy_converges_on_the_fastest(autojump_clock):
    providers = [
        MockProvider(name="slow", latency=0.5),
        MockProvider(name="medium", latency=0.2),
        MockProvider(name="quick", latency=0.05),
    ]
    cfg = config(router=RouterConfig(policy="latency", latency_explore=0.0))
    async with open_runtime(providers, config=cfg) as rt:
        answered = [(await rt.complete(HI)).provider for _ in range(20)]
    assert answered[3:] == ["quick"] * 17


async def test_open_breaker_is_skipped_then_probed_after_cooldown(autojump_clock):
    a = MockProvider(name="a", script=["fail"] * 4)
    b = MockProvider(name="b")
    breaker = BreakerConfig(min_requests=4, failure_threshold=0.5, cooldown_s=10.0)
    retry = RetryConfig(backoff=BackoffConfig(max_retries=0))
    async with open_runtime([a, b], config=config(breaker=breaker, retry=retry)) as rt:
        for _ in range(4):
            assert (await rt.complete(HI)).provider == "b"
        assert rt.health().actor("a").breaker.state == "open"
        calls = a.calls
        for _ in range(3):
            assert (await rt.complete(HI)).provider == "b"
        assert a.calls == calls  # skipped while open
        await trio.sleep(10.0)
        # Half-open: the next requests probe "a", which has recovered, and close it.
        assert (await rt.complete(HI)).provider == "a"
        assert (await rt.complete(HI)).provider == "a"
        assert rt.health().actor("a").breaker.state == "closed"


async def test_caller_errors_do_not_open_the_breaker(autojump_clock):
    bad = InvalidRequest("nope", field="messages")
    a = MockProvider(name="a", always_fail=True, error=bad)
    breaker = BreakerConfig(min_requests=3)
    async with open_runtime([a], config=config(breaker=breaker)) as rt:
        for _ in range(10):
            with pytest.raises(InvalidRequest):
                await rt.complete(HI)
        assert rt.health().actor("a").breaker.state == "closed"


async def test_rate_limit_routes_to_the_next_provider(autojump_clock):
    a = MockProvider(name="a")
    b = MockProvider(name="b")
    specs = [ProviderSpec(provider=a, rpm=3), ProviderSpec(provider=b)]
    async with open_runtime(specs, config=config()) as rt:
        answered = [(await rt.complete(HI)).provider for _ in range(5)]
    assert answered == ["a", "a", "a", "b", "b"]


async def test_single_rate_limited_provider_makes_callers_wait(autojump_clock):
    a = MockProvider(name="a")
    async with open_runtime([ProviderSpec(provider=a, rpm=60)], config=config()) as rt:
        start = trio.current_time()
        for _ in range(61):  # 60 from the full bucket, then one a second
            await rt.complete(HI)
        assert 0.9 <= trio.current_time() - start <= 1.5


async def test_limits_hold_across_restarts(autojump_clock):
    a = MockProvider(name="a")
    b = MockProvider(name="b")
    specs = [ProviderSpec(provider=a, rpm=2), ProviderSpec(provider=b)]
    async with open_runtime(specs, config=config()) as rt:
        await rt.complete(HI)
        await rt.complete(HI)
        assert rt.kill("a")
        await trio.sleep(1.0)  # restarted, but its bucket is still empty
        assert rt.health().actor("a").state == "running"
        assert (await rt.complete(HI)).provider == "b"
    assert a.calls == 2


async def test_provider_429_pauses_its_bucket(autojump_clock):
    limited = RateLimited("429", retry_after=30.0, provider="a")
    a = MockProvider(name="a", script=["fail"], error=limited)
    b = MockProvider(name="b")
    specs = [ProviderSpec(provider=a, rpm=1000), ProviderSpec(provider=b)]
    async with open_runtime(specs, config=config()) as rt:
        assert (await rt.complete(HI)).provider == "b"
        assert (await rt.complete(HI)).provider == "b"  # still paused
        await trio.sleep(31)
        assert (await rt.complete(HI)).provider == "a"


async def test_full_mailbox_applies_backpressure_without_losing_requests(autojump_clock):
    a = MockProvider(name="a", latency=1.0)
    spec = ProviderSpec(provider=a, max_concurrency=2, mailbox_capacity=2)
    done: list[str] = []

    async def one() -> None:
        done.append((await rt.complete(HI)).provider)

    async with open_runtime([spec], config=config()) as rt, trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        health = rt.health().actor("a")
        assert health.in_flight == 2
        assert health.mailbox_depth <= 2
    assert done == ["a"] * 20


async def test_kill_mid_request_fails_over_transparently(autojump_clock):
    a = MockProvider(name="a", latency=5.0)
    b = MockProvider(name="b", latency=5.0)
    async with open_runtime([a, b], config=config()) as rt:
        async with trio.open_nursery() as nursery:

            async def request() -> None:
                response = await rt.complete(HI)
                assert response.provider == "b"
                assert response.attempts == 2

            nursery.start_soon(request)
            await trio.sleep(1.0)
            assert rt.health().actor("a").in_flight == 1
            assert rt.kill("a")
        health = rt.health().actor("a")
    assert health.restarts == 1
    assert health.last_crash == "killed on purpose"
    assert a.cancelled == 1


async def test_kill_router_loses_nothing(autojump_clock):
    a = MockProvider(name="a", latency=0.01)
    results: list[str] = []
    async with open_runtime([a], config=config()) as rt:
        async with trio.open_nursery() as nursery:

            async def request() -> None:
                results.append((await rt.complete(HI)).provider)

            for _ in range(50):
                nursery.start_soon(request)
            assert rt.kill("router")
        assert rt.health().actor("router").restarts == 1
    assert results == ["a"] * 50


async def test_graceful_shutdown_lets_in_flight_requests_finish(autojump_clock):
    a = MockProvider(name="a", latency=2.0)
    results: list[object] = []
    async with trio.open_nursery() as outer:
        async with open_runtime([a], config=config(grace_period_s=5.0)) as rt:

            async def request() -> None:
                try:
                    results.append((await rt.complete(HI)).provider)
                except RuntimeClosed as exc:
                    results.append(exc)

            outer.start_soon(request)
            await trio.testing.wait_all_tasks_blocked()
        # The block waited for the request (2 s < 5 s grace) before stopping the actors.
        assert results == ["a"]
        with pytest.raises(RuntimeClosed):
            await rt.complete(HI)
        assert rt.health().state == "closed"


async def test_shutdown_cancels_what_outlives_the_grace_period(autojump_clock):
    a = MockProvider(name="a", latency=100.0)
    outcome: list[BaseException] = []
    async with trio.open_nursery() as outer:
        async with open_runtime([a], config=config(grace_period_s=1.0)) as rt:

            async def request() -> None:
                try:
                    await rt.complete(HI)
                except (RuntimeClosed, AllProvidersFailed) as exc:
                    outcome.append(exc)

            outer.start_soon(request)
            await trio.testing.wait_all_tasks_blocked()
            start = trio.current_time()
        assert trio.current_time() - start == pytest.approx(1.0)
    assert len(outcome) == 1
    assert a.cancelled == 1


async def test_provider_bug_crashes_the_actor_and_the_request_fails_over(autojump_clock):
    a = MockProvider(name="a", script=["crash"])
    b = MockProvider(name="b")
    async with open_runtime([a, b], config=config()) as rt:
        assert (await rt.complete(HI)).provider == "b"
        await trio.sleep(1)
        health = rt.health().actor("a")
        assert health.restarts == 1
        assert health.last_crash is not None and "MockCrash" in health.last_crash
        assert health.state == "running"


async def test_crash_loop_marks_actor_failed_and_runtime_keeps_serving(autojump_clock):
    a = MockProvider(name="a", script=["crash"] * 100)
    b = MockProvider(name="b")
    async with open_runtime([a, b], config=config()) as rt:
        for _ in range(20):
            assert (await rt.complete(HI)).provider == "b"
            await trio.sleep(0.5)
        health = rt.health()
        assert health.actor("a").state == "failed"
        assert health.serving


async def test_duplicate_and_reserved_names_are_rejected():
    with pytest.raises(ValueError, match="'a' repeats"):
        async with open_runtime([MockProvider(name="a"), MockProvider(name="a")]):
            pass
    with pytest.raises(ValueError, match="reserved"):
        async with open_runtime([MockProvider(name="router")]):
            pass


async def test_request_can_be_limited_to_named_providers(autojump_clock):
    a = MockProvider(name="a", always_fail=True)
    b = MockProvider(name="b")
    c = MockProvider(name="c")
    no_retry = RetryConfig(backoff=BackoffConfig(max_retries=0), max_rounds=1)
    async with open_runtime([a, b, c], config=config(retry=no_retry)) as rt:
        assert (await rt.complete(HI, providers=["c"])).provider == "c"
        with pytest.raises(AllProvidersFailed) as info:
            await rt.complete(HI, providers=["a"])
        assert [x.provider for x in info.value.attempts] == ["a"]
        with pytest.raises(InvalidRequest) as bad:
            await rt.complete(HI, providers=["zz"])
        assert bad.value.field == "providers"
    assert b.calls == 0


async def test_a_failure_loading_prices_at_open_still_closes_the_providers(monkeypatch):
    from actors import PriceBook

    closed = []

    class Closing(MockProvider):
        async def aclose(self) -> None:
            closed.append(self.name)

    def unreadable(self, pairs):
        raise RuntimeError("price data unreadable")

    monkeypatch.setattr(PriceBook, "preload", unreadable)
    monkeypatch.setattr(PriceBook, "loaded", staticmethod(lambda kinds: True))  # no thread
    with pytest.raises(RuntimeError, match="price data unreadable"):
        async with open_runtime([Closing(name="a")]):
            pass  # pragma: no cover - the open fails
    assert closed == ["a"]
