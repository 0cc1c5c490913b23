"""Gemini generateContent: the codec on recorded wire bodies, and the native and SDK
transports against the HTTP emulator (conformance, faults, what reached the API)."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import msgspec
import pytest
import trio
from hypothesis import given, settings
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
    NamedToolChoice,
    NotFound,
    Overloaded,
    PermissionDenied,
    RateLimited,
    RateLimitInfo,
    Request,
    RequestOptions,
    Response,
    ResponseFormat,
    ServerError,
    ServerSentEvent,
    SSEDecoder,
    StreamEvent,
    SwitchyardError,
    TextDelta,
    TextPart,
    Timeout,
    Tool,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
    Usage,
    UsageEvent,
)
from protocols._gemini import GeminiCodec, gemini_provider
from protocols._gemini_sdk import GeminiSDKProvider
from runtime.emulator import (
    REDACTED,
    Emulator,
    EmulatorConfig,
    EmulatorHandle,
    json_fragments,
    key_fingerprint,
    reply_words,
    sample_json,
    serve_emulator,
)
from runtime.emulator import input_tokens as emulated_input_tokens

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "gemini"
MODEL = "gemini-2.5-flash"
KEY = "AIza-test-key-0123456789"
Transport = Literal["native", "sdk"]
TRANSPORTS: tuple[Transport, ...] = ("native", "sdk")
WEATHER = Tool(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "maximum": 7}},
        "required": ["city"],
    },
)
PNG = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQ"
    "DwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def request(*messages: Message, stream: bool = False, **options: Any) -> Request:
    return Request(
        id="req-1",
        messages=messages,
        options=RequestOptions(**options),
        deadline=1e9,
        estimated_tokens=100,
        stream=stream,
    )


def user(text: str) -> Message:
    return Message("user", text)


def wire(name: str) -> bytes:
    """A recorded wire body from tests/fixtures/gemini."""
    return (FIXTURES / name).read_bytes()


def provider_for(transport: Transport, base_url: str, **kwargs: Any) -> LLMProvider:
    if transport == "native":
        return gemini_provider(name="gemini", base_url=base_url, api_key=KEY, model=MODEL, **kwargs)
    return GeminiSDKProvider(name="gemini", base_url=base_url, api_key=KEY, model=MODEL, **kwargs)


@asynccontextmanager
async def opened(transport: Transport, base_url: str, **kwargs: Any) -> AsyncIterator[LLMProvider]:
    provider = provider_for(transport, base_url, **kwargs)
    try:
        yield provider
    finally:
        await provider.aclose()


@pytest.fixture
async def emulator(nursery: trio.Nursery) -> EmulatorHandle:
    handle: EmulatorHandle = await nursery.start(serve_emulator)
    return handle


Outcome = Response | list[StreamEvent] | tuple[str, int | None, float | None]


def described(error: SwitchyardError) -> tuple[str, int | None, float | None]:
    """What conformance compares of an error: its type, status and retry_after."""
    return type(error).__name__, error.status, getattr(error, "retry_after", None)


async def outcome(provider: LLMProvider, req: Request) -> Outcome:
    """The answer, the whole event list, or (error type, status, retry_after)."""
    try:
        if req.stream:
            events: list[StreamEvent] = []
            async for event in provider.stream(req):
                assert not isinstance(event, str)
                events.append(event)
            return events
        return await provider.complete(req)
    except SwitchyardError as error:
        return described(error)


def assemble(events: list[StreamEvent]) -> tuple[str, list[ToolCallPart], Usage | None, Finish]:
    """Check the stream's shape (one UsageEvent, then exactly one Finish, last) and sum it up."""
    finishes = [e for e in events if isinstance(e, Finish)]
    assert len(finishes) == 1 and events[-1] is finishes[0], events
    usages = [e for e in events if isinstance(e, UsageEvent)]
    assert len(usages) <= 1
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    calls = [
        ToolCallPart(
            id=e.id or "", name=e.name or "", arguments=msgspec.json.decode(e.arguments_delta)
        )
        for e in events
        if isinstance(e, ToolCallDelta)
    ]
    return text, calls, usages[0].usage if usages else None, finishes[0]


def compact(value: Any) -> str:
    """JSON as the emulator writes it (compact, keys in order)."""
    return msgspec.json.encode(value).decode()


def words(seed: str, limit: int | None = None) -> str:
    chosen = reply_words(seed)[:limit]
    return " ".join(chosen)


# --- the codec on recorded wire bodies -------------------------------------------------------

CODEC = GeminiCodec()


