"""``python -m runtime.emulator --server uvicorn`` answers like the default hypercorn server.

The benchmarks serve the emulator with uvicorn (httptools, uvloop) on asyncio; the
tests serve it with hypercorn's trio worker. The same requests, faults included,
go to both here and must get the same status, headers and bytes (response ids
and timestamps aside), so a benchmark measures the emulator the tests describe.
"""

from __future__ import annotations

import importlib.util
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
import trio

from runtime.emulator import FAULT_HEADER, reply_words
from runtime.emulator._cli import main

MESSAGES: Any = [{"role": "user", "content": "hello"}]
OPENAI = {"authorization": "Bearer k"}
ANTHROPIC = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
GEMINI = {"x-goog-api-key": "k"}
CHAT = {"model": "gpt-4o", "messages": MESSAGES}
CLAUDE = {"model": "claude-sonnet-5", "max_tokens": 50, "messages": MESSAGES}
CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "hello"}]}]}
GENERATE = "/v1beta/models/gemini-2.5-flash:generateContent"
STREAM = "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"

# (method, path, headers, JSON body or raw bytes) per case.
CASES: dict[str, tuple[str, str, dict[str, str], Any]] = {
    "openai": ("POST", "/v1/chat/completions", OPENAI, CHAT),
    "openai-stream": ("POST", "/v1/chat/completions", OPENAI, {**CHAT, "stream": True}),
    "openai-models": ("GET", "/v1/models", OPENAI, None),
    "anthropic": ("POST", "/v1/messages", ANTHROPIC, CLAUDE),
    "anthropic-stream": ("POST", "/v1/messages", ANTHROPIC, {**CLAUDE, "stream": True}),
    "anthropic-count": ("POST", "/v1/messages/count_tokens", ANTHROPIC, CLAUDE),
    "gemini": ("POST", GENERATE, GEMINI, CONTENTS),
    "gemini-stream": ("POST", STREAM, GEMINI, CONTENTS),
    "openai-429": (
        "POST",
        "/v1/chat/completions",
        {**OPENAI, FAULT_HEADER: "status=429,retry_after=2"},
        CHAT,
    ),
    "anthropic-overloaded": (
        "POST",
        "/v1/messages",
        {**ANTHROPIC, FAULT_HEADER: "error=overloaded"},
        CLAUDE,
    ),
    "gemini-429": (
        "POST",
        GENERATE,
        {**GEMINI, FAULT_HEADER: "status=429,retry_after=2"},
        CONTENTS,
    ),
    "openai-error-event": (
        "POST",
        "/v1/chat/completions",
        {**OPENAI, FAULT_HEADER: "error_event=4"},
        {**CHAT, "stream": True},
    ),
    "anthropic-truncate": (
        "POST",
        "/v1/messages",
        {**ANTHROPIC, FAULT_HEADER: "truncate=3"},
        {**CLAUDE, "stream": True},
    ),
    "gemini-malformed": ("POST", STREAM, {**GEMINI, FAULT_HEADER: "malformed=1"}, CONTENTS),
    "openai-drip": (
        "POST",
        "/v1/chat/completions",
        {**OPENAI, FAULT_HEADER: "latency=0.02,first_token=0.02,drip=0.005"},
        {**CHAT, "stream": True, "max_tokens": 5},
    ),
    "seeded-rate": (
        "POST",
        "/v1/chat/completions",
        {**OPENAI, FAULT_HEADER: "status=500,rate=0.5,seed=3"},
        CHAT,
    ),
    "missing-key": ("POST", "/v1/messages", {"anthropic-version": "2023-06-01"}, CLAUDE),
    "bad-json": ("POST", "/v1/chat/completions", OPENAI, b"{not json"),
    "bad-fault-header": ("POST", GENERATE, {**GEMINI, FAULT_HEADER: "nonsense=1"}, CONTENTS),
    "unknown-route": ("POST", "/v2/nothing", OPENAI, CHAT),
}

# Differ per response on any server: response ids carry a counter, OpenAI a timestamp.
_IDS = re.compile(rb"(chatcmpl-|msg_|req_|emu)[0-9a-f]{18}")
_CREATED = re.compile(rb'"created":\d+')
_PER_RESPONSE = {"date", "x-request-id", "request-id"}


