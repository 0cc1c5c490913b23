"""Each fault looks to a client like the real API failing that way."""

from __future__ import annotations

import email.utils
import random
import time
from typing import Any

import anthropic
import httpx
import httpx2
import openai
import pytest
import trio
from google import genai
from google.genai import errors, types

from runtime.emulator import FAULT_HEADER, EmulatorHandle, reply_words

MESSAGES: Any = [{"role": "user", "content": "hello"}]
CLAUDE = "claude-sonnet-5"
GEMINI = "gemini-2.5-flash"
ANTHROPIC_HEADERS = {"x-api-key": "k", "anthropic-version": "2023-06-01"}


def fault(spec: str) -> dict[str, str]:
    return {FAULT_HEADER: spec}


def gemini_config(spec: str) -> types.GenerateContentConfig:
    return types.GenerateContentConfig(http_options=types.HttpOptions(headers=fault(spec)))


# -- error statuses -----------------------------------------------------------------


async def test_openai_429_with_retry_after(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await oai.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers=fault("status=429,retry_after=2")
        )
    assert caught.value.status_code == 429
    assert caught.value.code == "rate_limit_exceeded"
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.response.headers["x-request-id"]


async def test_retry_after_http_date_and_ms(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/messages",
        headers={
            **ANTHROPIC_HEADERS,
            **fault("status=429,retry_after_date=30,retry_after_ms=1500"),
        },
        json={"model": CLAUDE, "max_tokens": 10, "messages": MESSAGES},
    )
    assert response.status_code == 429
    when = email.utils.parsedate_to_datetime(response.headers["retry-after"])
    assert 20 < when.timestamp() - time.time() <= 31
    assert response.headers["retry-after-ms"] == "1500"
    assert response.json()["error"]["type"] == "rate_limit_error"


async def test_anthropic_529_overloaded(claude: anthropic.AsyncAnthropic) -> None:
    for spec in ("status=529", "error=overloaded"):
        with pytest.raises(anthropic.OverloadedError) as caught:
            await claude.messages.create(
                model=CLAUDE, max_tokens=10, messages=MESSAGES, extra_headers=fault(spec)
            )
        assert caught.value.status_code == 529
        assert isinstance(caught.value, anthropic.InternalServerError)
        body: Any = caught.value.body
        assert body["type"] == "error"
        assert body["error"] == {"type": "overloaded_error", "message": "Overloaded"}


async def test_gemini_429_resource_exhausted_with_retry_info(gemini: genai.Client) -> None:
    with pytest.raises(errors.ClientError) as caught:
        await gemini.aio.models.generate_content(
            model=GEMINI, contents="hello", config=gemini_config("status=429,retry_after=2")
        )
    assert caught.value.code == 429
    assert caught.value.status == "RESOURCE_EXHAUSTED"
    details = caught.value.details["error"]["details"]
    assert {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "2s"} in details


@pytest.mark.parametrize(
    ("spec", "openai_cls", "anthropic_cls", "gemini_status"),
    [
        ("status=500", openai.InternalServerError, anthropic.InternalServerError, "INTERNAL"),
        (
            "status=503",
            openai.InternalServerError,
            anthropic.ServiceUnavailableError,
            "UNAVAILABLE",
        ),
        (
            "status=401",
            openai.AuthenticationError,
            anthropic.AuthenticationError,
            "UNAUTHENTICATED",
        ),
        (
            "error=context_length",
            openai.BadRequestError,
            anthropic.BadRequestError,
            "INVALID_ARGUMENT",
        ),
    ],
)
async def test_status_faults_raise_sdk_errors(
    oai: openai.AsyncOpenAI,
    claude: anthropic.AsyncAnthropic,
    gemini: genai.Client,
    spec: str,
    openai_cls: type[openai.APIStatusError],
    anthropic_cls: type[anthropic.APIStatusError],
    gemini_status: str,
) -> None:
    for stream in (False, True):
        with pytest.raises(openai_cls):
            await oai.chat.completions.create(
                model="gpt-4o", messages=MESSAGES, stream=stream, extra_headers=fault(spec)
            )
        with pytest.raises(anthropic_cls):
            await claude.messages.create(
                model=CLAUDE,
                max_tokens=9,
                messages=MESSAGES,
                stream=stream,
                extra_headers=fault(spec),
            )
    with pytest.raises(errors.APIError) as caught:
        await gemini.aio.models.generate_content(
            model=GEMINI, contents="hello", config=gemini_config(spec)
        )
    assert caught.value.status == gemini_status