@pytest.mark.parametrize(
    ("name", "text", "calls", "finish", "usage", "model"),
    [
        (
            "text.json",
            "The capital of France is Paris. It sits on the Seine.",
            [],
            "stop",
            Usage(input_tokens=9, output_tokens=13),
            "gemini-2.0-flash",
        ),
        (
            "tool_calls.json",
            "I'll look up both cities.",
            [
                ("get_weather", {"location": "Paris", "unit": "celsius"}),
                ("get_weather", {"location": "London", "unit": "celsius"}),
            ],
            "tool_calls",
            Usage(input_tokens=74, output_tokens=176, reasoning_tokens=136),
            "gemini-2.5-flash",
        ),
        (
            "image_request.json",
            "A ginger cat asleep on a windowsill in the sun.",
            [],
            "stop",
            Usage(input_tokens=266, output_tokens=12),
            "gemini-2.5-flash",
        ),
        (
            "cached.json",
            "Section 4 covers termination for convenience.",
            [],
            "stop",
            Usage(input_tokens=12020, output_tokens=8, cache_read_tokens=11954),
            "gemini-2.5-pro",
        ),
        (
            "reasoning.json",
            "There are 8 primes below 20: 2, 3, 5, 7, 11, 13, 17 and 19.",
            [],
            "stop",
            Usage(input_tokens=11, output_tokens=534, reasoning_tokens=503),
            "gemini-2.5-pro",
        ),
        (
            "thinking_exhausted_max_tokens.json",
            "",
            [],
            "length",
            Usage(input_tokens=14, output_tokens=99, reasoning_tokens=99),
            "gemini-2.5-flash",
        ),
        (
            "safety_finish.json",
            "",
            [],
            "content_filter",
            Usage(input_tokens=17),
            "gemini-2.0-flash",
        ),
    ],
)
def test_recorded_responses_decode_to_the_unified_form(
    name: str,
    text: str,
    calls: list[tuple[str, dict[str, Any]]],
    finish: str,
    usage: Usage,
    model: str,
) -> None:
    response = CODEC.decode(wire(name), provider="gemini")
    assert response.text == text
    assert [(c.name, c.arguments) for c in response.tool_calls] == calls
    assert response.finish_reason == finish
    assert response.usage == usage
    assert response.model == model
    assert response.provider == "gemini"
    ids = [c.id for c in response.tool_calls]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"call_[0-9a-f]{16}", i) for i in ids)
    # Stable: the same answer gets the same ids, so both transports agree.
    assert CODEC.decode(wire(name), provider="gemini") == response


def test_recorded_response_parts_keep_their_order() -> None:
    response = CODEC.decode(wire("tool_calls.json"), provider="gemini")
    assert [type(p).__name__ for p in response.content] == [
        "TextPart",
        "ToolCallPart",
        "ToolCallPart",
    ]


@pytest.mark.parametrize(
    ("name", "error"),
    [
        ("prompt_blocked.json", ContentFiltered),
        ("malformed_function_call.json", ServerError),
        ("error_503_overloaded.json", Overloaded),  # an error object in a 200 body
    ],
)
def test_recorded_responses_that_are_failures_raise_typed_errors(
    name: str, error: type[SwitchyardError]
) -> None:
    with pytest.raises(error):
        CODEC.decode(wire(name), provider="gemini")


def replay(name: str, *, chunk: int = 7) -> tuple[list[StreamEvent], SwitchyardError | None]:
    """Feed a recorded SSE transcript through the SSE and stream decoders in small pieces."""
    raw = wire(name)
    sse = SSEDecoder(provider="gemini")
    decoder = CODEC.stream_decoder(provider="gemini", model=MODEL)
    events: list[StreamEvent] = []
    try:
        for i in range(0, len(raw), chunk):
            for event in sse.feed(raw[i : i + chunk]):
                events.extend(decoder.feed(event))
        for event in sse.close():
            events.extend(decoder.feed(event))
    except SwitchyardError as error:
        return events, error
    assert not sse.truncated
    return events + decoder.close(), None


def test_recorded_text_stream() -> None:
    events, error = replay("stream_text.sse")
    assert error is None
    text, calls, usage, finish = assemble(events)
    assert text == "The capital of France is Paris."
    assert [e.text for e in events if isinstance(e, TextDelta)] == [
        "The capital",
        " of France is",
        " Paris.",
    ]
    assert calls == []
    assert usage == Usage(input_tokens=9, output_tokens=29, reasoning_tokens=22)
    assert finish == Finish("stop", model="gemini-2.5-flash")
    assert isinstance(events[-2], UsageEvent)


def test_recorded_tool_call_stream() -> None:
    events, error = replay("stream_tool_call.sse", chunk=64)
    assert error is None
    text, calls, usage, finish = assemble(events)
    assert text == ""
    assert [(c.name, c.arguments) for c in calls] == [
        ("get_weather", {"location": "Paris"}),
        ("get_time", {"timezone": "Europe/Paris"}),
    ]
    deltas = [e for e in events if isinstance(e, ToolCallDelta)]
    assert [d.index for d in deltas] == [0, 1]
    assert finish.reason == "tool_calls"
    assert usage == Usage(input_tokens=61, output_tokens=92, reasoning_tokens=65)
    # The same answer, complete or streamed, names its calls alike.
    chunk = wire("stream_tool_call.sse").split(b"data: ", 1)[1].strip()
    assert [c.id for c in CODEC.decode(chunk, provider="gemini").tool_calls] == [
        c.id for c in calls
    ]


