"""Operating the gateway: /health (200 or 503) and /metrics (Prometheus text)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx2
import openai
import pytest
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve as hypercorn_serve
from prometheus_client.parser import text_string_to_metric_families

from runtime import Runtime, open_runtime
from runtime._build import (
    build_models,
    build_provider_specs,
    build_routes,
    build_runtime_config,
)
from runtime._embedded import EMULATED_KEYS
from runtime._gateway import Gateway

HI = [{"role": "user", "content": "Tell me something about switchyards"}]
PROVIDERS = ("openai", "anthropic", "gemini")
OPEN_AT_FIRST_FAILURE = {
    "min_requests": 1,
    "failure_threshold": 0.5,
    "window_s": 60.0,
    "cooldown_s": 60.0,
    "max_cooldown_s": 60.0,
}


def samples(text: str) -> dict[str, list[Any]]:
    """Prometheus text parsed: family name -> samples."""
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def value(families: dict[str, list[Any]], sample: str, **labels: str) -> float:
    family = families[sample.removesuffix("_total").removesuffix("_bucket").removesuffix("_count")]
    found = [s.value for s in family if s.name == sample and labels.items() <= s.labels.items()]
    assert found, f"no {sample} with {labels}"
    return float(sum(found))


async def test_health_is_200_with_every_actor(gateway: Any) -> None:
    status, health = await gateway.health()
    assert status == 200
    assert health["state"] == "running"
    assert health["serving"] is True
    assert health["requests_in_flight"] == 0
    actors = {actor["name"]: actor for actor in health["actors"]}
    assert list(actors) == ["router", *PROVIDERS]
    for name in PROVIDERS:
        assert actors[name]["state"] == "running"
        assert actors[name]["breaker"]["state"] == "closed"
    async with httpx2.AsyncClient() as http:
        response = await http.get(gateway.url + "/health")
    assert response.headers["content-type"] == "application/json"


async def test_health_is_503_when_every_breaker_is_open(start_gateway: Any) -> None:
    gateway = await start_gateway(breaker=OPEN_AT_FIRST_FAILURE)
    gateway.emu.set_faults("*", "status=500")
    client = gateway.client()
    try:
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="auto", messages=HI)
        status, health = await gateway.health()
        assert status == 503
        assert health["serving"] is False
        assert {a["breaker"]["state"] for a in health["actors"][1:]} == {"open"}
        # With every breaker open nothing goes upstream: a fast 503 in OpenAI's shape.
        gateway.emu.clear()
        with pytest.raises(openai.InternalServerError) as caught:
            await client.chat.completions.create(model="auto", messages=HI)
        assert caught.value.status_code == 503
        assert not gateway.emu.requests
        families = samples(await gateway.metrics())
        for name in PROVIDERS:
            assert value(families, "switchyard_breaker_state", provider=name) == 2.0
        assert value(families, "switchyard_serving") == 0.0
    finally:
        await client.close()


async def test_health_is_200_while_one_provider_can_serve(start_gateway: Any) -> None:
    gateway = await start_gateway(breaker=OPEN_AT_FIRST_FAILURE)
    gateway.emu.set_faults("openai", "status=500")
    gateway.emu.set_faults("anthropic", "status=500")
    client = gateway.client()
    try:
        raw = await client.chat.completions.with_raw_response.create(model="auto", messages=HI)
        assert raw.headers["x-switchyard-provider"] == "gemini"
    finally:
        await client.close()
    status, health = await gateway.health()
    assert status == 200
    assert [a["breaker"]["state"] for a in health["actors"][1:]] == ["open", "open", "closed"]


async def test_metrics_after_traffic(start_gateway: Any) -> None:
    gateway = await start_gateway(
        aliases={"fast": "gpt-4o-mini"}, providers={"openai": {"rpm": 600, "tpm": 100_000}}
    )
    client = gateway.client()
    try:
        await client.chat.completions.create(model="fast", messages=HI)
        stream = await client.chat.completions.create(model="gemini", messages=HI, stream=True)
        async for _ in stream:
            pass
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="nope", messages=HI)
        gateway.emu.set_faults("openai", "status=500")
        await client.chat.completions.create(model="auto", messages=HI)  # fails over
    finally:
        await client.close()
    async with httpx2.AsyncClient() as http:
        response = await http.get(gateway.url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = samples(response.text)

    ok = partial(value, families, "switchyard_requests_total", outcome="ok")
    assert ok(provider="openai") == 1
    assert ok(provider="gemini") == 1
    assert ok(provider="anthropic") == 1
    assert value(families, "switchyard_errors_total", type="model_not_found") == 1
    for name in ("openai", "gemini", "anthropic"):
        assert value(families, "switchyard_request_latency_seconds_count", provider=name) == 1
        assert value(families, "switchyard_tokens_total", provider=name, kind="input") > 0
        assert value(families, "switchyard_tokens_total", provider=name, kind="output") > 0
    assert value(families, "switchyard_time_to_first_token_seconds_count", provider="gemini") == 1
    assert value(families, "switchyard_provider_errors_total", provider="openai") >= 1
    assert value(families, "switchyard_provider_successes_total", provider="gemini") == 1
    # Emulated models are real ones, so the ledger prices them.
    assert value(families, "switchyard_cost_usd_total", provider="gemini") > 0
    for name in PROVIDERS:
        assert value(families, "switchyard_breaker_state", provider=name) == 0.0
        assert value(families, "switchyard_actor_restarts_total", actor=name) == 0.0
        assert value(families, "switchyard_actor_up", actor=name) == 1.0
    assert 0 < value(families, "switchyard_limiter_requests_available", provider="openai") <= 600
    assert value(families, "switchyard_limiter_tokens_available", provider="openai") > 0
    assert value(families, "switchyard_serving") == 1.0
    assert value(families, "switchyard_requests_in_flight") == 0.0


async def until(condition: Callable[[], bool]) -> None:
    with trio.fail_after(10):
        while True:
            if condition():
                return
            await trio.sleep(0.02)


# --- actors killed under a gateway -------------------------------------------------------------


@asynccontextmanager
async def gateway_over_runtime(
    settings_for: Callable[..., Any], **sections: Any
) -> AsyncIterator[tuple[str, Runtime]]:
    """A ``Gateway`` on hypercorn over a runtime this test holds, to kill its actors."""
    settings = settings_for(**sections)
    specs = build_provider_specs(settings, EMULATED_KEYS)
    async with open_runtime(specs, config=build_runtime_config(settings)) as runtime:
        gateway = Gateway(
            runtime,
            routes=build_routes(settings),
            models=build_models(settings),
            provider_models={p.name: p.model for p in settings.providers},
        )
        config = HypercornConfig()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.graceful_timeout = 1.0
        stop = trio.Event()
        async with trio.open_nursery() as nursery:
            app: Any = gateway
            binds = await nursery.start(
                partial(hypercorn_serve, app, config, shutdown_trigger=stop.wait)
            )
            try:
                yield binds[0], runtime
            finally:
                stop.set()


async def test_health_follows_killed_and_failed_actors(settings_for: Any) -> None:
    supervision = {"max_restarts": 1, "period_s": 60.0, "backoff_base_s": 0.01}
    async with gateway_over_runtime(settings_for, supervision=supervision) as (url, runtime):
        async with httpx2.AsyncClient(base_url=url) as http:
            runtime.kill("openai")  # restarted: a crash in health and metrics
            await until(lambda: runtime.health().actor("openai").state == "running")
            response = await http.get("/health")
            assert response.status_code == 200
            openai_actor = response.json()["actors"][1]
            assert openai_actor["restarts"] == 1
            assert openai_actor["last_crash"]
            families = samples((await http.get("/metrics")).text)
            assert value(families, "switchyard_actor_restarts_total", actor="openai") == 1
            # Past their restart intensity every provider is failed: nothing can serve.
            for _ in range(2):
                for name in PROVIDERS:
                    runtime.kill(name)
                    await trio.sleep(0.05)
            await until(lambda: all(runtime.health().actor(n).state == "failed" for n in PROVIDERS))
            response = await http.get("/health")
            assert response.status_code == 503
            health = response.json()
            assert health["serving"] is False
            assert {a["state"] for a in health["actors"][1:]} == {"failed"}
            response = await http.post(
                "/v1/chat/completions", json={"model": "auto", "messages": HI}
            )
            assert response.status_code == 503
            assert response.json()["error"]["code"] == "all_providers_failed"
            families = samples((await http.get("/metrics")).text)
            for name in PROVIDERS:
                assert value(families, "switchyard_actor_up", actor=name) == 0.0


async def test_health_is_503_once_the_router_is_failed(settings_for: Any) -> None:
    supervision = {"max_restarts": 0, "period_s": 60.0}
    async with gateway_over_runtime(settings_for, supervision=supervision) as (url, runtime):
        runtime.kill("router")
        await until(lambda: runtime.health().actor("router").state == "failed")
        async with httpx2.AsyncClient(base_url=url) as http:
            response = await http.get("/health")
        assert response.status_code == 503