async def test_context_length_bodies(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, gemini: genai.Client
) -> None:
    spec = fault("error=context_length")
    with pytest.raises(openai.BadRequestError) as o:
        await oai.chat.completions.create(model="gpt-4o", messages=MESSAGES, extra_headers=spec)
    assert o.value.code == "context_length_exceeded" and o.value.param == "messages"
    assert "maximum context length is 128000 tokens" in o.value.message
    with pytest.raises(anthropic.BadRequestError) as a:
        await claude.messages.create(
            model=CLAUDE, max_tokens=9, messages=MESSAGES, extra_headers=spec
        )
    body: Any = a.value.body
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("prompt is too long: 128001 tokens > ")
    with pytest.raises(errors.ClientError) as g:
        await gemini.aio.models.generate_content(
            model=GEMINI, contents="hello", config=gemini_config("error=context_length")
        )
    assert g.value.code == 400 and "exceeds the maximum number of tokens" in str(g.value.message)


async def test_missing_keys_get_each_providers_auth_error(http: httpx.AsyncClient) -> None:
    chat = {"model": "gpt-4o", "messages": MESSAGES}
    openai_resp = await http.post("/v1/chat/completions", json=chat)
    assert openai_resp.status_code == 401
    assert openai_resp.json()["error"]["message"].startswith("You didn't provide an API key.")
    anthropic_resp = await http.post(
        "/v1/messages",
        headers={"anthropic-version": "2023-06-01"},
        json={"model": CLAUDE, "max_tokens": 5, "messages": MESSAGES},
    )
    assert anthropic_resp.status_code == 401
    assert anthropic_resp.json()["error"] == {
        "type": "authentication_error",
        "message": "x-api-key header is required",
    }
    gemini_resp = await http.post(
        f"/v1beta/models/{GEMINI}:generateContent",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
    )
    # What Google answers a call without any key.
    assert gemini_resp.status_code == 403
    assert gemini_resp.json()["error"]["status"] == "PERMISSION_DENIED"
    # Gemini also takes the key as ?key=.
    keyed = await http.post(
        f"/v1beta/models/{GEMINI}:generateContent?key=abc",
        json={"contents": [{"parts": [{"text": "hi"}]}]},
    )
    assert keyed.status_code == 200


async def test_invalid_json_request_body(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/v1/chat/completions",
        headers={"authorization": "Bearer k", "content-type": "application/json"},
        content=b'{"model": ',
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


# -- timing -------------------------------------------------------------------------


async def test_latency(oai: openai.AsyncOpenAI) -> None:
    start = trio.current_time()
    await oai.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, extra_headers=fault("latency=0.3")
    )
    assert trio.current_time() - start >= 0.3


async def test_slow_first_token_and_drip(emu: EmulatorHandle, http: httpx.AsyncClient) -> None:
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True, "max_tokens": 6}
    headers = {"authorization": "Bearer k", **fault("first_token=0.3,drip=0.05")}
    start = trio.current_time()
    arrivals: list[float] = []
    async with http.stream("POST", "/v1/chat/completions", json=body, headers=headers) as response:
        headers_at = trio.current_time() - start
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"content":"' in line and '"content":""' not in line:
                arrivals.append(trio.current_time() - start)
    assert headers_at < 0.25  # headers come at once, the first token late
    assert len(arrivals) == 6
    assert arrivals[0] >= 0.3
    assert arrivals[-1] - arrivals[0] >= 5 * 0.05 * 0.9


# -- broken streams -----------------------------------------------------------------


async def test_disconnect_mid_stream(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, gemini: genai.Client
) -> None:
    received = 0
    stream = await oai.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=fault("disconnect=3")
    )
    with pytest.raises(openai.APIConnectionError) as o:
        async for _ in stream:
            received += 1
    assert received == 3
    assert isinstance(o.value.__cause__, httpx2.RemoteProtocolError)
    # The Anthropic and Gemini SDKs let the transport error through unwrapped.
    with pytest.raises(httpx2.RemoteProtocolError):
        async with claude.messages.stream(
            model=CLAUDE, max_tokens=50, messages=MESSAGES, extra_headers=fault("disconnect=5")
        ) as a:
            async for _ in a:
                pass
    chunks = 0
    with pytest.raises(httpx2.RemoteProtocolError):
        async for _ in await gemini.aio.models.generate_content_stream(
            model=GEMINI, contents="hello", config=gemini_config("disconnect=4")
        ):
            chunks += 1
    assert chunks == 4


async def test_disconnect_non_stream(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.APIConnectionError):
        await oai.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers=fault("disconnect=0")
        )


async def test_error_event_mid_stream(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, gemini: genai.Client
) -> None:
    text: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as a:
        async with claude.messages.stream(
            model=CLAUDE, max_tokens=50, messages=MESSAGES, extra_headers=fault("error_event=6")
        ) as stream:
            async for chunk in stream.text_stream:
                text.append(chunk)
    body: Any = a.value.body
    assert body["error"]["type"] == "overloaded_error"
    # message_start, content_block_start, ping, then three text deltas.
    assert "".join(text) == " ".join(reply_words("hello")[:3])

    with pytest.raises(openai.APIError) as o:
        stream_o = await oai.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=fault("error_event=4")
        )
        async for _ in stream_o:
            pass
    assert not isinstance(o.value, openai.APIStatusError)
    assert o.value.type == "server_error"

    with pytest.raises(errors.ServerError) as g:
        async for _ in await gemini.aio.models.generate_content_stream(
            model=GEMINI, contents="hello", config=gemini_config("error_event=2,status=500")
        ):
            pass
    assert g.value.code == 500 and g.value.status == "INTERNAL"