@pytest.fixture(scope="module")
def uvicorn_url() -> Iterator[str]:
    """The emulator CLI with ``--server uvicorn`` on an ephemeral loopback port."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.emulator", "--port", "0", "--server", "uvicorn"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on" in line, (line, proc.stderr and proc.stderr.read())
        base = line.rsplit(" ", 1)[1].strip()
        assert base.startswith("http://127.0.0.1:")
        yield base
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.stderr is not None
        errors = proc.stderr.read()
    assert status == 0, errors
    assert errors == ""  # the disconnect faults' early endings are not logged as errors


@pytest.fixture
async def uv(uvicorn_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=uvicorn_url) as client:
        await client.post("/_emulator/reset")
        yield client


def _normalized(body: bytes) -> bytes:
    return _CREATED.sub(b'"created":0', _IDS.sub(rb"\1ID", body))


async def _exchange(client: httpx.AsyncClient, case: str) -> tuple[int, dict[str, str], bytes]:
    method, path, headers, body = CASES[case]
    content = body if isinstance(body, bytes) else None
    payload = None if isinstance(body, bytes) else body
    response = await client.request(method, path, headers=headers, json=payload, content=content)
    shown = {k: v for k, v in response.headers.items() if k not in _PER_RESPONSE}
    return response.status_code, shown, _normalized(response.content)


@pytest.mark.parametrize("case", list(CASES))
async def test_same_answers_as_hypercorn(
    case: str, http: httpx.AsyncClient, uv: httpx.AsyncClient
) -> None:
    for _ in range(4 if case == "seeded-rate" else 1):  # the same drawn sequence
        expected = await _exchange(http, case)
        assert await _exchange(uv, case) == expected


async def test_sdks_stream_from_uvicorn(uvicorn_url: str) -> None:
    oai = openai.AsyncOpenAI(base_url=uvicorn_url + "/v1", api_key="sk", max_retries=0)
    claude = anthropic.AsyncAnthropic(base_url=uvicorn_url, api_key="ak", max_retries=0)
    try:
        stream = await oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == " ".join(reply_words("hello"))
        async with claude.messages.stream(
            model="claude-sonnet-5", max_tokens=200, messages=MESSAGES
        ) as s:
            assert "".join([t async for t in s.text_stream]) == " ".join(reply_words("hello"))
        with pytest.raises(openai.RateLimitError) as caught:
            await oai.chat.completions.create(
                model="gpt-4o",
                messages=MESSAGES,
                extra_headers={FAULT_HEADER: "status=429,retry_after=2"},
            )
        assert caught.value.response.headers["retry-after"] == "2"
    finally:
        await oai.close()
        await claude.close()


async def test_disconnect_faults_drop_the_connection(uv: httpx.AsyncClient) -> None:
    headers = {**OPENAI, FAULT_HEADER: "disconnect=3"}
    frames: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with uv.stream(
            "POST", "/v1/chat/completions", headers=headers, json={**CHAT, "stream": True}
        ) as response:
            async for line in response.aiter_lines():
                if line:
                    frames.append(line)
    assert len(frames) == 3
    with pytest.raises(httpx.RemoteProtocolError):
        await uv.post(
            "/v1/chat/completions", headers={**OPENAI, FAULT_HEADER: "disconnect=0"}, json=CHAT
        )
    # The server goes on serving new connections.
    assert (await uv.post("/v1/chat/completions", headers=OPENAI, json=CHAT)).status_code == 200


async def test_client_walking_away_from_a_dripping_stream(uv: httpx.AsyncClient) -> None:
    headers = {**OPENAI, FAULT_HEADER: "drip=0.5"}
    with trio.fail_after(5):
        async with uv.stream(
            "POST", "/v1/chat/completions", headers=headers, json={**CHAT, "stream": True}
        ) as response:
            async for _ in response.aiter_lines():
                break
    with trio.fail_after(5):
        assert (await uv.get("/_emulator/health")).status_code == 200


async def test_rate_limits_on_asyncio_clock(uv: httpx.AsyncClient) -> None:
    limits = {"provider": "gemini", "rpm": 1, "window": 60}
    assert (await uv.post("/_emulator/limits", json=limits)).status_code == 200
    assert (await uv.post(GENERATE, headers=GEMINI, json=CONTENTS)).status_code == 200
    refused = await uv.post(GENERATE, headers=GEMINI, json=CONTENTS)
    assert refused.status_code == 429
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    await uv.post("/_emulator/reset")
    assert (await uv.post(GENERATE, headers=GEMINI, json=CONTENTS)).status_code == 200


def test_missing_bench_extra_is_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> Any:
        return None if name == "uvloop" else real(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert main(["--server", "uvicorn", "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "uvloop" in err and "install the bench extra" in err
