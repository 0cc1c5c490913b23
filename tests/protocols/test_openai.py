"""OpenAI Chat Completions: the codec, the native HTTP transport and the SDK transport.

Fixture files in tests/fixtures/openai are responses, streams and error bodies as the API
reference documents them; everything else runs against the HTTP emulator over loopback.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing
from pathlib import Path
from typing import Any, Literal

import httpx
import httpx2
import msgspec
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion

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
    TransportError,
    Usage,
    UsageEvent,
    build_request,
)
from protocols._openai import MAX_STOP_SEQUENCES, MAX_TOOLS, OpenAICodec, openai_provider
from protocols._openai_sdk import OpenAISDKProvider, completion_to_response
from runtime.emulator import (
    FAULT_HEADER,
    REDACTED,
    EmulatorConfig,
    EmulatorHandle,
    input_tokens,
    key_fingerprint,
    reply_text,
    sample_json,
    serve_emulator,
)

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openai"
KEY = "sk-test-5f1e2d3c4b5a69788796a5b4"
MODEL = "gpt-4o"
CODEC = OpenAICodec()
Transport = Literal["native", "sdk"]
TRANSPORTS: tuple[Transport, ...] = ("native", "sdk")

WEATHER = Tool(
    name="get_weather",
    description="Current weather in a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
        "required": ["city", "unit"],
        "additionalProperties": False,
    },
)
ANSWER = ResponseFormat(
    name="answer",
    schema={
        "type": "object",
        "properties": {"city": {"type": "string"}, "score": {"type": "integer"}},
        "required": ["city", "score"],
        "additionalProperties": False,
    },
)
PIXEL = (  # a 1x1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def make_request(messages: Any, *, stream: bool = False, **options: Any) -> Request:
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    return build_request(
        messages, options, request_id="req-1", now=0.0, default_timeout=60.0, stream=stream
    )


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def decode_sse(data: bytes, *, chunk_size: int | None = None) -> list[StreamEvent]:
    """Run bytes through the SSE decoder and the codec's stream decoder, as a transport does."""
    sse = SSEDecoder(provider="openai")
    decoder = CODEC.stream_decoder(provider="openai", model=MODEL)
    size = chunk_size or len(data) or 1
    events: list[StreamEvent] = []
    for start in range(0, len(data), size):
        for event in sse.feed(data[start : start + size]):
            events.extend(decoder.feed(event))
    if sse.close():
        events.extend(decoder.close())
    return events