def test_recorded_stream_error_event_and_block_and_cut() -> None:
    events, error = replay("stream_error.sse")
    assert isinstance(error, Overloaded) and error.status == 503
    assert events == [TextDelta("Once upon")]
    events, error = replay("stream_prompt_blocked.sse")
    assert isinstance(error, ContentFiltered) and events == []
    events, error = replay("stream_cut.sse")
    assert error is None
    assert events == [TextDelta("The capital")]  # no Finish: the runtime calls it broken


@pytest.mark.parametrize(
    ("name", "status", "headers", "error", "retry_after"),
    [
        ("error_429_quota.json", 429, {}, RateLimited, 17.52),
        ("error_429_quota.json", 429, {"retry-after": "3"}, RateLimited, 17.52),
        ("error_400_context_length.json", 400, {}, ContextLengthExceeded, None),
        ("error_400_api_key_invalid.json", 400, {}, AuthenticationError, None),
        ("error_400_location.json", 400, {}, PermissionDenied, None),
        ("error_400_invalid_argument.json", 400, {}, InvalidRequest, None),
        ("error_403_unregistered.json", 403, {}, PermissionDenied, None),
        ("error_404_model.json", 404, {}, NotFound, None),
        ("error_500_internal.json", 500, {}, ServerError, None),
        ("error_503_overloaded.json", 503, {}, Overloaded, None),
        ("error_503_unavailable.json", 503, {}, ServerError, None),
        ("error_504_deadline.json", 504, {}, Timeout, None),
    ],
)
def test_recorded_error_bodies_map_to_typed_errors(
    name: str,
    status: int,
    headers: dict[str, str],
    error: type[SwitchyardError],
    retry_after: float | None,
) -> None:
    typed = CODEC.error(status, headers, wire(name), provider="gemini")
    assert type(typed) is error
    assert typed.status == status
    assert typed.provider == "gemini"
    assert getattr(typed, "retry_after", None) == retry_after
    assert msgspec.json.decode(wire(name))["error"]["message"].split("\n")[0] in typed.message


@pytest.mark.parametrize(
    ("status", "headers", "error", "retry_after"),
    [
        (429, {"retry-after": "7"}, RateLimited, 7.0),
        (429, {"retry-after-ms": "1500"}, RateLimited, 1.5),
        (500, {}, ServerError, None),
        (503, {}, ServerError, None),
        (529, {}, Overloaded, None),
        (401, {}, AuthenticationError, None),
        (400, {}, InvalidRequest, None),
    ],
)
def test_malformed_error_bodies_still_map_from_the_status(
    status: int, headers: dict[str, str], error: type[SwitchyardError], retry_after: float | None
) -> None:
    for body in (b"<html><body>Bad Gateway</body></html>", b"", b'{"error": "nope"}', b"[1, 2]"):
        typed = CODEC.error(status, headers, body, provider="gemini")
        assert type(typed) is error and typed.status == status
        assert getattr(typed, "retry_after", None) == retry_after


# --- the native transport against the emulator -----------------------------------------------


async def test_native_complete_text_usage_and_model(emulator: EmulatorHandle) -> None:
    async with opened("native", emulator.base_url) as provider:
        response = await provider.complete(request(Message("system", "Be brief."), user("Hi")))
    assert response.text == words("Hi")
    assert response.finish_reason == "stop"
    assert response.usage == Usage(
        input_tokens=emulated_input_tokens(len("Be brief.") + len("Hi")),
        output_tokens=len(reply_words("Hi")),
    )
    assert (response.provider, response.model) == ("gemini", MODEL)


async def test_native_stream_text(emulator: EmulatorHandle) -> None:
    async with opened("native", emulator.base_url) as provider:
        events = await outcome(provider, request(user("Tell me a story"), stream=True))
    assert isinstance(events, list)
    text, calls, usage, finish = assemble(events)
    assert text == words("Tell me a story")
    assert sum(isinstance(e, TextDelta) for e in events) == len(reply_words("Tell me a story"))
    assert calls == []
    assert usage == Usage(
        input_tokens=emulated_input_tokens(len("Tell me a story")),
        output_tokens=len(reply_words("Tell me a story")),
    )
    assert finish == Finish("stop", model=MODEL)


async def test_native_tool_calls_complete_and_streamed(emulator: EmulatorHandle) -> None:
    prompt = "What is the weather in Oslo? Use get_weather."
    expected = sample_json(WEATHER.parameters, prompt + "\0get_weather")
    async with opened("native", emulator.base_url) as provider:
        response = await provider.complete(request(user(prompt), tools=(WEATHER,)))
        events = await outcome(provider, request(user(prompt), stream=True, tools=(WEATHER,)))
    assert response.finish_reason == "tool_calls"
    assert [(c.name, c.arguments) for c in response.tool_calls] == [("get_weather", expected)]
    assert response.usage.output_tokens == len(json_fragments(compact(expected)))
    assert isinstance(events, list)
    text, calls, usage, finish = assemble(events)
    assert calls == list(response.tool_calls)
    assert (text, usage, finish.reason) == ("", response.usage, "tool_calls")


