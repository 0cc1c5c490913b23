"""Request recording, config options, control endpoints and the CLI."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest
import trio
from google import genai

from runtime.emulator import (
    REDACTED,
    EmulatorConfig,
    EmulatorHandle,
    ProviderConfig,
    input_tokens,
    key_fingerprint,
    serve_emulator,
)

MESSAGES: Any = [{"role": "user", "content": "hello"}]


async def test_records_redact_keys_and_keep_bodies(
    emu: EmulatorHandle,
    oai: openai.AsyncOpenAI,
    claude: anthropic.AsyncAnthropic,
    gemini: genai.Client,
    http: httpx.AsyncClient,
) -> None:
    await oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, temperature=0.5)
    await claude.messages.create(model="claude-sonnet-5", max_tokens=7, messages=MESSAGES)
    await gemini.aio.models.generate_content(model="gemini-2.5-flash", contents="hello")
    await http.post(
        "/v1beta/models/gemini-2.5-flash:generateContent?alt=json&key=secret-key",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
    )
    first, second, third, fourth = emu.requests
    assert (first.provider, first.method, first.path) == ("openai", "POST", "/v1/chat/completions")
    assert first.headers["authorization"] == REDACTED
    assert first.api_key_sha256 == key_fingerprint("sk-test")
    assert first.body["messages"] == MESSAGES and first.body["temperature"] == 0.5
    assert first.status == 200 and first.fault is None
    # anthropic 2.x sends its api_key as a bearer token.
    assert second.headers["authorization"] == REDACTED
    assert second.api_key_sha256 == key_fingerprint("ak-test")
    assert second.headers["anthropic-version"]
    assert second.body["max_tokens"] == 7
    assert third.headers["x-goog-api-key"] == REDACTED
    assert third.body["contents"][0]["parts"][0]["text"] == "hello"
    assert fourth.query == f"alt=json&key={REDACTED}"
    assert fourth.api_key_sha256 == key_fingerprint("secret-key")
    assert all("sk-test" not in json.dumps(r.headers) for r in emu.requests)
    assert [r.provider for r in emu.requests_for("gemini")] == ["gemini", "gemini"]
    assert third.received_at <= fourth.received_at
    emu.clear()
    assert emu.requests == []


async def test_records_faults_and_error_statuses(
    emu: EmulatorHandle, http: httpx.AsyncClient
) -> None:
    await http.post(
        "/v1/chat/completions",
        headers={"authorization": "Bearer k", "x-emulator-fault": "status=429,retry_after=1"},
        json={"model": "gpt-4o", "messages": MESSAGES},
    )
    await http.post("/v1/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES})
    faulted, anonymous = emu.requests
    assert faulted.status == 429 and faulted.fault is not None and faulted.fault.status == 429
    assert anonymous.status == 401 and anonymous.api_key_sha256 is None


async def test_config_options(nursery: trio.Nursery) -> None:
    config = EmulatorConfig(
        openai=ProviderConfig(valid_keys=frozenset({"sk-good"}), models=("gpt-4o",)),
        anthropic=ProviderConfig(context_window=3),
        gemini=ProviderConfig(faults="status=503"),
        record_limit=3,
    )
    emu: EmulatorHandle = await nursery.start(serve_emulator, config)
    bad = openai.AsyncOpenAI(base_url=emu.base_url + "/v1", api_key="sk-bad", max_retries=0)
    good = openai.AsyncOpenAI(base_url=emu.base_url + "/v1", api_key="sk-good", max_retries=0)
    claude = anthropic.AsyncAnthropic(base_url=emu.base_url, api_key="k", max_retries=0)
    try:
        with pytest.raises(openai.AuthenticationError) as auth:
            await bad.chat.completions.create(model="gpt-4o", messages=MESSAGES)
        assert auth.value.code == "invalid_api_key"
        with pytest.raises(openai.NotFoundError) as missing:
            await good.chat.completions.create(model="gpt-5", messages=MESSAGES)
        assert missing.value.code == "model_not_found"
        assert [m.id async for m in good.models.list()] == ["gpt-4o"]
        with pytest.raises(anthropic.BadRequestError) as long:
            await claude.messages.create(
                model="claude-sonnet-5",
                max_tokens=5,
                messages=[{"role": "user", "content": "x" * 20}],
            )
        body: Any = long.value.body
        assert body["error"]["message"] == "prompt is too long: 5 tokens > 3 maximum"
        async with httpx.AsyncClient(base_url=emu.base_url) as http:
            response = await http.post(
                "/v1beta/models/gemini-2.5-flash:generateContent",
                headers={"x-goog-api-key": "k"},
                json={"contents": [{"parts": [{"text": "hi"}]}]},
            )
        assert response.status_code == 503
        assert len(emu.requests) == 3  # record_limit
    finally:
        await bad.close()
        await good.close()
        await claude.close()


async def test_prompt_cache_emulation(nursery: trio.Nursery) -> None:
    emu: EmulatorHandle = await nursery.start(
        serve_emulator, EmulatorConfig(prompt_cache=True, cache_min_tokens=100)
    )
    system: Any = [{"type": "text", "text": "s" * 800, "cache_control": {"type": "ephemeral"}}]
    claude = anthropic.AsyncAnthropic(base_url=emu.base_url, api_key="k", max_retries=0)
    oai = openai.AsyncOpenAI(base_url=emu.base_url + "/v1", api_key="k", max_retries=0)
    try:
        usages = [
            (
                await claude.messages.create(
                    model="claude-sonnet-5", max_tokens=5, system=system, messages=MESSAGES
                )
            ).usage
            for _ in range(2)
        ]
        assert usages[0].cache_creation_input_tokens == 200
        assert usages[0].cache_read_input_tokens == 0
        assert usages[1].cache_read_input_tokens == 200
        assert usages[1].input_tokens == input_tokens(805) - 200
        history: Any = [{"role": "system", "content": "p" * 400}, *MESSAGES]
        cached = []
        for _ in range(2):
            result = await oai.chat.completions.create(model="gpt-4o", messages=history)
            assert result.usage is not None and result.usage.prompt_tokens_details is not None
            cached.append(result.usage.prompt_tokens_details.cached_tokens)
        assert cached == [0, 100]
    finally:
        await claude.close()
        await oai.close()


async def test_control_endpoints(emu: EmulatorHandle, http: httpx.AsyncClient) -> None:
    chat = {"model": "gpt-4o", "messages": MESSAGES}
    auth = {"authorization": "Bearer k"}
    assert (await http.get("/_emulator/health")).json() == {"ok": True}
    set_fault = await http.post(
        "/_emulator/faults", json={"provider": "openai", "fault": "status=500,times=1"}
    )
    assert set_fault.json() == {"ok": True}
    assert (await http.post("/v1/chat/completions", json=chat, headers=auth)).status_code == 500
    assert (await http.post("/v1/chat/completions", json=chat, headers=auth)).status_code == 200
    await http.post("/_emulator/faults", json={"provider": "*", "fault": {"status": 503}})
    assert (await http.post("/v1/chat/completions", json=chat, headers=auth)).status_code == 503
    await http.post("/_emulator/limits", json={"provider": "openai", "rpm": 1})
    recorded = (await http.get("/_emulator/requests")).json()
    assert [r["status"] for r in recorded] == [500, 200, 503]
    assert recorded[0]["headers"]["authorization"] == REDACTED
    await http.post("/_emulator/reset")
    assert emu.requests == []
    assert (await http.post("/v1/chat/completions", json=chat, headers=auth)).status_code == 200
    assert (await http.post("/v1/chat/completions", json=chat, headers=auth)).status_code == 200
    bad = await http.post("/_emulator/faults", json={"provider": "nope", "fault": None})
    assert bad.status_code == 400
    bad_fault = await http.post("/_emulator/faults", json={"provider": "openai", "fault": "x=1"})
    assert bad_fault.status_code == 400
    assert (await http.get("/_emulator/nothing")).status_code == 404


def test_cli_serves_until_sigterm(tmp_path: Path) -> None:
    config = tmp_path / "emulator.json"
    config.write_text(json.dumps({"openai": {"faults": "status=418"}}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime.emulator", "--port", "0", "--config", str(config)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        base = line.rsplit(" ", 1)[1].strip()
        assert base.startswith("http://127.0.0.1:")
        response = httpx.post(
            base + "/v1/chat/completions",
            headers={"authorization": "Bearer k"},
            json={"model": "gpt-4o", "messages": MESSAGES},
        )
        assert response.status_code == 418
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0


def test_cli_rejects_bad_config(tmp_path: Path) -> None:
    from runtime.emulator import main

    config = tmp_path / "bad.json"
    config.write_text('{"openai": {"rpm": "lots"}}')
    assert main(["--config", str(config)]) == 2


async def test_client_walking_away_stops_a_dripping_stream() -> None:
    async with trio.open_nursery() as nursery:
        emu: EmulatorHandle = await nursery.start(serve_emulator, EmulatorConfig())
        async with (
            httpx.AsyncClient(base_url=emu.base_url) as http,
            http.stream(
                "POST",
                "/v1/chat/completions",
                headers={"authorization": "Bearer k", "x-emulator-fault": "drip=0.5"},
                json={"model": "gpt-4o", "stream": True, "messages": MESSAGES},
            ) as response,
        ):
            async for _ in response.aiter_lines():
                break
        await trio.sleep(0.05)
        started = trio.current_time()
        nursery.cancel_scope.cancel()
    # Without the disconnect watch the handler would hold shutdown for its grace time.
    assert trio.current_time() - started < 1.5


def test_config_from_json() -> None:
    config = EmulatorConfig.from_json(
        '{"openai": {"rpm": 5, "faults": {"status": 500, "rate": 0.5}},'
        ' "gemini": {"valid_keys": ["a", "b"], "models": ["gemini-x"]}, "prompt_cache": true}'
    )
    assert config.openai.rpm == 5
    assert config.gemini.valid_keys == frozenset({"a", "b"})
    assert config.gemini.models == ("gemini-x",)
    assert config.prompt_cache
    with pytest.raises(ValueError):
        EmulatorConfig.from_json('{"openia": {}}')