def make_provider(
    kind: Transport,
    emulator: EmulatorHandle,
    *,
    fault: str | None = None,
    api_key: str = KEY,
    client: httpx.AsyncClient | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> LLMProvider:
    headers = {FAULT_HEADER: fault} if fault else None
    base_url = emulator.base_url + "/v1"
    if kind == "native":
        return openai_provider(
            name="openai",
            base_url=base_url,
            api_key=api_key,
            model=MODEL,
            extra_headers=headers,
            client=client,
        )
    return OpenAISDKProvider(
        name="openai",
        base_url=base_url,
        api_key=api_key,
        model=MODEL,
        extra_headers=headers,
        transport=transport,
    )


@pytest.fixture
async def emulator(nursery: trio.Nursery) -> EmulatorHandle:
    handle: EmulatorHandle = await nursery.start(serve_emulator)
    return handle


def loopback(module: Any) -> Any:
    # Plain HTTP to the emulator: skipping the CA bundle saves ~0.1 s per client.
    return module.AsyncHTTPTransport(verify=False)


@pytest.fixture
async def providers(
    emulator: EmulatorHandle,
) -> AsyncIterator[Callable[..., LLMProvider]]:
    """``providers(kind, **kw)`` makes a provider on the emulator, closed after the test."""
    made: list[LLMProvider] = []
    clients: list[httpx.AsyncClient] = []

    def make(kind: Transport, **kw: Any) -> LLMProvider:
        if kind == "native":
            clients.append(httpx.AsyncClient(transport=loopback(httpx), timeout=None))
            kw["client"] = clients[-1]
        else:
            kw["transport"] = loopback(httpx2)
        provider = make_provider(kind, emulator, **kw)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()
    for client in clients:
        await client.aclose()


async def collect(provider: LLMProvider, request: Request) -> list[StreamEvent]:
    async with aclosing(provider.stream(request)) as events:
        return [e async for e in events if not isinstance(e, str)]


def assembled_calls(events: list[StreamEvent]) -> dict[int, tuple[str, str, str]]:
    """index -> (id, name, arguments JSON) from the tool-call deltas."""
    calls: dict[int, list[str]] = {}
    for e in events:
        if isinstance(e, ToolCallDelta):
            call = calls.setdefault(e.index, ["", "", ""])
            call[0] = e.id or call[0]
            call[1] = e.name or call[1]
            call[2] += e.arguments_delta
    return {i: (c[0], c[1], c[2]) for i, c in calls.items()}


# --- fixtures from the API reference ---------------------------------------------------------

COMPLETIONS = {
    "completion_text.json": (
        (TextPart("Hello! How can I assist you today?"),),
        "stop",
        Usage(input_tokens=19, output_tokens=10),
        "gpt-4.1-2025-04-14",
    ),
    "completion_tool_calls.json": (
        (
            ToolCallPart(
                "call_FthC9qRpsL5kBpwwyw6c7j4k",
                "get_weather",
                {"location": "Paris, France", "unit": "celsius"},
            ),
            ToolCallPart(
                "call_RHjBbI8CC4GF4rWdNmSDV8hJ",
                "get_weather",
                {"location": "Bogotá, Colombia", "unit": "celsius"},
            ),
        ),
        "tool_calls",
        Usage(input_tokens=82, output_tokens=51),
        "gpt-4o-2024-08-06",
    ),
    "completion_image.json": (
        (
            TextPart(
                "The first image shows a wooden boardwalk through a green meadow under a blue "
                "sky; the second is a single transparent pixel, so the two have nothing in common."
            ),
        ),
        "stop",
        Usage(input_tokens=1148, output_tokens=35),
        "gpt-4.1-mini-2025-04-14",
    ),
    "completion_cached.json": (
        (TextPart("Section 4.2 requires written notice thirty days before termination."),),
        "stop",
        Usage(input_tokens=2006, output_tokens=300, cache_read_tokens=1920),
        "gpt-4o-2024-08-06",
    ),
    "completion_reasoning.json": (
        (TextPart("The sum of the first 100 positive integers is 5050."),),
        "stop",
        Usage(input_tokens=75, output_tokens=1186, reasoning_tokens=1024),
        "o4-mini-2025-04-16",
    ),
    "completion_refusal.json": (
        (TextPart("I'm sorry, I cannot assist with that request."),),
        "content_filter",
        Usage(input_tokens=81, output_tokens=11),
        "gpt-4o-2024-08-06",
    ),
}


@pytest.mark.parametrize("name", sorted(COMPLETIONS))
def test_reference_completion_decodes_to_the_unified_response(name: str) -> None:
    body = fixture(name)
    response = CODEC.decode(body, provider="openai")
    assert (response.content, response.finish_reason, response.usage, response.model) == (
        COMPLETIONS[name]
    )
    assert response.provider == "openai"
    # The SDK transport's path: the SDK's parsed model, dumped back to the wire shape.
    parsed = ChatCompletion.model_validate_json(body)
    assert completion_to_response(CODEC, parsed, provider="openai") == response


STREAM_TEXT = [
    *(TextDelta(t) for t in ["Hello", "!", " How", " can", " I", " help", "?"]),
    UsageEvent(Usage(input_tokens=13, output_tokens=7)),
    Finish("stop", model="gpt-4o-mini-2024-07-18"),
]


@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_reference_text_stream(chunk_size: int | None) -> None:
    assert decode_sse(fixture("stream_text.sse"), chunk_size=chunk_size) == STREAM_TEXT


def test_reference_parallel_tool_call_stream() -> None:
    events = decode_sse(fixture("stream_tool_calls.sse"), chunk_size=13)
    assert events[0] == ToolCallDelta(0, "", id="call_DdmO9pD3xa9XTPNJ32zg2hcA", name="get_weather")
    assert events[-2:] == [
        UsageEvent(Usage(input_tokens=82, output_tokens=51, cache_read_tokens=64)),
        Finish("tool_calls", model="gpt-4o-2024-08-06"),
    ]
    calls = assembled_calls(events)
    assert {i: (c[0], c[1], json.loads(c[2])) for i, c in calls.items()} == {
        0: ("call_DdmO9pD3xa9XTPNJ32zg2hcA", "get_weather", {"location": "Paris, France"}),
        1: ("call_ABPGYtbl1JxvbpWhDD7x0Ubz", "get_weather", {"location": "Bogotá, Colombia"}),
    }


def test_stream_without_its_done_marker_has_no_finish() -> None:
    cut = fixture("stream_text.sse").replace(b"data: [DONE]\n\n", b"")
    events = decode_sse(cut)
    assert events == STREAM_TEXT[:-1]  # usage arrived, the end marker did not


def test_reference_in_stream_error_event_raises_typed_error() -> None:
    sse = SSEDecoder()
    decoder = CODEC.stream_decoder(provider="openai", model=MODEL)
    frames = sse.feed(fixture("error_stream_event.sse"))
    assert decoder.feed(frames[0]) == []
    assert decoder.feed(frames[1]) == [TextDelta("The")]
    with pytest.raises(ServerError) as caught:
        decoder.feed(frames[2])
    assert "The server had an error" in caught.value.message
    assert caught.value.provider == "openai"


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, **extra: Any) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    return "data: " + json.dumps({"model": "m-1", "choices": choices, **extra}) + "\n\n"


def test_stream_edge_cases_of_compatible_servers() -> None:
    usage = {"prompt_tokens": 5, "completion_tokens": 2}
    # vLLM-style: usage on the last content chunk, no finish reason, a keep-alive comment.
    text = (
        ": keep-alive\n\n"
        + chunk({"content": "Hi"})
        + chunk({"content": "!"}, usage=usage)
        + "data: [DONE]\n\n"
    )
    assert decode_sse(text.encode()) == [
        TextDelta("Hi"),
        TextDelta("!"),
        UsageEvent(Usage(input_tokens=5, output_tokens=2)),
        Finish("stop", model="m-1"),
    ]
    # Tool calls without "index" (some gateways), then events after [DONE], which are ignored.
    first = {"id": "c1", "function": {"name": "f", "arguments": '{"a":'}}
    more = {"function": {"arguments": "1}"}}
    second = {"id": "c2", "function": {"name": "g", "arguments": "{}"}}
    text = chunk({"tool_calls": [first]}) + chunk({"tool_calls": [more]})
    text += chunk({"tool_calls": [second]}) + "data: [DONE]\n\n" + chunk({"content": "late"})
    text += "data: [DONE]\n\n"
    assert decode_sse(text.encode()) == [
        ToolCallDelta(0, '{"a":', id="c1", name="f"),
        ToolCallDelta(0, "1}"),
        ToolCallDelta(1, "{}", id="c2", name="g"),
        Finish("tool_calls", model="m-1"),
    ]
    # A refusal is text, finished as content_filter.
    text = chunk({"refusal": "I can't."}) + chunk({}, "stop") + "data: [DONE]\n\n"
    assert decode_sse(text.encode()) == [
        TextDelta("I can't."),
        Finish("content_filter", model="m-1"),
    ]


