"""Health snapshots, structured logs, and secrets that never leak."""

from __future__ import annotations

import json

import structlog.testing
import trio
import trio.testing

from actors import ProviderSpec
from protocols import (
    AuthenticationError,
    LLMProvider,
    Request,
    Response,
    Secret,
    TextPart,
    Usage,
    encode_json,
)
from runtime import RuntimeConfig, open_runtime
from runtime.testing import ChaosMonkey, MockProvider

HI = [{"role": "user", "content": "hi"}]
KEY = "sk-live-THIS-MUST-NEVER-LEAK-1234"


async def test_health_reports_every_actor_with_its_vital_signs(autojump_clock):
    a = MockProvider(name="a", latency=(0.01, 0.05), seed=1)
    b = MockProvider(name="b", always_fail=True)
    specs = [ProviderSpec(provider=a, rpm=600, tpm=100_000), ProviderSpec(provider=b, priority=-1)]
    async with open_runtime(specs, config=RuntimeConfig(seed=1)) as rt:
        for _ in range(20):
            await rt.complete(HI)
        health = rt.health()
        document = json.loads(encode_json(health))
    assert [x["name"] for x in document["actors"]] == ["router", "a", "b"]
    assert document["state"] == "running"
    assert document["serving"] is True
    router = health.actor("router")
    assert router.kind == "router" and router.state == "running"
    assert router.mailbox_capacity == 1024
    a_health = health.actor("a")
    assert a_health.state == "running"
    assert a_health.successes == 20
    assert a_health.mailbox_capacity == 64 and a_health.mailbox_depth == 0
    assert a_health.in_flight == 0 and a_health.max_concurrency == 64
    assert a_health.latency is not None and a_health.latency.samples == 20
    assert 10 <= a_health.latency.p50_ms <= a_health.latency.p95_ms <= 50
    assert a_health.ttft is not None and a_health.ttft.samples == 20
    assert a_health.limiter is not None
    assert a_health.limiter.rpm == 600 and a_health.limiter.tpm == 100_000
    assert a_health.limiter.requests_available is not None
    assert a_health.limiter.requests_available < 600  # 20 requests used some headroom
    b_health = health.actor("b")
    assert b_health.errors == {"server_error": b_health.breaker.total_failures}
    assert b_health.breaker.state == "open"  # b failed every request it got
    assert document["actors"][2]["breaker"]["state"] == "open"
    assert document["retry_budget"]["requests_in_window"] == 20


async def test_health_shows_restarts_and_failed_actors(autojump_clock):
    a = MockProvider(name="a")
    b = MockProvider(name="b")
    async with open_runtime([a, b], config=RuntimeConfig(seed=1)) as rt:
        assert rt.kill("a", reason="test kill")
        await trio.testing.wait_all_tasks_blocked()
        assert rt.health().actor("a").state == "restarting"
        assert not rt.kill("a")  # nothing to kill while it restarts
        await trio.sleep(1)
        health = rt.health().actor("a")
        assert health.state == "running"
        assert health.restarts == 1
        assert health.last_crash == "test kill"
        assert health.last_crash_at is not None
        for _ in range(6):  # the default intensity allows 5 restarts in 10 s
            assert rt.kill("b")
            await trio.sleep(1)
        health = rt.health()
        assert health.actor("b").state == "failed"
        assert health.actor("b").restarts == 6
        assert health.serving  # "a" still serves
        assert (await rt.complete(HI)).provider == "a"


class KeyedProvider(LLMProvider):
    """A provider holding an API key, as the HTTP providers do."""

    def __init__(self, name: str, api_key: str, *, fail: bool) -> None:
        self.name = name
        self.api_key = Secret(api_key)
        self.fail = fail

    async def complete(self, request: Request) -> Response:
        if self.fail:
            raise AuthenticationError(f"key {self.api_key} refused", provider=self.name)
        return Response(
            content=(TextPart("ok"),),
            finish_reason="stop",
            usage=Usage(),
            provider=self.name,
            model="m",
        )

    async def stream(self, request: Request):
        raise NotImplementedError
        yield


async def test_secrets_never_reach_logs_errors_health_or_reprs(autojump_clock):
    bad = KeyedProvider("bad", KEY, fail=True)
    good = KeyedProvider("good", KEY, fail=False)
    with structlog.testing.capture_logs() as logs:
        async with open_runtime([bad, good], config=RuntimeConfig(log_requests=True)) as rt:
            response = await rt.complete(HI)
            rt.kill("good")
            await trio.sleep(1)
            texts = [
                repr(bad),
                repr(good),
                repr(bad.api_key),
                f"{bad.api_key}",
                encode_json(rt.health()).decode(),
                repr(rt),
                repr(response),
            ]
    texts += [repr(entry) for entry in logs]
    assert response.provider == "good"
    assert logs, "expected request logs"
    for text in texts:
        assert KEY not in text
    assert bad.api_key.reveal() == KEY


async def test_request_logs_carry_request_actor_attempt_outcome_and_latency(autojump_clock):
    a = MockProvider(name="a", script=["fail"])
    with structlog.testing.capture_logs() as logs:
        async with open_runtime([a], config=RuntimeConfig(log_requests=True, seed=1)) as rt:
            response = await rt.complete(HI)
    attempts = [e for e in logs if e["event"] in ("attempt_failed", "attempt_ok")]
    assert [e["outcome"] for e in attempts] == ["server_error", "ok"]
    for entry in attempts:
        assert entry["request_id"] == response.request_id
        assert entry["actor"] == "a"
        assert entry["latency_s"] >= 0
    assert [e["attempt"] for e in attempts] == [1, 2]


async def test_request_logs_are_off_by_default(autojump_clock):
    with structlog.testing.capture_logs() as logs:
        async with open_runtime([MockProvider(name="a")]) as rt:
            await rt.complete(HI)
    assert not [e for e in logs if e["event"].startswith("attempt")]


async def test_chaos_monkey_is_reproducible_from_its_seed(autojump_clock):
    async def kills(seed: int) -> list[tuple[float, str]]:
        providers = [MockProvider(name=n) for n in "abc"]
        async with open_runtime(providers, config=RuntimeConfig(seed=1)) as rt:
            monkey = ChaosMonkey(rt, seed=seed, min_interval_s=0.5, max_interval_s=1.0)
            async with trio.open_nursery() as nursery:
                await nursery.start(monkey.run)
                await trio.sleep(10)
                nursery.cancel_scope.cancel()
            start = 0.0
            return [(round(t - start, 6), n) for t, n in monkey.kills]

    first = await kills(42)
    assert len(first) >= 5
    assert {name for _, name in first} <= {"router", "a", "b", "c"}
    names_again = [n for _, n in await kills(42)]
    assert [n for _, n in first] == names_again
    assert [n for _, n in await kills(7)] != names_again
