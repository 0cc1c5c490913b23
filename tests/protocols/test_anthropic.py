"""Anthropic Messages: the codec, the native HTTP transport and the SDK transport.

Recorded API shapes live in tests/fixtures/anthropic; live behaviour comes from the HTTP
emulator over loopback, whose replies are pure functions of the request.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import msgspec
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols import (
    AuthenticationError,
    ContentFiltered,
    ContextLengthExceeded,
    Finish,
    ImagePart,
    InvalidRequest,
    LLMProvider,
    Message,
    NotFound,
    Overloaded,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    RateLimitInfo,
    Request,
    Response,
    ServerError,
    ServerSentEvent,
    SSEDecoder,
    StreamEvent,
    SwitchyardError,
    TextDelta,
    TextPart,
    Timeout,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
    TransportError,
    Usage,
    UsageEvent,
    build_request,
)
from protocols._anthropic import AnthropicCodec, anthropic_provider
from protocols._anthropic_sdk import AnthropicSDKProvider
from runtime.emulator import (
    REDACTED,
    EmulatorConfig,
    EmulatorHandle,
    ProviderConfig,
    input_tokens,
    json_tokens,
    key_fingerprint,
    reply_text,
    reply_words,
    sample_json,
    serve_emulator,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "anthropic"
MODEL = "claude-haiku-4-5"
KEY = "sk-ant-api03-test-key"
TRANSPORTS = ("native", "sdk")
PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "maximum": 7}},
        "required": ["city"],
    },
}
codec = AnthropicCodec()


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def req(messages: list[Any], *, stream: bool = False, **options: Any) -> Request:
    return build_request(
        messages, options, request_id="t", now=0.0, default_timeout=30.0, stream=stream
    )


def hello(text: str = "hello there", **options: Any) -> Request:
    return req([{"role": "user", "content": text}], **options)


Connect = Callable[..., LLMProvider]


def make_provider(
    kind: str,
    base_url: str,
    *,
    api_key: str | None = KEY,
    fault: str | None = None,
    client: Any = None,
) -> LLMProvider:
    headers = {"x-emulator-fault": fault} if fault else None
    if kind == "native":
        return anthropic_provider(
            name="claude",
            base_url=base_url,
            api_key=api_key,
            model=MODEL,
            extra_headers=headers,
            client=client,
        )
    return AnthropicSDKProvider(
        name="claude",
        base_url=base_url,
        api_key=api_key,
        model=MODEL,
        extra_headers=headers,
        http_client=client,
    )


async def outcome(
    provider: LLMProvider, request: Request, op: str
) -> tuple[list[object], SwitchyardError | None]:
    """What a call gave: the response or the events, then the typed error that ended it."""
    items: list[object] = []
    try:
        if op == "complete":
            items.append(await provider.complete(request))
        else:
            async for event in provider.stream(request):
                items.append(event)
    except SwitchyardError as exc:
        return items, exc
    return items, None


def decode_stream(raw: bytes, chunk: int) -> list[StreamEvent]:
    sse = SSEDecoder()
    decoder = codec.stream_decoder(provider="claude", model=MODEL)
    events: list[StreamEvent] = []
    for i in range(0, len(raw), chunk):
        for event in sse.feed(raw[i : i + chunk]):
            events.extend(decoder.feed(event))
    for event in sse.close():
        events.extend(decoder.feed(event))
    assert not sse.truncated
    events.extend(decoder.close())
    return events


def text_of(events: list[Any]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


@pytest.fixture
async def emulator(nursery: trio.Nursery) -> EmulatorHandle:
    handle: EmulatorHandle = await nursery.start(serve_emulator)
    return handle


@pytest.fixture
async def connect(emulator: EmulatorHandle) -> AsyncIterator[Connect]:
    """Makes providers on the emulator; their HTTP clients are closed after the test."""
    opened: list[Any] = []

    def factory(kind: str, target: EmulatorHandle = emulator, **options: Any) -> LLMProvider:
        # Loopback is plain HTTP: without TLS setup a client takes ms to build, not 50+.
        module: Any = httpx if kind == "native" else httpx2
        client = module.AsyncClient(timeout=None, verify=False, trust_env=False)
        opened.append(client)
        return make_provider(kind, target.base_url, client=client, **options)

    yield factory
    for client in opened:
        await client.aclose()


@pytest.fixture(params=TRANSPORTS)
def provider(request: pytest.FixtureRequest, connect: Connect) -> LLMProvider:
    return connect(request.param)


# --- recorded API shapes -----------------------------------------------------------------


def usage(i: int, o: int, *, read: int = 0, write: int = 0, reasoning: int = 0) -> Usage:
    return Usage(
        input_tokens=i,
        output_tokens=o,
        cache_read_tokens=read,
        cache_write_tokens=write,
        reasoning_tokens=reasoning,
    )


SONNET = "claude-sonnet-4-5-20250929"
HAIKU = "claude-haiku-4-5-20251001"
MESSAGES = {
    "message_text.json": (
        (TextPart("Hello! I'm Claude. How can I help you today?"),),
        "stop",
        usage(12, 16),
        SONNET,
    ),
    "message_tool_use.json": (
        (
            TextPart("I'll check the current weather in both cities for you."),
            ToolCallPart(
                "toolu_01A09q90qw90lq917835lq9",
                "get_weather",
                {"location": "San Francisco, CA", "unit": "celsius"},
            ),
            ToolCallPart(
                "toolu_01B18r01rx01mr028946mr0",
                "get_weather",
                {"location": "New York, NY", "unit": "celsius"},
            ),
        ),
        "tool_calls",
        usage(484, 132),
        SONNET,
    ),
    "message_image.json": (
        (
            TextPart(
                "This image shows an ant, specifically a close-up view of an ant on a leaf. "
                "The ant has a dark, segmented body with six legs and a pair of antennae."
            ),
        ),
        "stop",
        usage(1551, 41),
        SONNET,
    ),
    # input = 14 uncached + 248 written to the cache + 2187 read from it
    "message_cache.json": (
        (
            TextPart(
                "Based on the contract you shared, the termination clause requires 30 days' "
                "written notice."
            ),
        ),
        "stop",
        usage(2449, 23, read=2187, write=248),
        SONNET,
    ),
    "message_thinking.json": (
        (TextPart("Yes, 1,000,003 is a prime number."),),
        "stop",
        usage(41, 1120, reasoning=1094),
        SONNET,
    ),
    "message_max_tokens.json": (
        (TextPart("Once upon a time, in a kingdom by the"),),
        "length",
        usage(18, 10),
        HAIKU,
    ),
    "message_stop_sequence.json": ((TextPart("1, 2, 3, 4, "),), "stop", usage(21, 12), HAIKU),
    "message_refusal.json": ((), "content_filter", usage(30, 2), SONNET),
}


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_recorded_messages_decode_to_the_normalised_form(name: str) -> None:
    content, finish, expected_usage, model = MESSAGES[name]
    response = codec.decode(fixture(name), provider="claude")
    assert response.content == content
    assert response.finish_reason == finish
    assert response.usage == expected_usage
    assert (response.model, response.provider) == (model, "claude")


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
    ],
)
def test_every_stop_reason_maps_to_a_finish_reason(stop_reason: str, finish: str) -> None:
    body = msgspec.json.encode({"content": [], "model": MODEL, "stop_reason": stop_reason})
    assert codec.decode(body, provider="claude").finish_reason == finish


STREAMS: dict[str, list[StreamEvent]] = {
    "stream_text.sse": [
        TextDelta("Hello"),
        TextDelta("! How can I help?"),
        UsageEvent(usage(25, 15)),
        Finish("stop", model=SONNET),
    ],
    "stream_tool_use.sse": [
        TextDelta("Okay"),
        TextDelta(", let's check the weather for San Francisco, CA:"),
        ToolCallDelta(0, id="toolu_01T1x1fJ34qAmk2tNTrN7Up6", name="get_weather"),
        ToolCallDelta(0, '{"location":'),
        ToolCallDelta(0, ' "San Francisco, CA"}'),
        ToolCallDelta(1, id="toolu_01U2y2gK45rBnl3uOUsO8Vq7", name="get_time"),
        ToolCallDelta(1, '{"timezone": "America/Los_Angeles"}'),
        UsageEvent(usage(2272, 89, read=1800)),
        Finish("tool_calls", model=SONNET),
    ],
    "stream_thinking.sse": [
        TextDelta("27 * 453 = 12,231"),
        UsageEvent(usage(85, 322, reasoning=298)),
        Finish("stop", model=SONNET),
    ],
}


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_recorded_streams_decode_in_any_chunking(name: str) -> None:
    raw = fixture(name)
    for chunk in (len(raw), 1, 7):
        assert decode_stream(raw, chunk) == STREAMS[name]


def test_recorded_in_stream_error_raises_the_typed_error() -> None:
    with pytest.raises(Overloaded) as caught:
        decode_stream(fixture("stream_error.sse"), 64)
    assert caught.value.status == 529 and caught.value.provider == "claude"


@pytest.mark.parametrize(
    ("kind", "message", "expected", "status"),
    [
        ("overloaded_error", "Overloaded", Overloaded, 529),
        ("api_error", "Internal server error", ServerError, 500),
        ("rate_limit_error", "slow down", RateLimited, 429),
        (
            "invalid_request_error",
            "Output blocked by content filtering policy",
            ContentFiltered,
            400,
        ),
        ("timeout_error", "Request timeout", Timeout, 504),
        ("something_new_error", "?", ServerError, 500),
    ],
)
def test_in_stream_error_events_are_typed(
    kind: str, message: str, expected: type[SwitchyardError], status: int
) -> None:
    data = msgspec.json.encode({"type": "error", "error": {"type": kind, "message": message}})
    decoder = codec.stream_decoder(provider="claude", model=MODEL)
    with pytest.raises(expected) as caught:
        decoder.feed(ServerSentEvent("error", data.decode()))
    assert caught.value.status == status
    # The SDK transport's way in gives the same error.
    sdk_error = codec.stream_error(msgspec.json.decode(data), provider="claude")
    assert (type(sdk_error), sdk_error.status) == (expected, status)


@pytest.mark.parametrize(
    ("name", "status", "headers", "expected", "retry_after"),
    [
        ("error_invalid_request.json", 400, {}, InvalidRequest, None),
        ("error_context_length.json", 400, {}, ContextLengthExceeded, None),
        ("error_context_limit.json", 400, {}, ContextLengthExceeded, None),
        ("error_content_filter.json", 400, {}, ContentFiltered, None),
        ("error_authentication.json", 401, {}, AuthenticationError, None),
        ("error_billing.json", 402, {}, PermissionDenied, None),
        ("error_permission.json", 403, {}, PermissionDenied, None),
        ("error_not_found.json", 404, {}, NotFound, None),
        ("error_request_too_large.json", 413, {}, ContextLengthExceeded, None),
        ("error_rate_limit.json", 429, {"retry-after": "17"}, RateLimited, 17.0),
        ("error_rate_limit.json", 429, {"retry-after-ms": "1500"}, RateLimited, 1.5),
        ("error_api.json", 500, {}, ServerError, None),
        ("error_timeout.json", 504, {}, Timeout, None),
        ("error_overloaded.json", 529, {}, Overloaded, None),
    ],
)
def test_recorded_error_bodies_map_to_typed_errors(
    name: str,
    status: int,
    headers: dict[str, str],
    expected: type[SwitchyardError],
    retry_after: float | None,
) -> None:
    error = codec.error(status, headers, fixture(name), provider="claude")
    assert type(error) is expected
    assert (error.status, error.provider) == (status, "claude")
    assert getattr(error, "retry_after", None) == retry_after


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (429, b"", RateLimited),
        (529, b"<html>Overloaded</html>", Overloaded),
        (502, b"<html><body>502 Bad Gateway</body></html>", ServerError),
        (401, b'{"type": "error"}', AuthenticationError),
        (400, b'{"error": {"type": 5}}', InvalidRequest),
        (413, b"request entity too large", ContextLengthExceeded),
    ],
)
def test_malformed_error_bodies_are_typed_by_status(
    status: int, body: bytes, expected: type[SwitchyardError]
) -> None:
    error = codec.error(status, {"retry-after": "3"}, body, provider="claude")
    assert type(error) is expected and error.status == status


def test_an_image_request_encodes_as_the_recorded_body() -> None:
    request = req(
        [
            {"role": "system", "content": "You describe images for a photo archive."},
            Message(
                "user",
                (
                    ImagePart(data=PNG, media_type="image/png"),
                    ImagePart(
                        url="https://upload.wikimedia.org/wikipedia/commons/a/a7/Camponotus_flavomarginatus_ant.jpg"
                    ),
                    TextPart("Describe these two images."),
                ),
            ),
        ]
    )
    body = msgspec.json.decode(codec.encode(request, model="claude-sonnet-4-5", stream=False))
    assert body == msgspec.json.decode(fixture("request_image.json"))


def test_a_data_url_image_is_sent_as_base64() -> None:
    part = ImagePart(url=f"data:image/webp;base64,{PNG}")
    body = codec.payload(req([Message("user", (part,))]), model=MODEL, stream=False)
    source = body["messages"][0]["content"][0]["source"]
    assert source == {"type": "base64", "media_type": "image/webp", "data": PNG}


# --- against the emulator ----------------------------------------------------------------


async def test_complete_gives_text_usage_and_finish(provider: LLMProvider) -> None:
    request = req([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    response = await provider.complete(request)
    assert response.content == (TextPart(reply_text("hi")),)
    assert response.finish_reason == "stop"
    assert response.usage == usage(
        input_tokens(len("Be brief.") + len("hi")), len(reply_words("hi"))
    )
    assert (response.provider, response.model) == ("claude", MODEL)


async def test_stream_gives_deltas_one_usage_and_one_finish(provider: LLMProvider) -> None:
    events = [e async for e in provider.stream(hello())]
    assert text_of(events) == reply_text("hello there")
    assert sum(isinstance(e, TextDelta) for e in events) == len(reply_words("hello there"))
    assert events[-2:] == [
        UsageEvent(usage(input_tokens(len("hello there")), len(reply_words("hello there")))),
        Finish("stop", model=MODEL),
    ]


async def test_tool_calls_complete_and_stream(provider: LLMProvider) -> None:
    request = hello("what is the weather in Paris?", tools=[WEATHER], tool_choice="required")
    arguments = sample_json(WEATHER["parameters"], "what is the weather in Paris?\0get_weather")
    response = await provider.complete(request)
    (call,) = response.content
    assert isinstance(call, ToolCallPart)
    assert (call.name, call.arguments, response.finish_reason) == (
        "get_weather",
        arguments,
        "tool_calls",
    )
    assert call.id.startswith("toolu_")
    events = [e async for e in provider.stream(request)]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert deltas[0] == ToolCallDelta(0, id=call.id, name="get_weather")
    assert {d.index for d in deltas} == {0}
    assert msgspec.json.decode("".join(d.arguments_delta for d in deltas)) == arguments
    json_text = msgspec.json.encode(arguments).decode()
    assert events[-1] == Finish("tool_calls", model=MODEL)
    assert events[-2] == UsageEvent(response.usage)
    assert response.usage.output_tokens == json_tokens(json_text)


async def test_max_tokens_cuts_the_reply_with_length(provider: LLMProvider) -> None:
    request = hello(max_tokens=5)
    response = await provider.complete(request)
    assert response.text == " ".join(reply_words("hello there")[:5])
    assert (response.finish_reason, response.usage.output_tokens) == ("length", 5)
    events = [e async for e in provider.stream(request)]
    assert text_of(events) == response.text
    assert events[-1] == Finish("length", model=MODEL)


async def test_a_tool_result_round_trip_answers_in_text(provider: LLMProvider) -> None:
    request = req(
        [
            {"role": "user", "content": "weather in Oslo?"},
            Message("assistant", (ToolCallPart("toolu_1", "get_weather", {"city": "Oslo"}),)),
            Message("tool", (ToolResultPart("toolu_1", "-3C, snow"),)),
        ],
        tools=[WEATHER],
    )
    response = await provider.complete(request)
    assert response.content == (TextPart(reply_text("-3C, snow")),)


SCENARIOS: dict[str, Request] = {
    "text": hello(),
    "tool": hello("use a tool please", tools=[WEATHER]),
    "length": hello(max_tokens=3),
    "structured": hello(
        "Summarise",
        response_format={
            "name": "summary",
            "schema": {
                "type": "object",
                "properties": {"title": {"type": "string"}, "score": {"type": "integer"}},
            },
        },
    ),
    "sampling": req(
        [{"role": "system", "content": "terse"}, {"role": "user", "content": "go"}],
        temperature=0.3,
        stop=["END"],
    ),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
async def test_conformance_both_transports_give_identical_results(
    emulator: EmulatorHandle, connect: Connect, scenario: str
) -> None:
    request = SCENARIOS[scenario]
    results = {}
    for kind in TRANSPORTS:
        provider = connect(kind)
        results[kind] = (
            await provider.complete(request),
            [e async for e in provider.stream(request)],
        )
    assert results["native"] == results["sdk"]
    response, events = results["native"]
    assert events[-1] == Finish(response.finish_reason, model=MODEL)
    assert events[-2] == UsageEvent(response.usage)
    assert text_of(events) == response.text
    bodies = [r.body for r in emulator.requests]
    assert bodies[0] == bodies[2] and bodies[1] == bodies[3]  # same wire request too


FAULTS: list[tuple[str, str, type[SwitchyardError] | None, int | None, float | None]] = [
    ("status=429,retry_after=2", "complete", RateLimited, 429, 2.0),
    ("status=429,retry_after=2", "stream", RateLimited, 429, 2.0),
    ("status=429,retry_after_date=30", "complete", RateLimited, 429, 30.0),
    ("status=429,retry_after_ms=250", "stream", RateLimited, 429, 0.25),
    ("status=500", "complete", ServerError, 500, None),
    ("status=503", "stream", ServerError, 503, None),
    ("status=529", "complete", Overloaded, 529, None),
    ("error=overloaded", "stream", Overloaded, 529, None),
    ("status=401", "complete", AuthenticationError, 401, None),
    ("error=context_length", "complete", ContextLengthExceeded, 400, None),
    ("error=context_length", "stream", ContextLengthExceeded, 400, None),
    ("malformed=1", "complete", TransportError, None, None),
    ("malformed=6", "stream", TransportError, None, None),
    ("error_event=6", "stream", Overloaded, 529, None),
    ("error_event=6,error=server", "stream", ServerError, 500, None),
    ("disconnect=6", "stream", TransportError, None, None),
    ("disconnect=1", "complete", TransportError, None, None),
    ("truncate=8", "stream", None, None, None),
]


@pytest.mark.parametrize(("fault", "op", "expected", "status", "retry_after"), FAULTS)
async def test_conformance_both_transports_raise_identical_typed_errors(
    connect: Connect,
    fault: str,
    op: str,
    expected: type[SwitchyardError] | None,
    status: int | None,
    retry_after: float | None,
) -> None:
    results = {}
    for kind in TRANSPORTS:
        results[kind] = await outcome(connect(kind, fault=fault), hello(max_tokens=30), op)
    (native_items, native_error), (sdk_items, sdk_error) = results["native"], results["sdk"]
    assert native_items == sdk_items
    assert not any(isinstance(e, Finish) for e in native_items)
    assert type(native_error) is type(sdk_error)
    if expected is None:  # the stream was cut without message_stop: no error, no Finish
        assert native_error is None and text_of(native_items)
        return
    assert isinstance(native_error, expected) and isinstance(sdk_error, expected)
    assert native_error.status == sdk_error.status == status
    assert native_error.provider == sdk_error.provider == "claude"
    if retry_after is not None:
        native_wait = getattr(native_error, "retry_after", None)
        sdk_wait = getattr(sdk_error, "retry_after", None)
        assert native_wait == pytest.approx(retry_after, abs=1.5)
        assert sdk_wait == pytest.approx(native_wait, abs=1.0)
    if fault.startswith(("error_event", "malformed", "disconnect")) and op == "stream":
        assert text_of(native_items)  # content had been delivered when it broke


async def test_conformance_rpm_limit_gives_the_same_rate_limited(
    emulator: EmulatorHandle, connect: Connect
) -> None:
    errors = []
    for kind in TRANSPORTS:
        emulator.set_limits("anthropic", rpm=1)
        provider = connect(kind)
        await provider.complete(hello())
        with pytest.raises(RateLimited) as caught:
            await provider.complete(hello())
        errors.append(caught.value)
    assert [(e.status, e.retry_after) for e in errors] == [(429, 60.0), (429, 60.0)]


async def test_what_reached_the_provider(provider: LLMProvider, emulator: EmulatorHandle) -> None:
    schema = {"type": "object", "properties": {"summary": {"type": "string"}}}
    request = req(
        [
            {"role": "system", "content": "You are terse."},
            Message(
                "user",
                (
                    TextPart("Look at this"),
                    ImagePart(data=PNG, media_type="image/png"),
                    ImagePart(url="https://example.com/cat.jpg"),
                ),
            ),
            Message(
                "assistant",
                (
                    TextPart("Let me check the weather."),
                    ToolCallPart("toolu_1", "get_weather", {"city": "Paris"}),
                ),
            ),
            Message("tool", (ToolResultPart("toolu_1", "18C and sunny"),)),
            {"role": "user", "content": "Thanks. Summarise as JSON."},
            {"role": "system", "content": "Answer in English."},
        ],
        tools=[WEATHER],
        tool_choice="auto",
        stop=["END"],
        response_format={"name": "summary", "schema": schema},
        max_tokens=200,
        temperature=0.2,
    )
    response = await provider.complete(request)
    (record,) = emulator.requests
    system = "You are terse.\n\nAnswer in English."
    assert record.body == {
        "model": MODEL,
        "max_tokens": 200,
        "system": system,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Look at this"},
                    {
                        "type": "image",
                        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                    },
                    {
                        "type": "image",
                        "source": {"type": "url", "url": "https://example.com/cat.jpg"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me check the weather."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "18C and sunny"},
                    {"type": "text", "text": "Thanks. Summarise as JSON."},
                ],
            },
        ],
        "temperature": 0.2,
        "stop_sequences": ["END"],
        "tools": [
            {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "input_schema": WEATHER["parameters"],
            }
        ],
        "tool_choice": {"type": "auto"},
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
    }
    assert record.path == "/v1/messages"
    assert record.headers["anthropic-version"] == "2023-06-01"
    assert record.api_key_sha256 == key_fingerprint(KEY)
    # The native transport sends x-api-key; this SDK version sends the key as a bearer token.
    auth = "authorization" if isinstance(provider, AnthropicSDKProvider) else "x-api-key"
    assert record.headers[auth] == REDACTED
    texts = [system, "Look at this", "Let me check the weather.", '{"city":"Paris"}']
    texts += ["18C and sunny", "Thanks. Summarise as JSON."]
    assert response.usage.input_tokens == input_tokens(sum(map(len, texts)))
    seed = "18C and sunny\nThanks. Summarise as JSON."  # the last turn's texts
    assert response.text == msgspec.json.encode(sample_json(schema, seed)).decode()


async def test_rate_limit_headers_reach_the_listener(
    provider: LLMProvider, emulator: EmulatorHandle
) -> None:
    emulator.set_limits("anthropic", rpm=50, tpm=100_000)
    seen: list[RateLimitInfo] = []
    provider.listen_rate_limits(seen.append)
    response = await provider.complete(hello())
    _ = [e async for e in provider.stream(hello())]
    assert [(i.remaining_requests, i.remaining_tokens) for i in seen] == [
        (49, 100_000 - response.usage.total_tokens),
        (48, 100_000 - 2 * response.usage.total_tokens),
    ]
    assert all(0 < (i.reset_requests_s or 0) <= 61 for i in seen)


BAD_INPUTS: list[tuple[str, list[Any], dict[str, Any], str]] = [
    (
        "image-scheme",
        [Message("user", (TextPart("see"), ImagePart(url="gs://bucket/cat.png")))],
        {},
        "messages[0].content[1].url",
    ),
    (
        "image-media-type",
        [Message("user", (ImagePart(data=PNG, media_type="image/bmp"),))],
        {},
        "messages[0].content[0].media_type",
    ),
    (
        "image-in-assistant",
        [
            {"role": "user", "content": "draw"},
            Message("assistant", (ImagePart(data=PNG, media_type="image/png"),)),
        ],
        {},
        "messages[1].content[0]",
    ),
    (
        "image-in-system",
        [
            Message("system", (TextPart("x"), ImagePart(data=PNG, media_type="image/png"))),
            {"role": "user", "content": "hi"},
        ],
        {},
        "messages[0].content[1]",
    ),
    ("whitespace-stop", [{"role": "user", "content": "hi"}], {"stop": ["ok", "\n"]}, "stop[1]"),
    ("temperature", [{"role": "user", "content": "hi"}], {"temperature": 1.5}, "temperature"),
    (
        "temperature-and-top-p",
        [{"role": "user", "content": "hi"}],
        {"temperature": 0.5, "top_p": 0.9},
        "top_p",
    ),
    (
        "tool-name",
        [{"role": "user", "content": "hi"}],
        {"tools": [{"name": "weather.get"}]},
        "tools[0].name",
    ),
    (
        "unknown-named-tool",
        [{"role": "user", "content": "hi"}],
        {"tools": [WEATHER], "tool_choice": {"name": "get_time"}},
        "tool_choice",
    ),
    (
        "required-without-tools",
        [{"role": "user", "content": "hi"}],
        {"tool_choice": "required"},
        "tool_choice",
    ),
    (
        "tool-call-unanswered",
        [
            {"role": "user", "content": "weather?"},
            Message("assistant", (ToolCallPart("toolu_1", "get_weather", {}),)),
            {"role": "user", "content": "never mind"},
        ],
        {"tools": [WEATHER]},
        "messages[1].content[0]",
    ),
    (
        "tool-result-late",
        [
            {"role": "user", "content": "weather?"},
            Message("assistant", (ToolCallPart("toolu_1", "get_weather", {}),)),
            Message("tool", (ToolResultPart("toolu_1", "sunny"),)),
            {"role": "assistant", "content": "It is sunny."},
            Message("tool", (ToolResultPart("toolu_1", "sunny"),)),
        ],
        {"tools": [WEATHER]},
        "messages[4].content[0].tool_call_id",
    ),
    ("system-only", [{"role": "system", "content": "be nice"}], {}, "messages"),
    ("whitespace-turn", [{"role": "user", "content": "  \n"}], {}, "messages[0].content"),
]


@pytest.mark.parametrize(
    ("messages", "options", "field"),
    [case[1:] for case in BAD_INPUTS],
    ids=[case[0] for case in BAD_INPUTS],
)
async def test_bad_input_is_refused_before_any_http_call(
    emulator: EmulatorHandle,
    connect: Connect,
    messages: list[Any],
    options: dict[str, Any],
    field: str,
) -> None:
    for kind in TRANSPORTS:
        provider = connect(kind)
        for stream in (False, True):
            request = req(messages, stream=stream, **options)
            with pytest.raises(InvalidRequest) as caught:
                if stream:
                    _ = [e async for e in provider.stream(request)]
                else:
                    await provider.complete(request)
            assert caught.value.field == field
    assert emulator.requests == []


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_cancelling_a_stream_closes_the_upstream_request(
    emulator: EmulatorHandle, kind: str
) -> None:
    # About 27 frames 200 ms apart: the whole stream would take over 5 s.
    provider = make_provider(kind, emulator.base_url, fault="drip=0.2")
    events: list[object] = []
    started = time.monotonic()
    with trio.CancelScope() as scope:
        async for event in provider.stream(hello(max_tokens=20)):
            events.append(event)
            if len(events) == 3:
                scope.cancel()
    assert scope.cancelled_caught
    assert time.monotonic() - started < 2.0  # three frames, not the whole stream
    assert len(events) == 3 and all(isinstance(e, TextDelta) for e in events)
    # The half-read connection was closed, not handed back to the pool for reuse. The pool is
    # private to httpx/httpx2; its connection list is the only way to see this.
    http: Any = getattr(provider, "_http", None)
    if http is not None:
        assert http._transport._pool.connections == []
    else:
        assert provider._sender.connections == []  # type: ignore[attr-defined]
    await provider.aclose()


async def test_sdk_transport_runs_under_trio_and_closes_cleanly(emulator: EmulatorHandle) -> None:
    provider = AnthropicSDKProvider(
        name="claude", base_url=emulator.base_url, api_key=KEY, model=MODEL
    )
    assert (await provider.complete(hello())).text == reply_text("hello there")
    assert [e async for e in provider.stream(hello())][-1] == Finish("stop", model=MODEL)
    http = provider._http
    assert http is not None and not http.is_closed
    await provider.aclose()
    assert http.is_closed


async def test_keys_stay_out_of_reprs_and_errors(nursery: trio.Nursery, connect: Connect) -> None:
    config = EmulatorConfig(anthropic=ProviderConfig(valid_keys=frozenset({"another-key"})))
    strict: EmulatorHandle = await nursery.start(serve_emulator, config)
    for kind in TRANSPORTS:
        provider = connect(kind, strict)
        with pytest.raises(AuthenticationError) as caught:
            await provider.complete(hello())
        for text in (
            repr(provider),
            str(provider),
            repr(caught.value),
            str(caught.value.to_dict()),
        ):
            assert KEY not in text


async def test_no_key_sends_no_key_on_both_transports(
    emulator: EmulatorHandle, connect: Connect
) -> None:
    for kind in TRANSPORTS:
        with pytest.raises(AuthenticationError):
            await connect(kind, api_key=None).complete(hello())
    assert [r.api_key_sha256 for r in emulator.requests] == [None, None]


# --- the SDK transport with Bedrock and Vertex clients (fake credentials, mock transport) -----


class _Recorder:
    def __init__(self) -> None:
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        if request.url.path.endswith(":streamRawPredict"):
            sse = {"content-type": "text/event-stream"}
            return httpx2.Response(200, headers=sse, content=fixture("stream_text.sse"))
        json = {"content-type": "application/json"}
        return httpx2.Response(200, headers=json, content=fixture("message_text.json"))


async def test_sdk_transport_wires_a_bedrock_client() -> None:
    recorder = _Recorder()
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(recorder))
    bedrock = anthropic.AsyncAnthropicBedrock(
        api_key="fake-bedrock-token", aws_region="us-east-1", http_client=http
    )
    provider = AnthropicSDKProvider(name="claude", model=MODEL, client=bedrock)
    response = await provider.complete(hello())
    assert response == codec.decode(fixture("message_text.json"), provider="claude")
    (sent,) = recorder.requests
    assert sent.url.host == "bedrock-runtime.us-east-1.amazonaws.com"
    assert sent.url.path == f"/model/{MODEL}/invoke"
    assert sent.headers["authorization"] == "Bearer fake-bedrock-token"
    body = msgspec.json.decode(sent.content)
    assert "model" not in body and "anthropic_version" in body
    assert body["messages"] == codec.payload(hello(), model=MODEL, stream=False)["messages"]
    await provider.aclose()
    assert not http.is_closed  # a given client stays its owner's
    await http.aclose()


async def test_bedrock_streaming_without_botocore_is_a_typed_error(monkeypatch) -> None:
    # Whether or not botocore is installed here, the transport must cope without it.
    for name in [m for m in sys.modules if m == "botocore" or m.startswith("botocore.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "botocore", None)
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(_Recorder()))
    bedrock = anthropic.AsyncAnthropicBedrock(
        api_key="fake-bedrock-token", aws_region="us-east-1", http_client=http
    )
    provider = AnthropicSDKProvider(name="claude", model=MODEL, client=bedrock)
    with pytest.raises(ProviderUnavailable, match="botocore"):
        _ = [e async for e in provider.stream(hello())]
    await http.aclose()


async def test_sdk_transport_wires_a_vertex_client() -> None:
    recorder = _Recorder()
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(recorder))
    vertex = anthropic.AsyncAnthropicVertex(
        region="us-east5", project_id="fake-project", access_token="fake-token", http_client=http
    )
    provider = AnthropicSDKProvider(name="claude", model=MODEL, client=vertex)
    response = await provider.complete(hello())
    assert response == codec.decode(fixture("message_text.json"), provider="claude")
    events = [e async for e in provider.stream(hello())]
    assert events == STREAMS["stream_text.sse"]
    prefix = f"/v1/projects/fake-project/locations/us-east5/publishers/anthropic/models/{MODEL}"
    assert [r.url.path for r in recorder.requests] == [
        f"{prefix}:rawPredict",
        f"{prefix}:streamRawPredict",
    ]
    assert all(r.headers["authorization"] == "Bearer fake-token" for r in recorder.requests)
    await provider.aclose()
    await http.aclose()


# --- the decode path never crashes --------------------------------------------------------

TEXT = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | TEXT
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=6,
)
EVENT_TYPES = [
    "message_start",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "ping",
    "error",
]
BLOCK = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "tool_use", "thinking", "image"])},
    optional={"text": JSON, "id": JSON, "name": JSON, "input": JSON},
)
EVENT = st.fixed_dictionaries(
    {"type": st.sampled_from(EVENT_TYPES)},
    optional={
        "index": st.integers(-1, 3) | JSON,
        "content_block": BLOCK | JSON,
        "delta": st.fixed_dictionaries(
            {"type": st.sampled_from(["text_delta", "input_json_delta", "thinking_delta"])},
            optional={"text": JSON, "partial_json": JSON, "stop_reason": JSON},
        )
        | JSON,
        "message": st.fixed_dictionaries({"content": st.lists(BLOCK, max_size=2)}) | JSON,
        "usage": st.dictionaries(st.sampled_from(["input_tokens", "output_tokens"]), JSON),
        "error": st.fixed_dictionaries({"type": JSON, "message": JSON}) | JSON,
    },
)
FUZZ = settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(body=st.binary(max_size=300) | JSON.map(msgspec.json.encode))
def test_fuzz_complete_body_raises_only_typed_errors(body: bytes) -> None:
    try:
        assert isinstance(codec.decode(body, provider="claude"), Response)
    except TransportError:
        pass


@FUZZ
@given(message=st.fixed_dictionaries({"content": st.lists(BLOCK | JSON, max_size=3)}) | JSON)
def test_fuzz_message_shapes_decode_alike_on_both_paths(message: Any) -> None:
    results: list[object] = []
    for decode in (
        lambda: codec.decode(msgspec.json.encode(message), provider="claude"),
        lambda: codec.decode_object(message, provider="claude"),
    ):
        try:
            results.append(decode())
        except TransportError:
            results.append(TransportError)
    assert results[0] == results[1]


@FUZZ
@given(status=st.integers(100, 599), body=st.binary(max_size=200) | JSON.map(msgspec.json.encode))
def test_fuzz_error_bodies_always_give_a_typed_error(status: int, body: bytes) -> None:
    assert isinstance(codec.error(status, {}, body, provider="claude"), SwitchyardError)


@FUZZ
@given(chunks=st.lists(st.binary(max_size=60), max_size=8))
def test_fuzz_stream_bytes_raise_only_typed_errors(chunks: list[bytes]) -> None:
    sse = SSEDecoder()
    decoder = codec.stream_decoder(provider="claude", model=MODEL)
    try:
        for chunk in chunks:
            for event in sse.feed(b"event: x\ndata: " + chunk + b"\n\n" + chunk):
                decoder.feed(event)
    except SwitchyardError:
        pass


@settings(FUZZ, max_examples=60)
@given(events=st.lists(EVENT, max_size=8))
def test_fuzz_stream_events_decode_alike_on_both_paths(events: list[dict[str, Any]]) -> None:
    outcomes: list[object] = []
    for feed in (_feed_wire, _feed_objects):
        decoder = codec.stream_decoder(provider="claude", model=MODEL)
        produced: list[object] = []
        try:
            for event in events:
                produced.extend(feed(decoder, event))
                if produced and isinstance(produced[-1], Finish):
                    break  # both transports stop reading at the end marker
        except SwitchyardError as exc:
            produced.append((type(exc), exc.status))
        outcomes.append(produced)
    assert outcomes[0] == outcomes[1]


def _feed_wire(decoder: Any, event: dict[str, Any]) -> list[StreamEvent]:
    data = msgspec.json.encode(event).decode()
    result: list[StreamEvent] = decoder.feed(ServerSentEvent(str(event["type"]), data))
    return result


def _feed_objects(decoder: Any, event: dict[str, Any]) -> list[StreamEvent]:
    # The SDK raises an in-stream error itself; its transport hands the body to the codec.
    if event["type"] == "error":
        raise codec.stream_error(event, provider="claude")
    result: list[StreamEvent] = decoder.feed_object(event)
    return result