def test_named_error_event_and_rate_limit_event_in_stream() -> None:
    text = 'event: error\ndata: {"error": {"message": "boom", "type": "server_error"}}\n\n'
    with pytest.raises(ServerError):
        decode_sse(text.encode())
    body = {"error": {"message": "Rate limit reached. Please try again in 20ms.", "type": "tokens"}}
    with pytest.raises(RateLimited) as caught:
        decode_sse(f"data: {json.dumps(body)}\n\n".encode())
    assert caught.value.retry_after == pytest.approx(0.02)


ERRORS: list[tuple[str, int, dict[str, str], type[SwitchyardError], float | None]] = [
    ("error_context_length.json", 400, {}, ContextLengthExceeded, None),
    ("error_vllm_context_length.json", 400, {}, ContextLengthExceeded, None),
    ("error_rate_limit_tokens.json", 429, {}, RateLimited, 1.4),
    ("error_rate_limit_tokens.json", 429, {"retry-after-ms": "250"}, RateLimited, 0.25),
    ("error_azure_rate_limit.json", 429, {"retry-after": "6"}, RateLimited, 6.0),
    ("error_azure_rate_limit.json", 429, {}, RateLimited, 6.0),
    ("error_insufficient_quota.json", 429, {}, PermissionDenied, None),
    ("error_invalid_api_key.json", 401, {}, AuthenticationError, None),
    ("error_model_not_found.json", 404, {}, NotFound, None),
    ("error_invalid_prompt.json", 400, {}, ContentFiltered, None),
    ("error_azure_content_filter.json", 400, {}, ContentFiltered, None),
    ("error_server.json", 500, {}, ServerError, None),
    ("error_overloaded.json", 503, {}, Overloaded, None),
]


@pytest.mark.parametrize(("name", "status", "headers", "kind", "retry_after"), ERRORS)
def test_reference_error_bodies_map_to_typed_errors(
    name: str,
    status: int,
    headers: dict[str, str],
    kind: type[SwitchyardError],
    retry_after: float | None,
) -> None:
    error = CODEC.error(status, headers, fixture(name), provider="openai")
    assert type(error) is kind
    assert (error.status, error.provider) == (status, "openai")
    assert getattr(error, "retry_after", None) == retry_after
    assert json.loads(fixture(name)).get("error", {}).get("message", "")[:30] in error.message


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequest),
        (401, AuthenticationError),
        (403, PermissionDenied),
        (404, NotFound),
        (408, Timeout),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (504, Timeout),
        (529, Overloaded),
    ],
)
@pytest.mark.parametrize(
    "body", [b"", b"<html><body>Bad Gateway</body></html>", b'{"error": 5}', b"[1]", b"\xff\xfe"]
)
def test_malformed_error_body_still_maps_by_status(
    status: int, kind: type[SwitchyardError], body: bytes
) -> None:
    error = CODEC.error(status, {"retry-after": "3"}, body, provider="openai")
    assert type(error) is kind
    assert error.status == status
    if kind is RateLimited:
        assert getattr(error, "retry_after", None) == 3.0


# --- encoding --------------------------------------------------------------------------------


def test_image_request_encodes_as_the_reference_shows() -> None:
    request = make_request(
        [
            {"role": "system", "content": "You describe photographs in one sentence."},
            Message(
                "user",
                (
                    TextPart("What's in these images? Is there any difference between them?"),
                    ImagePart(
                        url="https://upload.wikimedia.org/wikipedia/commons/thumb/d/dd/"
                        "Gfp-wisconsin-madison-the-nature-boardwalk.jpg/"
                        "2560px-Gfp-wisconsin-madison-the-nature-boardwalk.jpg"
                    ),
                    ImagePart(data=PIXEL, media_type="image/png"),
                ),
            ),
        ],
        max_tokens=300,
    )
    body = CODEC.body(request, model="gpt-4.1-mini", stream=False)
    assert body == json.loads(fixture("request_image.json"))
    assert msgspec.json.decode(CODEC.encode(request, model="gpt-4.1-mini", stream=False)) == body


CONVERSATION: list[Message] = [
    Message("system", "Answer briefly."),
    Message("user", "Weather in Paris and Oslo?", name="alice"),
    Message(
        "assistant",
        (
            TextPart("Checking."),
            ToolCallPart("call_1", "get_weather", {"city": "Paris", "unit": "c"}),
            ToolCallPart("call_2", "get_weather", {"city": "Oslo", "unit": "c"}),
        ),
    ),
    Message("tool", (ToolResultPart("call_1", "18C"), ToolResultPart("call_2", "4C"))),
    Message("assistant", (ToolCallPart("call_3", "get_weather", {"city": "Rome", "unit": "f"}),)),
    # Anthropic-style: tool results inside a user message, with text after them.
    Message("user", (ToolResultPart("call_3", "75F"), TextPart("Thanks. Which is warmest?"))),
]