async def test_native_max_tokens_is_length(emulator: EmulatorHandle) -> None:
    async with opened("native", emulator.base_url) as provider:
        response = await provider.complete(request(user("Hello there"), max_tokens=5))
        events = await outcome(provider, request(user("Hello there"), stream=True, max_tokens=5))
    assert (response.text, response.finish_reason) == (words("Hello there", 5), "length")
    assert response.usage.output_tokens == 5
    assert isinstance(events, list)
    text, _, usage, finish = assemble(events)
    assert (text, usage, finish.reason) == (response.text, response.usage, "length")


async def test_native_cached_prompt_tokens(nursery: trio.Nursery) -> None:
    config = EmulatorConfig(prompt_cache=True, cache_min_tokens=4)
    emu: EmulatorHandle = await nursery.start(serve_emulator, config)
    history = (
        Message("system", "You are a contract lawyer. " * 8),
        user("Summarise section 1."),
        Message("assistant", "Section 1 defines the parties."),
    )
    async with opened("native", emu.base_url) as provider:
        first = await provider.complete(request(*history, user("And section 2?")))
        second = await provider.complete(request(*history, user("And section 3?")))
    assert first.usage.cache_read_tokens == 0
    prefix = len("You are a contract lawyer. " * 8) + len("Summarise section 1.")
    prefix += len("Section 1 defines the parties.")
    assert second.usage.cache_read_tokens == emulated_input_tokens(prefix)
    assert second.usage.input_tokens == emulated_input_tokens(prefix + len("And section 3?"))


# --- conformance: both transports, same emulator, same results --------------------------------

FORMAT = ResponseFormat(
    name="city",
    schema={
        "type": "object",
        "properties": {"name": {"type": "string"}, "rank": {"type": "integer"}},
    },
)
CALL = ToolCallPart(id="call_x", name="get_weather", arguments={"city": "Paris"})
SCENARIOS: list[tuple[str, tuple[Message, ...], dict[str, Any]]] = [
    ("text", (Message("system", "Be terse."), user("Name a river")), {}),
    ("max_tokens", (user("Name a river"),), {"max_tokens": 3}),
    ("forced tool", (user("Oslo"),), {"tools": (WEATHER,), "tool_choice": "required"}),
    (
        "named tool",
        (user("Oslo"),),
        {"tools": (WEATHER,), "tool_choice": NamedToolChoice("get_weather")},
    ),
    ("tool choice none", (user("weather tool"),), {"tools": (WEATHER,), "tool_choice": "none"}),
    (
        "tool result",
        (
            user("Weather in Paris?"),
            Message("assistant", (CALL,)),
            Message("tool", (ToolResultPart(tool_call_id="call_x", content="sunny, 21C"),)),
        ),
        {"tools": (WEATHER,)},
    ),
    ("structured output", (user("A city"),), {"response_format": FORMAT}),
    (
        "image and options",
        (
            Message(
                "user", (TextPart("What is this?"), ImagePart(data=PNG, media_type="image/png"))
            ),
        ),
        {"temperature": 0.2, "top_p": 0.9, "stop": ("END",)},
    ),
]


def expected_answer(name: str) -> tuple[str, list[tuple[str, Any]], str]:
    """(text, tool calls, finish reason) the emulator gives for each scenario."""
    if name == "text":
        return words("Name a river"), [], "stop"
    if name == "max_tokens":
        return words("Name a river", 3), [], "length"
    if name in ("forced tool", "named tool"):
        return (
            "",
            [("get_weather", sample_json(WEATHER.parameters, "Oslo\0get_weather"))],
            "tool_calls",
        )
    if name == "tool choice none":
        return words("weather tool"), [], "stop"
    if name == "tool result":
        return words('{"output":"sunny, 21C"}'), [], "stop"
    if name == "structured output":
        return compact(sample_json(FORMAT.schema, "A city")), [], "stop"
    return words("What is this?"), [], "stop"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_conformance_answers(emulator: EmulatorHandle, transport: Transport) -> None:
    async with opened(transport, emulator.base_url) as provider:
        for name, messages, options in SCENARIOS:
            text, calls, finish = expected_answer(name)
            response = await outcome(provider, request(*messages, **options))
            assert isinstance(response, Response), (name, response)
            assert response.text == text, name
            assert [(c.name, c.arguments) for c in response.tool_calls] == calls, name
            assert response.finish_reason == finish, name
            events = await outcome(provider, request(*messages, stream=True, **options))
            assert isinstance(events, list), (name, events)
            streamed_text, streamed_calls, usage, end = assemble(events)
            assert (streamed_text, streamed_calls) == (text, list(response.tool_calls)), name
            assert (usage, end.reason, end.model) == (response.usage, finish, MODEL), name


async def test_conformance_both_transports_agree_exactly(emulator: EmulatorHandle) -> None:
    results: dict[Transport, list[Outcome]] = {}
    for transport in TRANSPORTS:
        async with opened(transport, emulator.base_url) as provider:
            results[transport] = [
                await outcome(provider, request(*messages, stream=stream, **options))
                for _, messages, options in SCENARIOS
                for stream in (False, True)
            ]
    assert results["native"] == results["sdk"]


