"""The runtime over real HTTP: failover, streaming failures and chaos against the emulator.

A shorter version of the in-process semantics tests, on loopback HTTP with the native and
the SDK transports of all three providers.
"""

from __future__ import annotations

from collections import Counter
from functools import partial

import pytest
import trio
import trio.testing

from actors import (
    BackoffConfig,
    ProviderSpec,
    RetryBudgetConfig,
    RetryConfig,
    SupervisorConfig,
)
from protocols import (
    AllProvidersFailed,
    ErrorEvent,
    Finish,
    LLMProvider,
    ProviderUnavailable,
    StreamInterrupted,
    SwitchyardError,
    TextDelta,
)
from protocols import providers as wire
from runtime import RuntimeConfig, open_runtime
from runtime.emulator import serve_emulator
from runtime.testing import ChaosMonkey

HI = [{"role": "user", "content": "Tell me something about switchyards"}]
NO_RETRY = RetryConfig(backoff=BackoffConfig(max_retries=0), max_rounds=1)


def http_providers(base_url: str, transport: str) -> list[LLMProvider]:
    if transport == "sdk":
        return [
            wire.OpenAISDKProvider(
                name="openai", base_url=base_url + "/v1", api_key="sk-test", model="gpt-4o-mini"
            ),
            wire.AnthropicSDKProvider(
                name="anthropic", base_url=base_url, api_key="sk-ant", model="claude-sonnet-4-6"
            ),
            wire.GeminiSDKProvider(
                name="gemini", base_url=base_url, api_key="g-key", model="gemini-2.5-flash"
            ),
        ]
    return [
        wire.openai_provider(
            name="openai", base_url=base_url + "/v1", api_key="sk-test", model="gpt-4o-mini"
        ),
        wire.anthropic_provider(
            name="anthropic", base_url=base_url, api_key="sk-ant", model="claude-sonnet-4-6"
        ),
        wire.gemini_provider(
            name="gemini", base_url=base_url, api_key="g-key", model="gemini-2.5-flash"
        ),
    ]


@pytest.fixture
async def emulator(nursery):
    return await nursery.start(serve_emulator)


async def collect(rt) -> list:
    async with rt.stream(HI) as events:
        return [event async for event in events]


@pytest.mark.parametrize("transport", ["native", "sdk"])
async def test_complete_fails_over_across_apis(emulator, transport):
    emulator.set_faults("openai", "status=503")
    providers = http_providers(emulator.base_url, transport)
    async with open_runtime(providers, config=RuntimeConfig(retry=NO_RETRY)) as rt:
        response = await rt.complete(HI)
        assert response.provider == "anthropic"
        assert response.attempts == 2
        assert response.text
        emulator.set_faults("anthropic", "status=529")
        response = await rt.complete(HI)
        assert response.provider == "gemini"
        assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0


@pytest.mark.parametrize("transport", ["native", "sdk"])
async def test_in_stream_overload_before_content_fails_over_invisibly(emulator, transport):
    emulator.set_faults("openai", "status=503")
    emulator.set_faults("anthropic", "error_event=0")
    providers = http_providers(emulator.base_url, transport)
    async with open_runtime(providers, config=RuntimeConfig(retry=NO_RETRY)) as rt:
        events = await collect(rt)
    assert not any(isinstance(e, ErrorEvent) for e in events)
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.response is not None
    assert finish.response.provider == "gemini"
    assert finish.response.text == "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.mark.parametrize("transport", ["native", "sdk"])
@pytest.mark.parametrize("fault", ["error_event=3", "truncate=3", "disconnect=3"])
async def test_broken_stream_after_content_is_a_typed_error(emulator, transport, fault):
    emulator.set_faults("*", fault)
    providers = http_providers(emulator.base_url, transport)
    async with open_runtime(providers, config=RuntimeConfig(retry=NO_RETRY)) as rt:
        events = await collect(rt)
    last = events[-1]
    assert isinstance(last, ErrorEvent), events
    assert isinstance(last.error, StreamInterrupted)
    delivered = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert delivered and last.delivered_text == delivered