CONVERSATION_WIRE: list[dict[str, Any]] = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Weather in Paris and Oslo?", "name": "alice"},
    {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris","unit":"c"}'},
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Oslo","unit":"c"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    {"role": "tool", "tool_call_id": "call_2", "content": "4C"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_3",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Rome","unit":"f"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_3", "content": "75F"},
    {"role": "user", "content": "Thanks. Which is warmest?"},
]


def test_full_request_encoding() -> None:
    request = make_request(
        CONVERSATION,
        stream=True,
        tools=[WEATHER],
        tool_choice="required",
        response_format=ANSWER,
        stop=["END", "STOP"],
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
    )
    assert CODEC.body(request, model=MODEL, stream=True) == {
        "model": MODEL,
        "messages": CONVERSATION_WIRE,
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END", "STOP"],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "get_weather",
                    "description": "Current weather in a city.",
                    "parameters": WEATHER.parameters,
                },
            }
        ],
        "tool_choice": "required",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": ANSWER.schema, "strict": True},
        },
    }


@pytest.mark.parametrize(
    ("choice", "wire"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (NamedToolChoice("get_weather"), {"type": "function", "function": {"name": "get_weather"}}),
    ],
)
def test_tool_choice_encoding(choice: Any, wire: Any) -> None:
    request = make_request("hi", tools=[WEATHER], tool_choice=choice)
    assert CODEC.body(request, model=MODEL, stream=False)["tool_choice"] == wire
    without_tools = make_request("hi", tool_choice="auto")
    assert "tool_choice" not in CODEC.body(without_tools, model=MODEL, stream=False)