async def test_truncated_streams_lack_terminators(
    http: httpx.AsyncClient, oai: openai.AsyncOpenAI
) -> None:
    auth = {"authorization": "Bearer k", **fault("truncate=1000")}
    body = {"model": "gpt-4o", "messages": MESSAGES, "stream": True}
    openai_text = (await http.post("/v1/chat/completions", json=body, headers=auth)).text
    assert "[DONE]" not in openai_text and '"finish_reason":"stop"' in openai_text
    # The SDK does not notice a missing [DONE]: the iteration just ends.
    stream = await oai.chat.completions.create(
        model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=fault("truncate=3")
    )
    chunks = [c async for c in stream]
    assert len(chunks) == 3 and all(c.choices[0].finish_reason is None for c in chunks)

    anthropic_text = (
        await http.post(
            "/v1/messages",
            headers={**ANTHROPIC_HEADERS, **fault("truncate=1000")},
            json={"model": CLAUDE, "max_tokens": 5, "stream": True, "messages": MESSAGES},
        )
    ).text
    assert "message_delta" in anthropic_text and "message_stop" not in anthropic_text

    gemini_text = (
        await http.post(
            f"/v1beta/models/{GEMINI}:streamGenerateContent?alt=sse",
            headers={"x-goog-api-key": "k", **fault("truncate=1000")},
            json={"contents": [{"parts": [{"text": "hello"}]}]},
        )
    ).text
    assert gemini_text.count("data: ") == len(reply_words("hello")) - 1
    assert "finishReason" not in gemini_text


async def test_malformed_json(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, gemini: genai.Client
) -> None:
    with pytest.raises(ValueError):
        await oai.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, extra_headers=fault("malformed")
        )
    with pytest.raises(ValueError):
        async for _ in await oai.chat.completions.create(
            model="gpt-4o", messages=MESSAGES, stream=True, extra_headers=fault("malformed=2")
        ):
            pass
    with pytest.raises(ValueError):
        async with claude.messages.stream(
            model=CLAUDE, max_tokens=20, messages=MESSAGES, extra_headers=fault("malformed=0")
        ) as stream:
            async for _ in stream:
                pass
    with pytest.raises(errors.UnknownApiResponseError):
        async for _ in await gemini.aio.models.generate_content_stream(
            model=GEMINI, contents="hello", config=gemini_config("malformed=1")
        ):
            pass


# -- standing faults ----------------------------------------------------------------


async def test_seeded_failure_rate(emu: EmulatorHandle, oai: openai.AsyncOpenAI) -> None:
    emu.set_faults("openai", "status=500,rate=0.5,seed=7")
    rng = random.Random(7)
    expected = [rng.random() < 0.5 for _ in range(12)]
    failed: list[bool] = []
    for _ in range(12):
        try:
            await oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
            failed.append(False)
        except openai.InternalServerError:
            failed.append(True)
    assert failed == expected
    assert 0 < sum(failed) < 12
    assert [r.status for r in emu.requests] == [500 if f else 200 for f in failed]


async def test_times_and_disarm(emu: EmulatorHandle, claude: anthropic.AsyncAnthropic) -> None:
    emu.set_faults("anthropic", {"status": 529, "times": 2})
    for _ in range(2):
        with pytest.raises(anthropic.OverloadedError):
            await claude.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    ok = await claude.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    assert ok.stop_reason == "max_tokens"
    emu.set_faults("anthropic", "status=500")
    with pytest.raises(anthropic.InternalServerError):
        await claude.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    emu.set_faults("anthropic", None)
    await claude.messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)


async def test_header_overrides_standing_fault_and_bad_header(
    emu: EmulatorHandle, http: httpx.AsyncClient
) -> None:
    emu.set_faults("*", "status=503")
    headers = {"authorization": "Bearer k"}
    body = {"model": "gpt-4o", "messages": MESSAGES}
    assert (await http.post("/v1/chat/completions", json=body, headers=headers)).status_code == 503
    overridden = await http.post(
        "/v1/chat/completions", json=body, headers={**headers, **fault("latency=0")}
    )
    assert overridden.status_code == 200
    bad = await http.post(
        "/v1/chat/completions", json=body, headers={**headers, **fault("explode=1")}
    )
    assert bad.status_code == 400
    assert "unknown fault key" in bad.json()["error"]["message"]