async def test_provider_rate_limit_headers_and_429s_steer_traffic(emulator):
    emulator.set_limits("openai", rpm=2)
    providers = http_providers(emulator.base_url, "native")
    async with open_runtime(providers, config=RuntimeConfig(retry=NO_RETRY)) as rt:
        answered = [(await rt.complete(HI)).provider for _ in range(6)]
        limiter = rt.health().actor("openai").limiter
    assert answered[:2] == ["openai", "openai"]
    # The third hit the emulator's limit (or our limiter, fed by its headers): the rest go on.
    assert set(answered[2:]) <= {"openai", "anthropic"}
    assert answered.count("anthropic") >= 3
    assert limiter is not None
    assert limiter.paused_for_s > 0 or (limiter.requests_available or 0) < 1


async def test_every_provider_failing_gives_all_attempts(emulator):
    emulator.set_faults("*", "status=500")
    providers = http_providers(emulator.base_url, "native")
    async with open_runtime(providers, config=RuntimeConfig(retry=NO_RETRY)) as rt:
        with pytest.raises(AllProvidersFailed) as info:
            await rt.complete(HI)
    assert [a.provider for a in info.value.attempts] == ["openai", "anthropic", "gemini"]


@pytest.mark.parametrize("transport", ["native", "sdk"])
async def test_cancelling_a_stream_closes_upstream_promptly(emulator, transport):
    emulator.set_faults("*", "drip=0.2")
    providers = http_providers(emulator.base_url, transport)
    async with open_runtime(providers) as rt:
        async with rt.stream(HI) as events:
            first = await events.__anext__()
            assert isinstance(first, TextDelta)
            start = trio.current_time()
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert trio.current_time() - start < 2.0  # not the rest of a 5 s dripping stream
        assert rt.health().actor("openai").in_flight == 0


async def test_kill_mid_request_over_http_fails_over(emulator):
    emulator.set_faults("openai", "latency=1.0")
    providers = http_providers(emulator.base_url, "native")
    async with open_runtime(providers, config=RuntimeConfig(retry=NO_RETRY)) as rt:
        async with trio.open_nursery() as nursery:

            async def killer() -> None:
                await trio.sleep(0.2)
                assert rt.kill("openai")

            nursery.start_soon(killer)
            response = await rt.complete(HI)
    assert response.provider == "anthropic"


@pytest.mark.parametrize("transport", ["native", "sdk"])
async def test_short_chaos_over_http(emulator, transport):
    for provider in ("openai", "anthropic", "gemini"):
        emulator.set_faults(provider, f"status=503,rate=0.2,seed={len(provider)}")
    providers = [
        ProviderSpec(provider=p, max_concurrency=16)
        for p in http_providers(emulator.base_url, transport)
    ]
    config = RuntimeConfig(
        seed=5,
        supervision=SupervisorConfig(max_restarts=1000, period_s=1.0, backoff_base_s=0.005),
        # Every provider fails 20% of the time, the default retry budget's share: give
        # retries room, as the in-process chaos test does (the budget is tested on its own).
        retry=RetryConfig(max_rounds=3, budget=RetryBudgetConfig(ratio=0.5)),
    )
    outcomes: Counter[str] = Counter()

    async def one(rt, index: int) -> None:
        try:
            if index % 3:
                await rt.complete(HI, timeout=20)
                outcomes["response"] += 1
                return
            async with rt.stream(HI, timeout=20) as events:
                async for event in events:
                    if isinstance(event, Finish):
                        outcomes["response"] += 1
                    elif isinstance(event, ErrorEvent):
                        error = event.error
                        cause = error.cause if isinstance(error, StreamInterrupted) else error
                        outcomes[f"{type(error).__name__}:{type(cause).__name__}"] += 1
        except SwitchyardError as error:
            outcomes[type(error).__name__] += 1

    async with open_runtime(providers, config=config, policy="round_robin") as rt:
        monkey = ChaosMonkey(rt, seed=3, min_interval_s=0.02, max_interval_s=0.08)
        async with trio.open_nursery() as chaos:
            await chaos.start(monkey.run)
            async with trio.open_nursery() as clients:
                for index in range(150):
                    clients.start_soon(partial(one, rt, index))
                    await trio.sleep(0.003)
            chaos.cancel_scope.cancel()
    assert sum(outcomes.values()) == 150, outcomes
    assert len(monkey.kills) >= 3
    allowed = {"response", f"StreamInterrupted:{ProviderUnavailable.__name__}"}
    assert set(outcomes) <= allowed, outcomes