FAULTS: list[tuple[str, str, int | None, float | None]] = [
    ("status=429,retry_after=2", "RateLimited", 429, 2.0),
    ("status=429,retry_after_date=30", "RateLimited", 429, 30.0),
    ("status=429,retry_after_ms=1500", "RateLimited", 429, 1.5),
    ("status=500", "ServerError", 500, None),
    ("status=503", "Overloaded", 503, None),  # the emulator's 503 says "overloaded"
    ("error=overloaded", "Overloaded", 503, None),
    ("status=529", "Overloaded", 529, None),
    ("status=401", "AuthenticationError", 401, None),
    ("error=context_length", "ContextLengthExceeded", 400, None),
    ("error=not_found", "NotFound", 404, None),
    ("error=timeout", "Timeout", 504, None),
    ("malformed=1", "TransportError", None, None),
    ("disconnect=1", "TransportError", None, None),
]
STREAM_FAULTS: list[tuple[str, str, int | None]] = [
    ("error_event=2", "Overloaded", 503),
    ("error_event=1,status=429", "RateLimited", 429),
    ("error_event=1,status=500", "ServerError", 500),
]


def same_error(got: Outcome, kind: str, status: int | None, retry_after: float | None) -> bool:
    if not isinstance(got, tuple):
        return False
    got_kind, got_status, got_retry = got
    if (got_kind, got_status) != (kind, status):
        return False
    if retry_after is None or got_retry is None:
        return got_retry == retry_after
    return abs(got_retry - retry_after) < 2.0  # an HTTP date is whole seconds, read later


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_conformance_faults(emulator: EmulatorHandle, transport: Transport) -> None:
    async with opened(transport, emulator.base_url) as provider:
        for fault, kind, status, retry_after in FAULTS:
            emulator.set_faults("gemini", fault)
            for stream in (False, True):
                got = await outcome(provider, request(user("Hello"), stream=stream))
                assert same_error(got, kind, status, retry_after), (fault, stream, got)
        for fault, kind, status in STREAM_FAULTS:
            emulator.set_faults("gemini", fault)
            got = await outcome(provider, request(user("Hello"), stream=True))
            assert same_error(got, kind, status, None), (fault, got)
        # A stream cut before the finishReason chunk ends cleanly but has no Finish.
        emulator.set_faults("gemini", "truncate=3")
        events = await outcome(provider, request(user("Hello"), stream=True))
        first, second, third = reply_words("Hello")[:3]
        assert events == [TextDelta(first), TextDelta(" " + second), TextDelta(" " + third)]
        got = await outcome(provider, request(user("Hello")))
        assert same_error(got, "TransportError", None, None), got  # half a JSON body


async def test_conformance_faults_agree_exactly(emulator: EmulatorHandle) -> None:
    faults = [f for f, *_ in FAULTS if "date" not in f] + [f for f, *_ in STREAM_FAULTS]
    faults.append("truncate=2")
    results: dict[Transport, list[Outcome]] = {}
    for transport in TRANSPORTS:
        async with opened(transport, emulator.base_url) as provider:
            results[transport] = []
            for fault in faults:
                emulator.set_faults("gemini", fault)
                for stream in (False, True):
                    results[transport].append(
                        await outcome(provider, request(user("Hi"), stream=stream))
                    )
    assert results["native"] == results["sdk"]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_emulated_rate_limit_gives_retry_info_and_no_headers(
    emulator: EmulatorHandle, transport: Transport
) -> None:
    emulator.set_limits("gemini", rpm=1)
    reported: list[RateLimitInfo] = []
    async with opened(transport, emulator.base_url) as provider:
        provider.listen_rate_limits(reported.append)
        assert isinstance(await outcome(provider, request(user("one"))), Response)
        got = await outcome(provider, request(user("two"), stream=True))
    assert same_error(got, "RateLimited", 429, 60.0), got
    # Like the real API, Gemini sends no rate-limit headers: nothing to report.
    assert reported == []


class RateLimitHeaders:
    """An ASGI wrapper that adds OpenAI-style rate-limit headers, as a gateway in front may."""

    def __init__(self, app: Emulator) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        async def add_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"x-ratelimit-remaining-requests", b"41"),
                    (b"x-ratelimit-remaining-tokens", b"9000"),
                    (b"x-ratelimit-reset-requests", b"2s"),
                ]
                message = {**message, "headers": [*message["headers"], *extra]}
            await send(message)

        await self.app(scope, receive, add_headers)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_rate_limit_headers_reach_the_listener(
    serve_app: Callable[..., Awaitable[str]], transport: Transport
) -> None:
    base_url = await serve_app(RateLimitHeaders(Emulator()))
    reported: list[RateLimitInfo] = []
    expected = RateLimitInfo(remaining_requests=41, remaining_tokens=9000, reset_requests_s=2.0)
    async with opened(transport, base_url) as provider:
        provider.listen_rate_limits(reported.append)
        await provider.complete(request(user("hi")))
        await outcome(provider, request(user("hi"), stream=True))
    assert reported == [expected, expected]