def test_codec_options_for_reasoning_models_and_older_servers() -> None:
    request = make_request(
        [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"}],
        max_tokens=7,
    )
    body = OpenAICodec(system_role="developer", max_tokens_field="max_tokens").body(
        request, model="o4-mini", stream=False
    )
    assert body["messages"][0] == {"role": "developer", "content": "Be terse."}
    assert body["max_tokens"] == 7
    assert "max_completion_tokens" not in body


LONG_ID = "toolu_" + "x" * 35
INVALID: list[tuple[str, list[Any], dict[str, Any], str]] = [
    (
        "bmp image",
        [Message("user", (TextPart("see"), ImagePart(data=PIXEL, media_type="image/bmp")))],
        {},
        "messages[0].content[1].media_type",
    ),
    (
        "gs image url",
        [Message("user", (TextPart("see"), ImagePart(url="gs://bucket/cat.png")))],
        {},
        "messages[0].content[1].url",
    ),
    (
        "svg data url",
        [Message("user", (ImagePart(url="data:image/svg+xml;base64,PHN2Zy8+"), TextPart("?")))],
        {},
        "messages[0].content[0].url",
    ),
    (
        "image in system message",
        [Message("system", (ImagePart(url="https://x.test/a.png"),)), Message("user", "hi")],
        {},
        "messages[0].content[0]",
    ),
    (
        "image in assistant message",
        [
            Message("user", "draw"),
            Message("assistant", (ImagePart(data=PIXEL, media_type="image/png"),)),
            Message("user", "thanks"),
        ],
        {},
        "messages[1].content[0]",
    ),
    (
        "too many stop sequences",
        ["hi"],
        {"stop": [f"s{i}" for i in range(MAX_STOP_SEQUENCES + 1)]},
        "stop",
    ),
    (
        "too many tools",
        ["hi"],
        {"tools": [Tool(name=f"t{i}") for i in range(MAX_TOOLS + 1)]},
        "tools",
    ),
    ("tool name with a space", ["hi"], {"tools": [Tool(name="get weather")]}, "tools[0].name"),
    (
        "named tool choice without that tool",
        ["hi"],
        {"tools": [WEATHER], "tool_choice": NamedToolChoice("search")},
        "tool_choice",
    ),
    ("required tool choice without tools", ["hi"], {"tool_choice": "required"}, "tool_choice"),
    (
        "tool call id over 40 characters",
        [
            Message("user", "weather?"),
            Message("assistant", (ToolCallPart(LONG_ID, "get_weather", {}),)),
            Message("tool", (ToolResultPart(LONG_ID, "18C"),)),
        ],
        {},
        "messages[1].content[0].id",
    ),
    (
        "tool result flagged as error",
        [
            Message("user", "weather?"),
            Message("assistant", (ToolCallPart("call_1", "get_weather", {}),)),
            Message("tool", (ToolResultPart("call_1", "timeout", is_error=True),)),
        ],
        {},
        "messages[2].content[0].is_error",
    ),
    (
        "text in a tool message",
        [
            Message("user", "weather?"),
            Message("assistant", (ToolCallPart("call_1", "get_weather", {}),)),
            Message("tool", (ToolResultPart("call_1", "18C"), TextPart("also"))),
        ],
        {},
        "messages[2].content[1]",
    ),
    (
        "participant name with a space",
        [Message("user", "hi", name="Ada L")],
        {},
        "messages[0].name",
    ),
    (
        "strict schema that is not an object",
        ["hi"],
        {"response_format": ResponseFormat(name="list", schema={"type": "array"})},
        "response_format.schema",
    ),
    (
        "schema name with a space",
        ["hi"],
        {"response_format": ResponseFormat(name="my answer", schema=ANSWER.schema)},
        "response_format.name",
    ),
]


@pytest.mark.parametrize(
    ("messages", "options", "field"),
    [case[1:] for case in INVALID],
    ids=[case[0] for case in INVALID],
)
async def test_bad_input_raises_invalid_request_before_any_http_call(
    emulator: EmulatorHandle,
    providers: Callable[..., LLMProvider],
    messages: list[Any],
    options: dict[str, Any],
    field: str,
) -> None:
    msgs = [Message("user", m) if isinstance(m, str) else m for m in messages]
    for kind in TRANSPORTS:
        provider = providers(kind)
        for stream in (False, True):
            request = make_request(msgs, stream=stream, **options)
            with pytest.raises(InvalidRequest) as caught:
                if stream:
                    await collect(provider, request)
                else:
                    await provider.complete(request)
            assert caught.value.field == field, kind
            assert type(caught.value).retryable is False
    assert emulator.requests == []


# --- the native transport against the emulator ------------------------------------------------


async def test_native_complete_and_stream_text(providers: Callable[..., LLMProvider]) -> None:
    provider = providers("native")
    prompt = "Tell me about the sea."
    expected = reply_text(prompt)
    usage = Usage(input_tokens=input_tokens(len(prompt)), output_tokens=len(expected.split()))

    response = await provider.complete(make_request(prompt))
    assert response.content == (TextPart(expected),)
    assert (response.finish_reason, response.usage) == ("stop", usage)
    assert (response.provider, response.model) == ("openai", MODEL)

    events = await collect(provider, make_request(prompt, stream=True))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == expected
    assert events[-2:] == [UsageEvent(usage), Finish("stop", model=MODEL)]
    assert sum(isinstance(e, UsageEvent | Finish) for e in events) == 2


async def test_native_tool_calls_complete_and_stream(
    providers: Callable[..., LLMProvider],
) -> None:
    provider = providers("native")
    prompt = "What is the weather? Use get_weather."
    arguments = sample_json(WEATHER.parameters, prompt + "\0" + WEATHER.name)

    response = await provider.complete(make_request(prompt, tools=[WEATHER]))
    assert response.finish_reason == "tool_calls"
    [call] = response.tool_calls
    assert (call.name, call.arguments) == ("get_weather", arguments)
    assert call.id.startswith("call_")
    assert response.text == ""

    events = await collect(provider, make_request(prompt, stream=True, tools=[WEATHER]))
    assert events[0] == ToolCallDelta(0, "", id=call.id, name="get_weather")
    [(call_id, name, raw)] = assembled_calls(events).values()
    assert (call_id, name, json.loads(raw)) == (call.id, "get_weather", arguments)
    assert isinstance(events[-2], UsageEvent)
    assert events[-2].usage == response.usage
    assert events[-1] == Finish("tool_calls", model=MODEL)


async def test_native_max_tokens_cuts_with_length(providers: Callable[..., LLMProvider]) -> None:
    provider = providers("native")
    prompt = "Say a lot."
    words = reply_text(prompt).split()[:5]
    response = await provider.complete(make_request(prompt, max_tokens=5))
    assert (response.text, response.finish_reason) == (" ".join(words), "length")
    assert response.usage.output_tokens == 5
    events = await collect(provider, make_request(prompt, stream=True, max_tokens=5))
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == " ".join(words)
    assert events[-1] == Finish("length", model=MODEL)


async def test_native_structured_output(providers: Callable[..., LLMProvider]) -> None:
    provider = providers("native")
    response = await provider.complete(make_request("Rate a city.", response_format=ANSWER))
    assert json.loads(response.text) == sample_json(ANSWER.schema, "Rate a city.")
    assert response.finish_reason == "stop"


async def test_cached_prompt_tokens_are_normalised(nursery: trio.Nursery) -> None:
    config = EmulatorConfig(prompt_cache=True, cache_min_tokens=4)
    emulator: EmulatorHandle = await nursery.start(serve_emulator, config)
    provider = make_provider("native", emulator)
    prefix = [
        {"role": "system", "content": "You are a contract lawyer. " * 8},
        {"role": "user", "content": "Summarise clause 4."},
        {"role": "assistant", "content": "Clause 4 covers termination."},
    ]
    try:
        first = await provider.complete(
            make_request([*prefix, {"role": "user", "content": "And 5?"}])
        )
        second = await provider.complete(make_request([*prefix, {"role": "user", "content": "6?"}]))
    finally:
        await provider.aclose()
    prefix_chars = sum(len(m["content"]) for m in prefix)
    assert first.usage.cache_read_tokens == 0
    assert second.usage.cache_read_tokens == input_tokens(prefix_chars)
    assert second.usage.input_tokens == input_tokens(prefix_chars + 2)  # cached included


# --- conformance: native and SDK give the same answers and the same errors ---------------------

SCENARIOS: list[tuple[Any, dict[str, Any]]] = [
    ("Tell me a story.", {}),
    ("Tell me a story.", {"max_tokens": 4, "temperature": 0.5, "stop": ["END"]}),
    ("Call the tool please.", {"tools": [WEATHER]}),
    ("Anything.", {"tools": [WEATHER], "tool_choice": NamedToolChoice("get_weather")}),
    ("No tools now.", {"tools": [WEATHER], "tool_choice": "none"}),
    ("Rate Paris.", {"response_format": ANSWER}),
    (CONVERSATION, {"tools": [WEATHER]}),
]


async def test_conformance_same_responses_events_and_bodies(
    emulator: EmulatorHandle, providers: Callable[..., LLMProvider]
) -> None:
    native, sdk = providers("native"), providers("sdk")
    for messages, options in SCENARIOS:
        for stream in (False, True):
            request = make_request(messages, stream=stream, **options)
            emulator.clear()
            if stream:
                a: Any = await collect(native, request)
                b: Any = await collect(sdk, request)
                assert isinstance(a[-1], Finish)
            else:
                a, b = await native.complete(request), await sdk.complete(request)
            assert a == b, (messages, options, stream)
            first, second = emulator.requests
            assert first.body == second.body == CODEC.body(request, model=MODEL, stream=stream)


Outcome = tuple[list[StreamEvent], type[SwitchyardError] | None, int | None, float | None]


async def outcome(provider: LLMProvider, request: Request) -> Outcome:
    events: list[StreamEvent] = []
    try:
        if request.stream:
            async with aclosing(provider.stream(request)) as stream:
                async for event in stream:
                    assert not isinstance(event, str)
                    events.append(event)
        else:
            await provider.complete(request)
    except SwitchyardError as error:
        return events, type(error), error.status, getattr(error, "retry_after", None)
    return events, None, None, None


# fault -> (complete error, stream error); (type, status, retry_after); None: no error.
FAULTS: dict[str, tuple[Any, Any]] = {
    "status=429,retry_after=2": ((RateLimited, 429, 2.0),) * 2,
    "status=429,retry_after_date=30": ((RateLimited, 429, 30.0),) * 2,
    "status=429,retry_after_ms=1500": ((RateLimited, 429, 1.5),) * 2,
    "status=500": ((ServerError, 500, None),) * 2,
    "status=503": ((Overloaded, 503, None),) * 2,
    "status=529": ((Overloaded, 529, None),) * 2,
    "error=overloaded": ((Overloaded, 503, None),) * 2,
    "status=401": ((AuthenticationError, 401, None),) * 2,
    "error=context_length": ((ContextLengthExceeded, 400, None),) * 2,
    "malformed=2": ((TransportError, None, None),) * 2,
    "error_event=3": ((Overloaded, 503, None), (Overloaded, 500, None)),
    "disconnect=3": ((TransportError, None, None),) * 2,
    "truncate=100": ((TransportError, None, None), None),
}


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("fault", list(FAULTS))
async def test_conformance_faults_give_identical_typed_errors(
    providers: Callable[..., LLMProvider], fault: str, stream: bool
) -> None:
    request = make_request("Tell me a story.", stream=stream)
    results = {kind: await outcome(providers(kind, fault=fault), request) for kind in TRANSPORTS}
    (events, error_type, status, retry_after), sdk = results["native"], results["sdk"]
    assert (events, error_type, status) == sdk[:3]
    expected = FAULTS[fault][stream]
    if expected is None:
        # Cut before [DONE]: everything but the end marker, from both transports.
        assert error_type is None
        assert events and not any(isinstance(e, Finish) for e in events)
        assert isinstance(events[-1], UsageEvent)
        return
    assert (error_type, status) == expected[:2]
    if expected[2] is None:
        assert retry_after is None and sdk[3] is None
    else:
        # An HTTP date has one-second resolution and the two calls are not simultaneous.
        assert retry_after == pytest.approx(expected[2], abs=1.5)
        assert sdk[3] == pytest.approx(retry_after, abs=1.5)
    if stream and fault.startswith(("error_event", "disconnect", "malformed")):
        assert events and isinstance(events[0], TextDelta)  # failed after content


# --- what reached the provider -----------------------------------------------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_request_reaching_the_provider(
    emulator: EmulatorHandle, providers: Callable[..., LLMProvider], kind: Transport
) -> None:
    messages = [
        *CONVERSATION,
        Message("user", (TextPart("And this?"), ImagePart(data=PIXEL, media_type="image/png"))),
    ]
    request = make_request(
        messages, tools=[WEATHER], response_format=ANSWER, stop=["END"], max_tokens=64
    )
    await providers(kind).complete(request)
    [record] = emulator.requests
    assert (record.method, record.path) == ("POST", "/v1/chat/completions")
    assert record.headers["authorization"] == REDACTED
    assert record.api_key_sha256 == key_fingerprint(KEY)
    body = record.body
    assert body == CODEC.body(request, model=MODEL, stream=False)
    assert body["messages"][0] == {"role": "system", "content": "Answer briefly."}
    assert body["messages"][:-1] == CONVERSATION_WIRE
    assert body["messages"][-1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PIXEL}"},
    }
    assert body["tools"][0]["function"]["name"] == "get_weather"
    assert body["stop"] == ["END"]
    assert body["response_format"]["json_schema"]["schema"] == ANSWER.schema
    assert body["max_completion_tokens"] == 64


