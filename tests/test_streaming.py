"""Streaming: typed events, invisible failover before content, never a silent truncation."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from actors import BackoffConfig, ProviderSpec, RetryConfig
from protocols import (
    AllProvidersFailed,
    ErrorEvent,
    Finish,
    InvalidRequest,
    LLMProvider,
    Overloaded,
    ProviderUnavailable,
    Request,
    Response,
    StreamEvent,
    StreamInterrupted,
    TextDelta,
    ToolCallDelta,
    TransportError,
    Usage,
    UsageEvent,
)
from runtime import RuntimeConfig, open_runtime
from runtime.testing import MockProvider

HI = [{"role": "user", "content": "one two three four"}]
NO_RETRY = RuntimeConfig(seed=3, retry=RetryConfig(backoff=BackoffConfig(max_retries=0)))


async def collect(rt, **options) -> list[StreamEvent]:
    async with rt.stream(HI, **options) as events:
        return [event async for event in events]


async def test_stream_yields_deltas_usage_and_one_finish_with_the_response(autojump_clock):
    a = MockProvider(name="a")
    async with open_runtime([a], config=NO_RETRY) as rt:
        events = await collect(rt)
    texts = [e.text for e in events if isinstance(e, TextDelta)]
    assert "".join(texts) == "a answers: one two three four"
    assert isinstance(events[-2], UsageEvent)
    finish = events[-1]
    assert isinstance(finish, Finish)
    assert finish.response is not None
    assert finish.response.text == "".join(texts)
    assert finish.response.provider == "a"
    assert finish.response.usage == events[-2].usage
    assert finish.response.ttft is not None
    assert sum(isinstance(e, Finish | ErrorEvent) for e in events) == 1


async def test_failover_before_first_content_is_invisible(autojump_clock):
    a = MockProvider(name="a", always_fail=True, error=Overloaded("busy", provider="a"))
    b = MockProvider(name="b")
    async with open_runtime([a, b], config=NO_RETRY) as rt:
        events = await collect(rt)
    assert not any(isinstance(e, ErrorEvent) for e in events)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "b answers: one two three four"
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.response is not None
    assert finish.response.attempts == 2


async def test_failure_after_content_ends_with_an_error_carrying_the_delivered_text(
    autojump_clock,
):
    a = MockProvider(name="a", script=["fail_mid_stream"])
    b = MockProvider(name="b")
    async with open_runtime([a, b], config=NO_RETRY) as rt:
        events = await collect(rt)
    delivered = "".join(e.text for e in events if isinstance(e, TextDelta))
    last = events[-1]
    assert isinstance(last, ErrorEvent)
    assert isinstance(last.error, StreamInterrupted)
    assert last.delivered_text == delivered == last.error.delivered_text
    assert delivered == "a answers: one "  # half of the six chunks
    assert b.calls == 0  # the caller saw part of an answer: no silent switch


async def test_stream_without_finish_marker_is_an_error(autojump_clock):
    a = MockProvider(name="a", script=["cut"])
    async with open_runtime([a], config=NO_RETRY) as rt:
        events = await collect(rt)
    last = events[-1]
    assert isinstance(last, ErrorEvent)
    assert isinstance(last.error, StreamInterrupted)
    assert isinstance(last.error.cause, TransportError)
    assert "finish marker" in last.error.message


async def test_cut_stream_before_content_fails_over(autojump_clock):
    a = MockProvider(name="a", script=["cut"], chunks=[])
    b = MockProvider(name="b")
    async with open_runtime([a, b], config=NO_RETRY) as rt:
        events = await collect(rt)
    assert isinstance(events[-1], Finish)
    assert events[-1].response is not None and events[-1].response.provider == "b"


async def test_kill_mid_stream_after_content_is_a_typed_error(autojump_clock):
    a = MockProvider(name="a", chunk_delay=1.0)
    async with open_runtime([a], config=NO_RETRY) as rt, rt.stream(HI) as events:
        first = await events.__anext__()
        assert isinstance(first, TextDelta)
        assert rt.kill("a")
        rest = [e async for e in events]
    last = rest[-1]
    assert isinstance(last, ErrorEvent)
    assert isinstance(last.error, StreamInterrupted)
    assert isinstance(last.error.cause, ProviderUnavailable)
    assert last.delivered_text == first.text


async def test_kill_before_first_chunk_fails_over_invisibly(autojump_clock):
    a = MockProvider(name="a", latency=5.0)
    b = MockProvider(name="b")
    async with open_runtime([a, b], config=NO_RETRY) as rt, trio.open_nursery() as nursery:

        async def killer() -> None:
            await trio.sleep(1.0)
            rt.kill("a")

        nursery.start_soon(killer)
        events = await collect(rt)
    assert isinstance(events[-1], Finish)
    assert events[-1].response is not None and events[-1].response.provider == "b"


async def test_leaving_the_stream_early_cancels_upstream(autojump_clock):
    a = MockProvider(name="a", chunk_delay=1.0)
    async with open_runtime([a], config=NO_RETRY) as rt:
        async with rt.stream(HI) as events:
            await events.__anext__()
        await trio.testing.wait_all_tasks_blocked()
        assert a.cancelled == 1
        assert rt.health().actor("a").in_flight == 0
        assert rt.health().requests_in_flight == 0


async def test_stream_deadline_ends_with_a_timeout_event(autojump_clock):
    a = MockProvider(name="a", chunk_delay=10.0)
    async with open_runtime([a], config=NO_RETRY) as rt:
        start = trio.current_time()
        events = await collect(rt, timeout=15)
        assert trio.current_time() - start == pytest.approx(15)
    last = events[-1]
    assert isinstance(last, ErrorEvent)
    assert last.delivered_text  # two chunks came before the deadline


async def test_slow_reader_slows_the_upstream_with_a_bounded_buffer(autojump_clock):
    chunks = [f"{i} " for i in range(100)]
    a = MockProvider(name="a", chunks=chunks)
    config = RuntimeConfig(seed=1, stream_buffer=4)
    async with open_runtime([a], config=config) as rt, rt.stream(HI) as events:
        await events.__anext__()
        await trio.testing.wait_all_tasks_blocked()
        # The provider is parked on a full buffer, not racing ahead into memory.
        assert a.completed == 0
        rest = [e async for e in events]
    assert isinstance(rest[-1], Finish)


async def test_text_form_yields_strings_and_raises_typed_errors(autojump_clock):
    a = MockProvider(name="a", script=["ok", "fail_mid_stream"])
    async with open_runtime([a], config=NO_RETRY) as rt:
        async with rt.stream_text(HI) as chunks:
            text = "".join([c async for c in chunks])
        assert text == "a answers: one two three four"
        with pytest.raises(StreamInterrupted) as info:
            async with rt.stream_text(HI) as chunks:
                async for _ in chunks:
                    pass
        assert info.value.delivered_text == "a answers: one "


async def test_all_failing_stream_ends_with_all_providers_failed(autojump_clock):
    a = MockProvider(name="a", always_fail=True)
    async with open_runtime([a], config=NO_RETRY) as rt:
        events = await collect(rt)
    assert len(events) == 1
    assert isinstance(events[0], ErrorEvent)
    assert isinstance(events[0].error, AllProvidersFailed)


async def test_invalid_stream_request_raises_on_entry(autojump_clock):
    async with open_runtime([MockProvider(name="a")], config=NO_RETRY) as rt:
        with pytest.raises(InvalidRequest):
            async with rt.stream([]):
                pass


class ToolStreamer(LLMProvider):
    """Streams a tool call in pieces, as the real providers do."""

    name = "tools"

    async def complete(self, request: Request) -> Response:
        raise NotImplementedError

    async def stream(self, request: Request):
        yield ToolCallDelta(0, id="call_1", name="get_weather")
        yield ToolCallDelta(0, arguments_delta='{"city": ')
        yield ToolCallDelta(0, arguments_delta='"Paris"}')
        yield UsageEvent(Usage(input_tokens=10, output_tokens=5))
        yield Finish("tool_calls", model="tool-model")


async def test_tool_call_deltas_assemble_into_a_tool_call(autojump_clock):
    async with open_runtime([ToolStreamer()], config=NO_RETRY) as rt:
        events = await collect(rt)
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.response is not None
    (call,) = finish.response.tool_calls
    assert (call.id, call.name, call.arguments) == ("call_1", "get_weather", {"city": "Paris"})
    assert finish.response.finish_reason == "tool_calls"
    assert finish.response.model == "tool-model"
    assert sum(isinstance(e, ToolCallDelta) for e in events) == 3


class StrChunks(LLMProvider):
    """A sketch-style provider that yields plain strings."""

    name = "plain"

    async def complete(self, request: Request) -> Response:
        raise NotImplementedError

    async def stream(self, request: Request):
        yield "Hello, "
        yield "world"
        yield Finish("stop")


async def test_plain_string_chunks_are_text_deltas(autojump_clock):
    async with open_runtime([StrChunks()], config=NO_RETRY) as rt, rt.stream_text(HI) as chunks:
        assert [c async for c in chunks] == ["Hello, ", "world"]


async def test_stream_going_quiet_times_out_and_fails_over(autojump_clock):
    a = MockProvider(name="a", latency=100.0)
    b = MockProvider(name="b")
    specs = [ProviderSpec(provider=a, attempt_timeout_s=3.0), ProviderSpec(provider=b)]
    async with open_runtime(specs, config=NO_RETRY) as rt:
        start = trio.current_time()
        events = await collect(rt)
        assert trio.current_time() - start == pytest.approx(3.0)
    assert isinstance(events[-1], Finish)
    assert events[-1].response is not None and events[-1].response.provider == "b"