class Replay:
    """An ASGI app answering every Gemini call with a recorded body."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        while (await receive()).get("more_body"):
            pass
        sse = scope["path"].endswith(":streamGenerateContent") and self.status == 200
        kind = b"text/event-stream" if sse else b"application/json; charset=UTF-8"
        headers = [(b"content-type", kind), (b"content-length", b"%d" % len(self.body))]
        await send({"type": "http.response.start", "status": self.status, "headers": headers})
        await send({"type": "http.response.body", "body": self.body})


def recorded(suffix: str) -> list[str]:
    return sorted(p.name for p in FIXTURES.glob(f"*{suffix}"))


async def test_conformance_on_recorded_bodies(serve_app: Callable[..., Awaitable[str]]) -> None:
    """Both transports read every recorded body exactly as the codec does."""
    replay_app = Replay()
    base_url = await serve_app(replay_app)
    async with opened("native", base_url) as native, opened("sdk", base_url) as sdk:

        async def both(req: Request) -> Outcome:
            got = await outcome(native, req)
            assert await outcome(sdk, req) == got, req
            return got

        for name in recorded(".json"):
            replay_app.body = wire(name)
            status = msgspec.json.decode(replay_app.body).get("error", {}).get("code", 200)
            replay_app.status = status
            expected: Outcome
            if status != 200:
                expected = described(CODEC.error(status, {}, replay_app.body, provider="gemini"))
            else:
                try:
                    expected = CODEC.decode(replay_app.body, provider="gemini")
                except SwitchyardError as failed:
                    expected = described(failed)
            assert await both(request(user("hi"))) == expected, name
        replay_app.status = 200
        for name in recorded(".sse"):
            replay_app.body = wire(name)
            events, failure = replay(name)
            expected = events if failure is None else described(failure)
            assert await both(request(user("hi"), stream=True)) == expected, name


def test_inline_image_output_is_standard_base64() -> None:
    response = CODEC.decode(wire("image_output.json"), provider="gemini")
    assert response.content[1] == ImagePart(data="iVBORw0KGgr7//4+Pw==", media_type="image/png")
    urlsafe = wire("image_output.json").replace(b"r7//4+Pw==", b"r7__4-Pw")
    assert CODEC.decode(urlsafe, provider="gemini") == response


# --- what reached the provider ---------------------------------------------------------------


def camel(value: Any) -> Any:
    """Keys in camelCase (the SDK sends some snake_case; the API reads both)."""
    if isinstance(value, dict):
        return {
            re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): camel(v) for k, v in value.items()
        }
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


CONVERSATION = (
    Message("system", "You are a weather bot."),
    Message("system", (TextPart("Answer in Celsius."),)),
    Message(
        "user",
        (
            TextPart("Compare these skies."),
            ImagePart(data=PNG, media_type="image/png"),
            ImagePart(url="https://example.com/sky.jpg"),
            ImagePart(url="gs://bucket/sky.webp", media_type="image/webp"),
            ImagePart(url="data:image/gif;base64,R0lGODlhAQABAAAAACw="),
        ),
    ),
    Message(
        "assistant",
        (
            TextPart("Checking both cities."),
            ToolCallPart(id="a", name="get_weather", arguments={"city": "Paris"}),
            ToolCallPart(id="b", name="get_weather", arguments={"city": "Rome", "days": 2}),
        ),
    ),
    Message("tool", (ToolResultPart(tool_call_id="a", content="sunny"),)),
    Message("tool", (ToolResultPart(tool_call_id="b", content="no data", is_error=True),)),
    user("Thanks, and tomorrow?"),
)
CONVERSATION_OPTIONS: dict[str, Any] = {
    "tools": (WEATHER, Tool(name="get_time")),
    "tool_choice": NamedToolChoice("get_weather"),
    "max_tokens": 200,
    "temperature": 0.4,
    "top_p": 0.8,
    "stop": ("END", "STOP"),
    "response_format": FORMAT,
}
EXPECTED_BODY = {
    "contents": [
        {
            "role": "user",
            "parts": [
                {"text": "Compare these skies."},
                {"inlineData": {"mimeType": "image/png", "data": PNG}},
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/sky.jpg"}},
                {"fileData": {"mimeType": "image/webp", "fileUri": "gs://bucket/sky.webp"}},
                {"inlineData": {"mimeType": "image/gif", "data": "R0lGODlhAQABAAAAACw="}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Checking both cities."},
                {
                    "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                    "thoughtSignature": "skip_thought_signature_validator",
                },
                {"functionCall": {"name": "get_weather", "args": {"city": "Rome", "days": 2}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}},
                {"functionResponse": {"name": "get_weather", "response": {"error": "no data"}}},
                {"text": "Thanks, and tomorrow?"},
            ],
        },
    ],
    "systemInstruction": {
        "parts": [{"text": "You are a weather bot."}, {"text": "Answer in Celsius."}]
    },
    "tools": [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Current weather for a city.",
                    "parametersJsonSchema": WEATHER.parameters,
                },
                {"name": "get_time"},
            ]
        }
    ],
    "toolConfig": {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    },
    "generationConfig": {
        "maxOutputTokens": 200,
        "temperature": 0.4,
        "topP": 0.8,
        "stopSequences": ["END", "STOP"],
        "responseMimeType": "application/json",
        "responseJsonSchema": FORMAT.schema,
    },
}


async def test_what_reached_the_provider(emulator: EmulatorHandle) -> None:
    async with opened("native", emulator.base_url, extra_headers={"x-team": "search"}) as provider:
        await provider.complete(request(*CONVERSATION, **CONVERSATION_OPTIONS))
        await outcome(provider, request(user("hi"), stream=True, model="gemini-2.5-pro"))
    complete, streamed = emulator.requests_for("gemini")
    assert complete.body == EXPECTED_BODY
    assert (complete.method, complete.path, complete.query) == (
        "POST",
        f"/v1beta/models/{MODEL}:generateContent",
        "",
    )
    assert (streamed.path, streamed.query) == (
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent",
        "alt=sse",
    )
    assert streamed.body == {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    for sent in (complete, streamed):
        assert sent.headers["x-goog-api-key"] == REDACTED
        assert sent.api_key_sha256 == key_fingerprint(KEY)
        assert sent.headers["x-team"] == "search"
        assert sent.headers["content-type"] == "application/json"
        assert sent.status == 200


async def test_the_sdk_sends_the_same_request(emulator: EmulatorHandle) -> None:
    for transport in TRANSPORTS:
        async with opened(transport, emulator.base_url) as provider:
            await provider.complete(request(*CONVERSATION, **CONVERSATION_OPTIONS))
            await outcome(provider, request(*CONVERSATION, stream=True, **CONVERSATION_OPTIONS))
    native, native_stream, sdk, sdk_stream = emulator.requests_for("gemini")
    assert camel(sdk.body) == camel(native.body) == camel(EXPECTED_BODY)
    assert camel(sdk_stream.body) == camel(native_stream.body)
    assert (sdk.path, sdk_stream.path, sdk_stream.query) == (
        native.path,
        native_stream.path,
        "alt=sse",
    )
    assert sdk.api_key_sha256 == native.api_key_sha256 == key_fingerprint(KEY)
    assert sdk.headers["x-goog-api-key"] == REDACTED


# --- bad input never reaches the API ---------------------------------------------------------

CALLED = Message("assistant", (ToolCallPart(id="c", name="get_weather", arguments={}),))
BAD_INPUT: list[tuple[tuple[Message, ...], dict[str, Any], str]] = [
    (
        (Message("user", (ImagePart(url="http://example.com/cat.png"),)),),
        {},
        "messages[0].content[0].url",
    ),
    (
        (Message("user", (ImagePart(url="ftp://example.com/cat.png"),)),),
        {},
        "messages[0].content[0].url",
    ),
    (
        (Message("user", (ImagePart(url="https://example.com/photo?id=3"),)),),
        {},
        "messages[0].content[0].media_type",
    ),
    (
        (Message("user", (ImagePart(url="data:image/png,rawbytes"),)),),
        {},
        "messages[0].content[0].url",
    ),
    ((user("hi"),), {"stop": ("a", "b", "c", "d", "e", "f")}, "stop"),
    ((user("hi"),), {"tools": (WEATHER,), "tool_choice": NamedToolChoice("nope")}, "tool_choice"),
    ((user("hi"),), {"tool_choice": "required"}, "tool_choice"),
    ((user("hi"),), {"tools": (Tool(name="bad name!"),)}, "tools[0].name"),
    ((user("hi"),), {"tools": (Tool(name="x" * 65),)}, "tools[0].name"),
    ((user("hi"), Message("system", "late")), {}, "messages[1].role"),
    (
        (Message("system", (ImagePart(data=PNG, media_type="image/png"),)), user("hi")),
        {},
        "messages[0].content[0]",
    ),
    ((Message("system", "only a system prompt"),), {}, "messages"),
    ((user(""),), {}, "messages[0].content"),
    ((Message("user", (TextPart(""),)),), {}, "messages[0].content"),
    (
        (
            user("hi"),
            CALLED,
            Message("assistant", (ToolResultPart(tool_call_id="c", content="x"),)),
        ),
        {},
        "messages[2].content[0]",
    ),
    ((user("hi"),), {"model": "gemini-2.5-flash:streamGenerateContent?key=x"}, "model"),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_bad_input_is_refused_before_any_http_call(
    emulator: EmulatorHandle, transport: Transport
) -> None:
    async with opened(transport, emulator.base_url) as provider:
        for messages, options, field in BAD_INPUT:
            for stream in (False, True):
                with pytest.raises(InvalidRequest) as caught:
                    if stream:
                        async for _ in provider.stream(request(*messages, stream=True, **options)):
                            pass
                    else:
                        await provider.complete(request(*messages, **options))
                assert caught.value.field == field, (field, caught.value)
                assert not caught.value.retryable and not caught.value.failover
    assert emulator.requests == []


# --- the decode path never crashes -----------------------------------------------------------

WIRE_KEYS = st.sampled_from(
    [
        "candidates", "content", "parts", "text", "thought", "functionCall", "name", "args",
        "id", "inlineData", "mimeType", "data", "fileData", "fileUri", "finishReason", "index",
        "usageMetadata", "promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount",
        "cachedContentTokenCount", "toolUsePromptTokenCount", "promptFeedback", "blockReason",
        "modelVersion", "error", "code", "message", "status", "details", "@type", "retryDelay",
        "reason", "role",
    ]
)  # fmt: skip
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(
        ["STOP", "MAX_TOKENS", "SAFETY", "MALFORMED_FUNCTION_CALL", "image/png", "2s"]
    )
)
WIRE_JSON = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(WIRE_KEYS | st.text(max_size=5), inner, max_size=5)
    ),
    max_leaves=30,
)


def only_typed_errors(action: Callable[[], object]) -> None:
    try:
        action()
    except SwitchyardError:
        pass


@settings(max_examples=150, deadline=1000)
@given(body=st.binary(max_size=300) | WIRE_JSON.map(lambda v: msgspec.json.encode(v)))
def test_decode_raises_only_typed_errors(body: bytes) -> None:
    only_typed_errors(lambda: CODEC.decode(body, provider="gemini"))
    error = CODEC.error(429, {"retry-after": "nonsense"}, body, provider="gemini")
    assert isinstance(error, SwitchyardError)


@settings(max_examples=100, deadline=1000)
@given(
    chunks=st.lists(
        st.text(max_size=40) | WIRE_JSON.map(lambda v: msgspec.json.encode(v).decode()), max_size=4
    )
)
def test_stream_decoder_raises_only_typed_errors(chunks: list[str]) -> None:
    decoder = CODEC.stream_decoder(provider="gemini", model=MODEL)

    def feed_all() -> None:
        for data in chunks:
            decoder.feed(ServerSentEvent("message", data))
        events = decoder.close()
        assert sum(isinstance(e, Finish) for e in events) <= 1

    only_typed_errors(feed_all)


@settings(max_examples=150, deadline=1000)
@given(raw=st.binary(max_size=400))
def test_sse_bytes_never_crash_the_stream_path(raw: bytes) -> None:
    def run() -> None:
        sse = SSEDecoder(provider="gemini")
        decoder = CODEC.stream_decoder(provider="gemini", model=MODEL)
        for event in [*sse.feed(raw), *sse.close()]:
            decoder.feed(event)
        if not sse.truncated:
            decoder.close()

    only_typed_errors(run)


# --- cancellation and cleanup ----------------------------------------------------------------


def open_connections(provider: LLMProvider) -> int:
    if isinstance(provider, GeminiSDKProvider):
        pooled = provider._http._transport._pool.connections
    else:
        pooled = provider._sender.connections  # type: ignore[attr-defined]
    return sum(not c.is_closed() for c in pooled)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_cancelling_a_stream_closes_the_upstream_request(
    emulator: EmulatorHandle, transport: Transport
) -> None:
    emulator.set_faults("gemini", "drip=1.0,truncate=4")  # a frame every 1 s, done in 3 s
    async with opened(transport, emulator.base_url) as provider:
        tasks_before = trio.lowlevel.current_statistics().tasks_living
        received: list[StreamEvent | str] = []
        with trio.CancelScope() as scope:
            async for event in provider.stream(request(user("A long story"), stream=True)):
                received.append(event)
                cancelled_at = time.monotonic()
                scope.cancel()  # mid-way: the next frame is 1 s off
        assert time.monotonic() - cancelled_at < 0.8
        assert received == [TextDelta(reply_words("A long story")[0])]
        assert open_connections(provider) == 0  # closed, not handed back to the pool
        for _ in range(40):  # the emulator's side ends with its (short) stream
            if trio.lowlevel.current_statistics().tasks_living <= tasks_before:
                break
            await trio.sleep(0.05)
        assert trio.lowlevel.current_statistics().tasks_living == tasks_before


async def test_sdk_transport_runs_under_trio_and_closes_cleanly(emulator: EmulatorHandle) -> None:
    provider = GeminiSDKProvider(
        name="gemini", base_url=emulator.base_url, api_key=KEY, model=MODEL
    )
    response = await provider.complete(request(user("hello")))
    events = await outcome(provider, request(user("hello"), stream=True))
    assert response.text == words("hello")
    assert isinstance(events, list) and assemble(events)[0] == response.text
    assert open_connections(provider) == 1  # idle keep-alive, back in the pool
    await provider.aclose()
    assert provider._http.is_closed and provider._sync.is_closed
    assert open_connections(provider) == 0
    with pytest.raises(ValueError, match="API key"):
        GeminiSDKProvider(name="gemini", base_url=emulator.base_url, api_key=None, model=MODEL)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_key_never_shows(emulator: EmulatorHandle, transport: Transport) -> None:
    emulator.set_faults("gemini", "status=401")
    async with opened(transport, emulator.base_url) as provider:
        got = await outcome(provider, request(user("hi")))
        assert KEY not in repr(provider) and KEY not in str(got)
        with pytest.raises(AuthenticationError) as caught:
            await provider.complete(request(user("hi")))
    assert KEY not in str(caught.value) and KEY not in repr(caught.value)
    assert KEY not in str(caught.value.to_dict())