async def test_missing_api_key_is_not_sent_and_is_refused(
    emulator: EmulatorHandle, providers: Callable[..., LLMProvider]
) -> None:
    provider = providers("native", api_key="")
    with pytest.raises(AuthenticationError):
        await provider.complete(make_request("hi"))
    [record] = emulator.requests
    assert "authorization" not in record.headers
    with pytest.raises(ValueError, match="API key"):
        OpenAISDKProvider(name="x", model=MODEL, api_key="")


async def test_api_key_never_shows_in_reprs_or_errors(
    providers: Callable[..., LLMProvider],
) -> None:
    for kind in TRANSPORTS:
        provider = providers(kind, fault="status=401")
        assert KEY not in repr(provider)
        with pytest.raises(AuthenticationError) as caught:
            await provider.complete(make_request("hi"))
        assert KEY not in str(caught.value) and KEY not in repr(caught.value)
        assert KEY not in json.dumps(caught.value.to_dict())


# --- rate-limit headers ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_rate_limit_headers_reach_the_listener(
    emulator: EmulatorHandle, providers: Callable[..., LLMProvider], kind: Transport
) -> None:
    emulator.set_limits("openai", rpm=3, tpm=10_000)
    provider = providers(kind)
    seen: list[RateLimitInfo] = []
    provider.listen_rate_limits(seen.append)
    response = await provider.complete(make_request("hello"))
    await collect(provider, make_request("hello", stream=True))
    await provider.complete(make_request("hello"))
    assert [i.remaining_requests for i in seen] == [2, 1, 0]
    cost = response.usage.total_tokens
    assert [i.remaining_tokens for i in seen] == [10_000 - cost * n for n in (1, 2, 3)]
    assert all(i.reset_requests_s is not None and 0 < i.reset_requests_s <= 60 for i in seen)
    with pytest.raises(RateLimited) as caught:
        await provider.complete(make_request("hello"))
    assert caught.value.retry_after is not None and caught.value.retry_after > 0
    assert seen[-1].remaining_requests == 0 and len(seen) == 4  # the 429 carried them too


