"""RPM/TPM enforcement and rate-limit headers."""

from __future__ import annotations

from typing import Any

import anthropic
import httpx
import openai
import pytest
import trio

from runtime.emulator import EmulatorHandle, RateWindow, input_tokens, reply_words

MESSAGES: Any = [{"role": "user", "content": "hello"}]
HELLO_COST = input_tokens(len("hello")) + len(reply_words("hello"))


async def test_openai_rpm_sliding_window(emu: EmulatorHandle, oai: openai.AsyncOpenAI) -> None:
    emu.set_limits("openai", rpm=2, window=0.5)
    remaining = []
    for _ in range(2):
        raw = await oai.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
        remaining.append(raw.headers["x-ratelimit-remaining-requests"])
        assert raw.headers["x-ratelimit-limit-requests"] == "2"
        assert raw.headers["x-ratelimit-reset-requests"].endswith("ms")
    assert remaining == ["1", "0"]
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    body: Any = caught.value.body
    assert body["type"] == "requests" and body["code"] == "rate_limit_exceeded"
    assert "requests per min (RPM): Limit 2, Used 2" in body["message"]
    assert caught.value.response.headers["retry-after"] == "1"
    assert caught.value.response.headers["x-ratelimit-remaining-requests"] == "0"
    await trio.sleep(0.55)
    await oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)


async def test_anthropic_tpm(emu: EmulatorHandle, claude: anthropic.AsyncAnthropic) -> None:
    emu.set_limits("anthropic", tpm=HELLO_COST + 5)
    raw = await claude.messages.with_raw_response.create(
        model="claude-sonnet-5", max_tokens=1000, messages=MESSAGES
    )
    assert raw.headers["anthropic-ratelimit-tokens-limit"] == str(HELLO_COST + 5)
    assert raw.headers["anthropic-ratelimit-tokens-remaining"] == "5"
    assert raw.headers["anthropic-ratelimit-tokens-reset"].endswith("Z")
    assert "anthropic-ratelimit-requests-limit" not in raw.headers
    with pytest.raises(anthropic.RateLimitError) as caught:
        await claude.messages.create(model="claude-sonnet-5", max_tokens=1000, messages=MESSAGES)
    body: Any = caught.value.body
    assert body["error"]["type"] == "rate_limit_error"
    assert "input tokens per minute" in body["error"]["message"]
    assert int(caught.value.response.headers["retry-after"]) >= 59
    # A request small enough to fit still passes.
    await claude.messages.create(model="claude-sonnet-5", max_tokens=1, messages=MESSAGES)


async def test_gemini_rpm_429(emu: EmulatorHandle, http: httpx.AsyncClient) -> None:
    emu.set_limits("gemini", rpm=1)
    url = "/v1beta/models/gemini-2.5-flash:generateContent"
    body = {"contents": [{"parts": [{"text": "hi"}]}]}
    headers = {"x-goog-api-key": "k"}
    assert (await http.post(url, json=body, headers=headers)).status_code == 200
    refused = await http.post(url, json=body, headers=headers)
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["status"] == "RESOURCE_EXHAUSTED"
    kinds = [d["@type"].rsplit(".", 1)[1] for d in error["details"]]
    assert kinds == ["QuotaFailure", "Help", "RetryInfo"]
    assert error["details"][0]["violations"][0]["quotaValue"] == "1"
    assert error["details"][2]["retryDelay"].endswith("s")


async def test_no_limit_headers_without_limits(oai: openai.AsyncOpenAI) -> None:
    raw = await oai.chat.completions.with_raw_response.create(model="gpt-4o", messages=MESSAGES)
    assert "x-ratelimit-remaining-requests" not in raw.headers


def test_rate_window_accounting() -> None:
    window = RateWindow(rpm=3, tpm=100, window=60.0)
    assert window.admit(0.0, 40).exceeded is None
    assert window.admit(1.0, 40).exceeded is None
    refused = window.admit(2.0, 40)
    assert refused.exceeded == "tokens"
    assert refused.retry_after == pytest.approx(58.0)
    assert window.admit(3.0, 20).exceeded is None
    assert window.admit(4.0, 0).exceeded == "requests"
    later = window.admit(60.5, 40)
    assert later.exceeded is None
    assert later.used_requests == 3 and later.used_tokens == 100
