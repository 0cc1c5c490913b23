"""Graceful shutdown of ``serve_gateway`` in process: drain, refuse, and do not wait on idle
keep-alive connections."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest
import trio

from runtime._embedded import EMULATED_KEYS
from runtime._serve import serve_gateway

HI = [{"role": "user", "content": "Tell me something about switchyards"}]


async def serve_until_done(
    nursery: trio.Nursery, settings: Any, shutdown: trio.Event
) -> tuple[str, trio.Event]:
    """Start a gateway; returns its URL and an event set when ``serve_gateway`` returns."""
    done = trio.Event()

    async def run(task_status: trio.TaskStatus[str]) -> None:
        try:
            await serve_gateway(
                settings, env=EMULATED_KEYS, shutdown=shutdown, task_status=task_status
            )
        finally:
            done.set()

    url: str = await nursery.start(run)
    return url, done


async def test_idle_keep_alive_connections_do_not_hold_shutdown(
    nursery: trio.Nursery, settings_for: Any
) -> None:
    shutdown = trio.Event()
    settings = settings_for(server={"grace_period_s": 60.0})
    url, done = await serve_until_done(nursery, settings, shutdown)
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-any", max_retries=0)
    try:
        # Both kinds of answer leave a kept-alive connection behind in the client's pool.
        await client.chat.completions.create(model="auto", messages=HI)
        stream = await client.chat.completions.create(model="auto", messages=HI, stream=True)
        async for _ in stream:
            pass
        shutdown.set()
        with trio.fail_after(20):  # far less than the 60 s grace period
            await done.wait()
    finally:
        await client.close()


@pytest.mark.parametrize("stream", [False, True])
async def test_shutdown_drains_a_request_in_flight_and_refuses_new_connections(
    nursery: trio.Nursery, settings_for: Any, emu: Any, stream: bool
) -> None:
    shutdown = trio.Event()
    settings = settings_for(server={"grace_period_s": 30.0})
    url, done = await serve_until_done(nursery, settings, shutdown)
    emu.set_faults("*", "first_token=2" if stream else "latency=2")
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-any", max_retries=0)
    answer: list[str] = []

    async def ask() -> None:
        if stream:
            chunks = await client.chat.completions.create(model="auto", messages=HI, stream=True)
            answer.append("".join([c.choices[0].delta.content or "" async for c in chunks]))
        else:
            completion = await client.chat.completions.create(model="auto", messages=HI)
            answer.append(completion.choices[0].message.content or "")

    try:
        async with trio.open_nursery() as requests:
            requests.start_soon(ask)
            with trio.fail_after(10):
                while True:
                    if emu.requests:
                        break
                    await trio.sleep(0.02)
            shutdown.set()
            await trio.sleep(0.1)
            assert not done.is_set()
            with pytest.raises(httpx2.ConnectError):
                async with httpx2.AsyncClient() as http:
                    await http.get(url + "/health")
        assert len(answer[0].split()) >= 10
        with trio.fail_after(20):
            await done.wait()
    finally:
        await client.close()


async def test_a_request_after_shutdown_began_on_a_kept_connection_is_answered_or_closed(
    nursery: trio.Nursery, settings_for: Any, emu: Any
) -> None:
    """A client reusing a pooled connection during the drain never hangs."""
    shutdown = trio.Event()
    settings = settings_for(server={"grace_period_s": 30.0})
    url, done = await serve_until_done(nursery, settings, shutdown)
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-any", max_retries=0)
    try:
        await client.chat.completions.create(model="auto", messages=HI)
        emu.set_faults("*", "latency=1")
        slow = trio.Event()

        async def in_flight() -> None:
            await client.chat.completions.create(model="auto", messages=HI)
            slow.set()

        nursery.start_soon(in_flight)
        await trio.sleep(0.3)
        shutdown.set()
        with trio.fail_after(20):
            try:
                await client.chat.completions.create(model="auto", messages=HI)
            except openai.APIConnectionError:
                pass  # the pooled connection was closed: what a client retries on
            await slow.wait()
            await done.wait()
    finally:
        await client.close()