# --- decoding never crashes ----------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
tool_calls = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "index": json_values,
            "id": json_values,
            "type": json_values,
            "function": st.fixed_dictionaries(
                {}, optional={"name": json_values, "arguments": json_values | st.just('{"a":')}
            )
            | json_values,
        },
    ),
    max_size=3,
)
messages_like = st.fixed_dictionaries(
    {},
    optional={
        "content": json_values,
        "refusal": json_values,
        "tool_calls": tool_calls | json_values,
    },
)
finish_reasons = (
    st.sampled_from(["stop", "length", "tool_calls", "content_filter", "x"]) | json_values
)
usage_like = st.fixed_dictionaries(
    {},
    optional={
        "prompt_tokens": json_values,
        "completion_tokens": json_values,
        "prompt_tokens_details": st.fixed_dictionaries({"cached_tokens": json_values})
        | json_values,
        "completion_tokens_details": st.fixed_dictionaries({"reasoning_tokens": json_values})
        | json_values,
    },
)
completions = st.fixed_dictionaries(
    {},
    optional={
        "model": json_values,
        "choices": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "index": st.just(0) | json_values,
                    "message": messages_like | json_values,
                    "finish_reason": finish_reasons,
                },
            ),
            max_size=2,
        )
        | json_values,
        "usage": usage_like | json_values,
        "error": json_values,
    },
)
chunks = st.fixed_dictionaries(
    {},
    optional={
        "model": json_values,
        "choices": st.lists(
            st.fixed_dictionaries(
                {},
                optional={
                    "index": st.just(0) | json_values,
                    "delta": messages_like | json_values,
                    "finish_reason": finish_reasons,
                },
            ),
            max_size=2,
        )
        | json_values,
        "usage": usage_like | json_values,
        "error": json_values,
    },
)
event_data = st.one_of(
    chunks.map(lambda c: json.dumps(c)),
    json_values.map(lambda v: json.dumps(v)),
    st.sampled_from(["[DONE]", "", "{", "null"]),
    st.text(max_size=20),
)
FUZZ = settings(max_examples=100, deadline=1000)


@FUZZ
@given(st.binary(max_size=200) | completions.map(lambda c: json.dumps(c).encode()))
def test_decode_only_raises_typed_errors(body: bytes) -> None:
    try:
        CODEC.decode(body, provider="openai")
    except SwitchyardError:
        pass


@FUZZ
@given(completions)
def test_sdk_decode_path_only_raises_typed_errors(obj: dict[str, Any]) -> None:
    # The SDK constructs its models without validation; this is that path.
    parsed = ChatCompletion.construct(**obj)
    try:
        completion_to_response(CODEC, parsed, provider="openai")
    except SwitchyardError:
        pass


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(["message", "error", "ping"]), event_data), max_size=8))
def test_stream_decoder_only_raises_typed_errors(frames: list[tuple[str, str]]) -> None:
    decoder = CODEC.stream_decoder(provider="openai", model=MODEL)
    events: list[StreamEvent] = []
    try:
        for name, data in frames:
            events.extend(decoder.feed(ServerSentEvent(name, data)))
        events.extend(decoder.close())
    except SwitchyardError:
        pass
    assert sum(isinstance(e, Finish) for e in events) <= 1


@FUZZ
@given(st.binary(max_size=300))
def test_byte_stream_only_raises_typed_errors(data: bytes) -> None:
    try:
        decode_sse(data, chunk_size=17)
    except SwitchyardError:
        pass


@FUZZ
@given(
    st.integers(300, 599),
    st.binary(max_size=100) | json_values.map(lambda v: json.dumps({"error": v}).encode()),
    st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms"]), st.text(max_size=12), max_size=2
    ),
)
def test_error_mapping_never_raises(status: int, body: bytes, headers: Mapping[str, str]) -> None:
    error = CODEC.error(status, headers, body, provider="openai")
    assert isinstance(error, SwitchyardError)
    assert error.status == status


