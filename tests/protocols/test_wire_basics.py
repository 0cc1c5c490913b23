"""The shared wire plumbing: SSE decoding, rate-limit and Retry-After headers, status mapping,
and JSON Schema checks on tools and structured output."""

from __future__ import annotations

import email.utils

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols import (
    AuthenticationError,
    ContextLengthExceeded,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    RateLimited,
    ServerError,
    ServerSentEvent,
    SSEDecoder,
    Timeout,
    TransportError,
    error_for_status,
    parse_duration,
    parse_options,
    parse_rate_limit_headers,
    parse_retry_after,
)

# --- SSE -------------------------------------------------------------------------------------


def test_sse_events_with_names_multiline_data_and_comments():
    decoder = SSEDecoder()
    stream = (
        b": keep-alive\n\n"
        b'event: message_start\ndata: {"a": 1}\n\n'
        b"data: line one\ndata: line two\n\n"
        b"event: ping\r\ndata: {}\r\n\r\n"
        b"data:no-space\r\rdata: [DONE]\n\n"
    )
    events = decoder.feed(stream) + decoder.close()
    assert events == [
        ServerSentEvent("message_start", '{"a": 1}'),
        ServerSentEvent("message", "line one\nline two"),
        ServerSentEvent("ping", "{}"),
        ServerSentEvent("message", "no-space"),
        ServerSentEvent("message", "[DONE]"),
    ]
    assert not decoder.truncated


@given(st.data())
def test_sse_split_anywhere_gives_the_same_events(data):
    stream = b"event: a\ndata: 1\n\ndata: 2\r\ndata: 3\r\n\r\n: c\n\nevent: b\rdata: x\r\r"
    expected = [
        ServerSentEvent("a", "1"),
        ServerSentEvent("message", "2\n3"),
        ServerSentEvent("b", "x"),
    ]
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=8)))
    decoder = SSEDecoder()
    events = []
    previous = 0
    for cut in [*cuts, len(stream)]:
        events += decoder.feed(stream[previous:cut])
        previous = cut
    events += decoder.close()
    assert events == expected
    assert not decoder.truncated


def test_sse_truncated_event_is_reported():
    decoder = SSEDecoder()
    assert decoder.feed(b'data: {"partial": ') == []
    assert not decoder.close()


def test_sse_oversized_event_is_a_transport_error():
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(TransportError):
        decoder.feed(b"data: " + b"x" * 200)
    decoder = SSEDecoder(max_event_bytes=100)
    with pytest.raises(TransportError):
        for _ in range(20):
            decoder.feed(b"data: " + b"x" * 10 + b"\n")


@given(st.lists(st.binary(max_size=64), max_size=20))
def test_sse_arbitrary_bytes_give_events_or_a_typed_error(chunks):
    decoder = SSEDecoder(max_event_bytes=256)
    try:
        for chunk in chunks:
            for event in decoder.feed(chunk):
                assert isinstance(event.data, str)
        decoder.close()
    except TransportError:
        pass


# --- headers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("2.5", 2.5)],
)
def test_openai_reset_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "soon", "5x", "1s garbage"])
def test_bad_durations_are_none(text):
    assert parse_duration(text) is None


def test_openai_rate_limit_headers():
    info = parse_rate_limit_headers(
        {
            "x-ratelimit-remaining-requests": "59",
            "x-ratelimit-remaining-tokens": "149000",
            "x-ratelimit-reset-requests": "1s",
            "x-ratelimit-reset-tokens": "6m0s",
        }
    )
    assert (info.remaining_requests, info.remaining_tokens) == (59, 149000)
    assert (info.reset_requests_s, info.reset_tokens_s) == (1.0, 360.0)


def test_anthropic_rate_limit_headers_reset_instants():
    info = parse_rate_limit_headers(
        {
            "anthropic-ratelimit-requests-remaining": "3",
            "anthropic-ratelimit-tokens-remaining": "0",
            "anthropic-ratelimit-tokens-reset": "2026-11-25T12:00:30Z",
        },
        now=email.utils.parsedate_to_datetime("Wed, 25 Nov 2026 12:00:00 GMT").timestamp(),
    )
    assert info.remaining_requests == 3
    assert info.remaining_tokens == 0
    assert info.reset_tokens_s == pytest.approx(30.0)


def test_no_rate_limit_headers_is_empty():
    assert parse_rate_limit_headers({"content-type": "application/json"}).empty


def test_retry_after_forms():
    now = email.utils.parsedate_to_datetime("Wed, 25 Nov 2026 12:00:00 GMT").timestamp()
    assert parse_retry_after({"retry-after": "7"}) == 7.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    date = {"retry-after": "Wed, 25 Nov 2026 12:00:42 GMT"}
    assert parse_retry_after(date, now=now) == pytest.approx(42.0)
    assert parse_retry_after({"retry-after": "Wed, 25 Nov 2026 11:00:00 GMT"}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "whenever"}) is None
    assert parse_retry_after({}) is None


# --- status mapping --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, InvalidRequest),
        (401, AuthenticationError),
        (403, PermissionDenied),
        (404, NotFound),
        (408, Timeout),
        (422, InvalidRequest),
        (429, RateLimited),
        (500, ServerError),
        (502, ServerError),
        (503, ServerError),
        (504, Timeout),
        (529, Overloaded),
    ],
)
def test_status_maps_to_typed_error(status, kind):
    error = error_for_status(status, "m", provider="p", headers={})
    assert type(error) is kind
    assert error.status == status
    assert error.provider == "p"


def test_429_carries_retry_after_from_headers_or_body():
    from_header = error_for_status(429, "slow", provider="p", headers={"retry-after": "3"})
    assert isinstance(from_header, RateLimited) and from_header.retry_after == 3.0
    from_body = error_for_status(429, "slow", provider="p", headers={}, retry_after=1.5)
    assert isinstance(from_body, RateLimited) and from_body.retry_after == 1.5


def test_context_length_flag_wins_over_status():
    error = error_for_status(400, "too long", provider="p", headers={}, context_length=True)
    assert isinstance(error, ContextLengthExceeded)
    assert error.failover and not error.retryable


# --- JSON Schema ---------------------------------------------------------------------------


def test_invalid_tool_schema_is_rejected_naming_the_tool():
    bad = {"type": "object", "properties": {"x": {"type": "integr"}}}
    with pytest.raises(InvalidRequest) as info:
        parse_options(
            {"tools": [{"name": "ok", "parameters": {}}, {"name": "f", "parameters": bad}]}
        )
    assert info.value.field == "tools[1].parameters"


def test_invalid_response_format_schema_is_rejected():
    with pytest.raises(InvalidRequest) as info:
        parse_options({"response_format": {"name": "r", "schema": {"type": 5}}})
    assert info.value.field == "response_format.schema"


def test_valid_schemas_pass():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    options = parse_options(
        {
            "tools": [{"name": "weather", "parameters": schema}],
            "response_format": {"name": "r", "schema": schema},
        }
    )
    assert options.tools[0].parameters == schema
