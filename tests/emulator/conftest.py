"""Fixtures: a live emulator on loopback and SDK clients pointed at it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anthropic
import httpx
import httpx2
import openai
import pytest
import trio
from google import genai
from google.genai import types

from runtime.emulator import EmulatorConfig, EmulatorHandle, serve_emulator


@pytest.fixture
async def emu(nursery: trio.Nursery) -> EmulatorHandle:
    handle: EmulatorHandle = await nursery.start(serve_emulator, EmulatorConfig())
    return handle


@pytest.fixture
async def oai(emu: EmulatorHandle) -> AsyncIterator[openai.AsyncOpenAI]:
    client = openai.AsyncOpenAI(base_url=emu.base_url + "/v1", api_key="sk-test", max_retries=0)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def claude(emu: EmulatorHandle) -> AsyncIterator[anthropic.AsyncAnthropic]:
    client = anthropic.AsyncAnthropic(base_url=emu.base_url, api_key="ak-test", max_retries=0)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def gemini(emu: EmulatorHandle) -> AsyncIterator[genai.Client]:
    # google-genai's own async transport is asyncio-only; an explicit httpx2
    # client runs on trio. One attempt: no SDK retries in these tests.
    transport = httpx2.AsyncClient()
    client = genai.Client(
        api_key="gk-test",
        http_options=types.HttpOptions(
            base_url=emu.base_url,
            api_version="v1beta",
            httpx_async_client=transport,
            retry_options=types.HttpRetryOptions(attempts=1),
        ),
    )
    try:
        yield client
    finally:
        await client.aio.aclose()
        client.close()
        await transport.aclose()


@pytest.fixture
async def http(emu: EmulatorHandle) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=emu.base_url) as client:
        yield client