# --- cancellation -------------------------------------------------------------------------------


def tap_transport(module: Any) -> Any:
    """A real transport of ``module`` (httpx or httpx2) that records what became of each body."""

    class Body(module.AsyncByteStream):
        def __init__(self, inner: Any) -> None:
            self.inner = inner
            self.finished = False
            self.closed = False

        def __aiter__(self) -> Any:
            self.parts = self.inner.__aiter__()
            return self

        async def __anext__(self) -> bytes:
            try:
                part: bytes = await self.parts.__anext__()
            except StopAsyncIteration:
                self.finished = True
                raise
            return part

        async def aclose(self) -> None:
            self.closed = True
            await self.inner.aclose()

    class Tap(module.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner = loopback(module)
            self.bodies: list[Body] = []

        async def handle_async_request(self, request: Any) -> Any:
            response = await self.inner.handle_async_request(request)
            body = Body(response.stream)
            self.bodies.append(body)
            return module.Response(
                response.status_code,
                headers=response.headers,
                stream=body,
                extensions=response.extensions,
            )

        async def aclose(self) -> None:
            await self.inner.aclose()

    return Tap()


@pytest.mark.parametrize("kind", TRANSPORTS)
async def test_cancelling_a_stream_closes_the_upstream_request(
    emulator: EmulatorHandle, kind: Transport
) -> None:
    tap = tap_transport(httpx if kind == "native" else httpx2)
    client = httpx.AsyncClient(transport=tap, timeout=None) if kind == "native" else None
    provider = make_provider(
        kind,
        emulator,
        fault="drip=0.01",
        client=client,
        transport=tap if kind == "sdk" else None,
    )
    received: list[StreamEvent | str] = []
    try:
        with trio.CancelScope() as scope:
            async with aclosing(provider.stream(make_request("A long story.", stream=True))) as it:
                async for event in it:
                    received.append(event)
                    if len(received) == 3:
                        cancelled_at = time.monotonic()
                        scope.cancel()
                        await trio.sleep(10)  # the cancellation interrupts this at once
        assert time.monotonic() - cancelled_at < 5.0  # not the 10 s sleep
    finally:
        await provider.aclose()
        if client is not None:
            await client.aclose()
    assert scope.cancelled_caught
    [body] = tap.bodies
    assert body.closed and not body.finished  # the upstream response was abandoned mid-body
    assert len(received) == 3


# --- the SDK transport specifically -------------------------------------------------------------


async def test_sdk_runs_under_trio_and_closes_its_client(emulator: EmulatorHandle) -> None:
    provider = make_provider("sdk", emulator)
    assert isinstance(provider, OpenAISDKProvider)
    response = await provider.complete(make_request("hello"))
    events = await collect(provider, make_request("hello", stream=True))
    assert response.text == "".join(e.text for e in events if isinstance(e, TextDelta))
    http = provider._http
    assert not http.is_closed
    await provider.aclose()
    assert http.is_closed


async def test_sdk_azure_client_calls_the_deployment() -> None:
    # The emulator serves only /v1/chat/completions, so Azure's deployment URLs are checked
    # against a mock transport answering with the reference fixtures.
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        if json.loads(request.content).get("stream"):
            return httpx2.Response(
                200,
                headers={"content-type": "text/event-stream"},
                content=fixture("stream_text.sse"),
            )
        return httpx2.Response(
            200,
            headers={"content-type": "application/json", "x-ratelimit-remaining-requests": "9"},
            content=fixture("completion_text.json"),
        )

    provider = OpenAISDKProvider(
        name="azure",
        model="gpt-4o",
        api_key=KEY,
        base_url="https://contoso.openai.azure.com",
        azure_api_version="2024-10-21",
        azure_deployment="chat-prod",
        transport=httpx2.MockTransport(answer),
    )
    seen_limits: list[RateLimitInfo] = []
    provider.listen_rate_limits(seen_limits.append)
    try:
        response = await provider.complete(make_request("hi"))
        events = await collect(provider, make_request("hi", stream=True))
    finally:
        await provider.aclose()
    expected = CODEC.decode(fixture("completion_text.json"), provider="azure")
    assert response == expected
    assert events == STREAM_TEXT
    for request in seen:
        assert request.url.path == "/openai/deployments/chat-prod/chat/completions"
        assert request.url.params["api-version"] == "2024-10-21"
        assert request.headers["api-key"] == KEY
        assert "authorization" not in request.headers
    assert len(seen) == 2
    assert seen_limits[0].remaining_requests == 9


async def test_native_azure_style_endpoint() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=fixture("completion_text.json"))

    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    provider = openai_provider(
        name="azure",
        base_url="https://contoso.openai.azure.com/openai/v1/",
        api_key=None,
        model="chat-prod",
        extra_headers={"api-key": KEY},
        client=client,
    )
    try:
        response = await provider.complete(make_request("hi"))
    finally:
        await client.aclose()
    assert response.text == "Hello! How can I assist you today?"
    [request] = seen
    assert str(request.url) == "https://contoso.openai.azure.com/openai/v1/chat/completions"
    assert request.headers["api-key"] == KEY and "authorization" not in request.headers
    assert json.loads(request.content)["model"] == "chat-prod"
