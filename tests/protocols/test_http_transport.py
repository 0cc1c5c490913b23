"""HttpProvider without a ``client=``: requests go straight to a connection pool of its own.

Real HTTP against the emulator on loopback, for each codec, compared where it matters with
the same provider sending through an ``AsyncClient`` (the path taken when one is passed in).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import Any

import httpx2
import msgspec
import pytest
import trio
import trio.testing

from protocols import (
    Finish,
    HttpClientName,
    LLMProvider,
    Request,
    Response,
    StreamEvent,
    SwitchyardError,
    TextDelta,
    TransportError,
    build_request,
    make_http_client,
)
from protocols._http import HttpProvider, _PoolSender, _shard_sizes
from protocols.providers import anthropic_provider, gemini_provider, openai_provider
from runtime.emulator import FAULT_HEADER, Emulator, EmulatorHandle, reply_text, serve_emulator

KINDS = ("openai", "anthropic", "gemini")
LIBRARIES: tuple[HttpClientName, ...] = ("httpx2", "httpx")
FACTORIES: dict[str, tuple[Callable[..., HttpProvider], str, str]] = {
    # kind -> (factory, base URL suffix, model)
    "openai": (openai_provider, "/v1", "gpt-4o-mini"),
    "anthropic": (anthropic_provider, "", "claude-haiku-4-5"),
    "gemini": (gemini_provider, "", "gemini-2.5-flash"),
}


def make(
    kind: str,
    base_url: str,
    *,
    fault: str | None = None,
    client: Any = None,
    http_client: HttpClientName = "httpx2",
    max_connections: int = 100,
) -> HttpProvider:
    factory, suffix, model = FACTORIES[kind]
    return factory(
        name=kind,
        base_url=base_url + suffix,
        api_key="sk-test-key-0123456789",
        model=model,
        extra_headers={FAULT_HEADER: fault} if fault else None,
        client=client,
        http_client=http_client,
        max_connections=max_connections,
    )


def ask(text: str = "hello there", *, stream: bool = False) -> Request:
    messages = [{"role": "user", "content": text}]
    return build_request(messages, {}, request_id="t", now=0.0, default_timeout=30.0, stream=stream)


def sender_of(provider: HttpProvider) -> _PoolSender:
    sender = provider._sender
    assert isinstance(sender, _PoolSender)  # the pool-direct path
    return sender


def connections(provider: HttpProvider) -> list[Any]:
    return sender_of(provider).connections


def open_connections(provider: HttpProvider) -> int:
    return sum(not c.is_closed() for c in connections(provider))


async def events_of(provider: LLMProvider, request: Request) -> list[StreamEvent]:
    async with aclosing(provider.stream(request)) as events:
        return [e async for e in events if not isinstance(e, str)]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


Outcome = tuple[type[SwitchyardError], int | None, float | None, str]


async def outcome(
    provider: LLMProvider, request: Request
) -> Response | list[StreamEvent] | Outcome:
    """The answer (the events, for a stream), or what identifies the error."""
    try:
        if request.stream:
            return await events_of(provider, request)
        return await provider.complete(request)
    except SwitchyardError as error:
        retry_after = getattr(error, "retry_after", None)
        return type(error), error.status, retry_after, error.message


@pytest.fixture
async def emulator(nursery: trio.Nursery) -> EmulatorHandle:
    handle: EmulatorHandle = await nursery.start(serve_emulator)
    return handle


class Gzip:
    """An ASGI wrapper that gzips every answer to a request accepting gzip, as OpenAI's
    front end does; a stream is flushed frame by frame, so it still arrives incrementally."""

    def __init__(self, app: Emulator) -> None:
        self.app = app
        self.gzipped = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        accepted = dict(scope.get("headers", ())).get(b"accept-encoding", b"")
        if scope["type"] != "http" or b"gzip" not in accepted:
            await self.app(scope, receive, send)
            return
        self.gzipped += 1
        packer = zlib.compressobj(wbits=31)  # 31: the gzip container

        async def compress(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message["headers"] if k != b"content-length"]
                headers.append((b"content-encoding", b"gzip"))
                message = {**message, "headers": headers}
            elif message["type"] == "http.response.body":
                more = message.get("more_body", False)
                body = packer.compress(message.get("body", b""))
                body += packer.flush(zlib.Z_SYNC_FLUSH if more else zlib.Z_FINISH)
                message = {**message, "body": body}
            await send(message)

        await self.app(scope, receive, compress)


class HeaderLog:
    """An ASGI wrapper that keeps the headers of every HTTP request."""

    def __init__(self, app: Emulator) -> None:
        self.app = app
        self.seen: list[list[tuple[bytes, bytes]]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append(sorted(scope["headers"]))
        await self.app(scope, receive, send)


# --- answers ---------------------------------------------------------------------------------


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("kind", KINDS)
async def test_complete_and_stream(
    emulator: EmulatorHandle, kind: str, library: HttpClientName
) -> None:
    provider = make(kind, emulator.base_url, http_client=library)
    try:
        response = await provider.complete(ask())
        events = await events_of(provider, ask(stream=True))
        assert open_connections(provider) == 1  # both calls on one kept-alive connection
    finally:
        await provider.aclose()
    assert response.text == text_of(events) == reply_text("hello there")
    assert isinstance(events[-1], Finish)
    assert len(emulator.requests) == 2
    assert connections(provider) == []  # closed with the provider


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("kind", KINDS)
async def test_the_same_headers_as_through_a_client(
    serve_app: Callable[..., Awaitable[str]], kind: str, library: HttpClientName
) -> None:
    log = HeaderLog(Emulator())
    base_url = await serve_app(log)
    client = make_http_client(library)
    direct, through_client = (
        make(kind, base_url, http_client=library),
        make(kind, base_url, client=client),
    )
    try:
        for provider in (direct, through_client):
            await provider.complete(ask())
            await events_of(provider, ask(stream=True))
    finally:
        await direct.aclose()
        await through_client.aclose()
        await client.aclose()
    assert len(log.seen) == 4
    assert log.seen[:2] == log.seen[2:]  # Host, Content-Length, User-Agent... all alike
    names = {name for name, _ in log.seen[0]}
    assert {b"host", b"content-length", b"content-type", b"accept-encoding"} <= names


async def test_a_host_header_of_ones_own_replaces_the_default(
    serve_app: Callable[..., Awaitable[str]],
) -> None:
    log = HeaderLog(Emulator())
    base_url = await serve_app(log)
    provider = openai_provider(
        name="openai",
        base_url=base_url + "/v1",
        api_key="sk-test",
        model="gpt-4o-mini",
        extra_headers={"Host": "api.example.com"},
    )
    try:
        await provider.complete(ask())
    finally:
        await provider.aclose()
    [headers] = log.seen
    assert [value for name, value in headers if name == b"host"] == [b"api.example.com"]


# --- errors ----------------------------------------------------------------------------------

FAULTS = ("status=429,retry_after=2", "status=500", "status=401", "error=overloaded")


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("kind", KINDS)
async def test_error_statuses_map_as_through_a_client(
    emulator: EmulatorHandle, kind: str, stream: bool
) -> None:
    client = httpx2.AsyncClient(timeout=None, trust_env=False)
    try:
        for fault in FAULTS:
            direct = make(kind, emulator.base_url, fault=fault)
            try:
                got = await outcome(direct, ask(stream=stream))
            finally:
                await direct.aclose()
            expected = await outcome(
                make(kind, emulator.base_url, fault=fault, client=client), ask(stream=stream)
            )
            assert isinstance(got, tuple) and isinstance(expected, tuple), fault
            assert got[:2] == expected[:2] and got[3] == expected[3], fault
            assert got[2] == pytest.approx(expected[2], abs=1.5), fault
            assert open_connections(direct) == 0
    finally:
        await client.aclose()


# --- gzip ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_gzipped_answers_are_decoded(
    serve_app: Callable[..., Awaitable[str]], kind: str
) -> None:
    gzip = Gzip(Emulator())
    gzipped_url, plain_url = await serve_app(gzip), await serve_app(Emulator())
    for fault in (None, "status=429"):  # an error body is decoded too: its message is kept
        for stream in (False, True):
            gzipped, plain = (
                make(kind, gzipped_url, fault=fault),
                make(kind, plain_url, fault=fault),
            )
            try:
                got = await outcome(gzipped, ask(stream=stream))
                assert got == await outcome(plain, ask(stream=stream))
            finally:
                await gzipped.aclose()
                await plain.aclose()
            if fault is None:
                assert isinstance(got, list | Response)
                text = got.text if isinstance(got, Response) else text_of(got)
                assert text == reply_text("hello there")
    assert gzip.gzipped == 4


@pytest.mark.parametrize("given_client", [False, True], ids=["own pool", "given client"])
@pytest.mark.parametrize("library", LIBRARIES)
async def test_an_unreachable_server_is_a_transport_error(
    library: HttpClientName, given_client: bool
) -> None:
    # Each library raises its own exception types (and its core's, from a pool called
    # directly); every one of them must come out as the runtime's TransportError.
    with trio.socket.socket() as probe:
        await probe.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused
        base_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        client = make_http_client(library) if given_client else None
        provider = make("openai", base_url, client=client, http_client=library)
        try:
            with pytest.raises(TransportError, match="ConnectError") as caught:
                await provider.complete(ask())
            assert "sk-test-key" not in str(caught.value)
            with pytest.raises(TransportError):
                await events_of(provider, ask(stream=True))
        finally:
            await provider.aclose()
            if client is not None:
                await client.aclose()


# --- cancellation and the pool ---------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_cancelling_a_stream_closes_the_connection(
    emulator: EmulatorHandle, kind: str
) -> None:
    provider = make(kind, emulator.base_url, fault="drip=0.5")  # a frame every 0.5 s
    received: list[StreamEvent | str] = []
    try:
        with trio.CancelScope() as scope:
            async with aclosing(provider.stream(ask("A long story", stream=True))) as events:
                async for event in events:
                    received.append(event)
                    cancelled_at = time.monotonic()
                    scope.cancel()
                    await trio.sleep(10)  # interrupted at once
        assert scope.cancelled_caught
        assert time.monotonic() - cancelled_at < 2.0
        assert len(received) == 1
        assert open_connections(provider) == 0  # closed, not handed back to the pool
        # The pool still serves.
        assert (await provider.complete(ask())).text == reply_text("hello there")
    finally:
        await provider.aclose()


async def until_finish(provider: LLMProvider, request: Request) -> list[StreamEvent | str]:
    """Read a stream up to its ``Finish`` and close it there, as the provider actor does."""
    events: list[StreamEvent | str] = []
    async with aclosing(provider.stream(request)) as stream:
        async for event in stream:
            events.append(event)
            if isinstance(event, Finish):
                break
    return events


@pytest.mark.parametrize("library", LIBRARIES)
@pytest.mark.parametrize("kind", KINDS)
async def test_a_stream_closed_at_its_finish_leaves_its_connection_for_the_next_request(
    emulator: EmulatorHandle, kind: str, library: HttpClientName
) -> None:
    # The finish comes before the body's end (OpenAI's [DONE], the chunk terminator);
    # a connection whose response was left half-read would be closed, and every stream
    # would pay a new TCP and TLS handshake.
    provider = make(kind, emulator.base_url, http_client=library)
    try:
        first = await until_finish(provider, ask(stream=True))
        assert isinstance(first[-1], Finish)
        kept = list(connections(provider))
        assert len(kept) == 1 and kept[0].is_idle()
        await until_finish(provider, ask(stream=True))
        await provider.complete(ask())
        assert connections(provider) == kept  # the same one, reused each time
    finally:
        await provider.aclose()


async def test_a_body_that_stays_open_after_the_finish_is_closed_after_a_short_wait(
    serve_app: Callable[..., Awaitable[str]],
) -> None:
    def frame(delta: dict[str, Any], finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        chunk = {"id": "c", "object": "chat.completion.chunk", "model": "m", "choices": [choice]}
        return b"data: " + msgspec.json.encode(chunk) + b"\n\n"

    async def lingering(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        body = frame({"content": "hi"}, None) + frame({}, "stop") + b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": body, "more_body": True})
        await trio.sleep_forever()  # ... and never ends the body

    base_url = await serve_app(lingering)
    provider = make("openai", base_url)
    try:
        started = time.monotonic()
        events = await until_finish(provider, ask(stream=True))
        assert events[0] == TextDelta("hi") and isinstance(events[-1], Finish)
        waited = time.monotonic() - started
        assert 0.4 < waited < 3.0  # the drain's half second, then given up
        assert open_connections(provider) == 0  # closed, not pooled half-read
    finally:
        await provider.aclose()


@pytest.mark.parametrize("library", LIBRARIES)
async def test_the_pool_stays_bounded_and_nothing_leaks(
    emulator: EmulatorHandle, library: HttpClientName
) -> None:
    # Some answers are errors; a quarter of the streams are abandoned, a quarter cancelled.
    # 20 connections: three pools (7, 7 and 6).
    emulator.set_faults("openai", "status=500,rate=0.1,seed=3")
    provider = make("openai", emulator.base_url, http_client=library, max_connections=20)
    sender = sender_of(provider)
    assert [pool._max_connections for pool in sender.pools] == [7, 7, 6]
    peak = 0
    limiter = trio.CapacityLimiter(30)  # more than the connections: some requests queue

    async def call(i: int) -> None:
        nonlocal peak
        async with limiter:
            try:
                match i % 4:
                    case 0:
                        await provider.complete(ask())
                    case 1:
                        await events_of(provider, ask(stream=True))
                    case 2:
                        async with aclosing(provider.stream(ask(stream=True))) as events:
                            async for _ in events:
                                break
                    case _:
                        with trio.CancelScope() as scope:
                            async with aclosing(provider.stream(ask(stream=True))) as events:
                                async for _ in events:
                                    scope.cancel()
                                    await trio.sleep(1)
            except SwitchyardError:
                pass
            peak = max(peak, sum(not c.is_closed() for c in sender.connections))

    try:
        with trio.fail_after(60):  # a leaked connection would stall the pool
            async with trio.open_nursery() as nursery:
                for i in range(300):
                    nursery.start_soon(call, i)
        assert len(emulator.requests) == 300
        assert 1 < peak <= 20
        assert all(c.is_idle() or c.is_closed() for c in sender.connections)
        assert sender._spare == [7, 7, 6]  # every request gave its connection back
        assert all(pool.connections for pool in sender.pools)  # the load was spread
    finally:
        await provider.aclose()
    assert sender.connections == []


async def test_a_request_waiting_for_a_connection_takes_the_first_one_freed_in_any_pool(
    serve_app: Callable[..., Awaitable[str]],
) -> None:
    # Every connection of two pools of 8 is held by a long request; one more waits. When a
    # request in the second pool ends, the waiting one takes its connection, rather than
    # waiting in the first pool's own queue behind requests that do not end.
    gates = [trio.Event() for _ in range(16)]

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"].startswith("/hold/"):
            await gates[int(scope["path"].rsplit("/", 1)[1])].wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    base = await serve_app(app)
    sender = _PoolSender("httpx2", {}, max_connections=16)
    pool_of: dict[int, int] = {}
    quick_done = trio.Event()

    async def call(path: str) -> None:
        response = await sender.open(base + path, b"{}")
        try:
            assert await response.aread() == b"ok"
        finally:
            await response.aclose()
        if path == "/quick":
            quick_done.set()

    try:
        async with trio.open_nursery() as nursery:
            for i in range(16):
                before = list(sender._spare)
                nursery.start_soon(call, f"/hold/{i}")
                await trio.testing.wait_all_tasks_blocked()
                pool_of[i] = next(p for p in (0, 1) if sender._spare[p] < before[p])
            assert sender._spare == [0, 0]
            nursery.start_soon(call, "/quick")
            await trio.testing.wait_all_tasks_blocked()
            assert not quick_done.is_set()  # in line: no connection to spare
            gates[next(i for i, p in pool_of.items() if p == 1)].set()
            with trio.fail_after(10):
                await quick_done.wait()
            assert all(not gates[i].is_set() for i, p in pool_of.items() if p == 0)
            for gate in gates:
                gate.set()
        assert sender._spare == [8, 8]
    finally:
        await sender.aclose()


async def test_closing_the_provider_closes_every_pool_even_when_one_fails(
    emulator: EmulatorHandle,
) -> None:
    provider = make("openai", emulator.base_url, max_connections=20)
    sender = sender_of(provider)
    async with trio.open_nursery() as nursery:  # a connection open in each of the 3 pools
        for _ in range(20):
            nursery.start_soon(provider.complete, ask())
    assert all(pool.connections for pool in sender.pools)
    first = sender.pools[0]
    close_first = first.aclose

    async def failing_close() -> None:
        await close_first()
        raise OSError("closing went wrong")

    first.aclose = failing_close
    with pytest.raises(OSError, match="closing went wrong"):
        await provider.aclose()
    assert sender.connections == []  # the other pools were closed all the same


@pytest.mark.parametrize("bad", [0, -3, 1.5, True, "8"])
def test_a_bad_max_connections_is_refused_by_name(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_connections: expected an integer >= 1"):
        make("openai", "http://127.0.0.1:1", max_connections=bad)


def test_an_unknown_http_client_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="http_client: expected 'httpx2' or 'httpx', got 'os'"):
        make("openai", "http://127.0.0.1:1", http_client="os")  # type: ignore[arg-type]


@pytest.mark.parametrize("max_connections", [1, 7, 8, 9, 20, 64, 100, 257])
def test_connections_are_split_evenly_over_small_pools(max_connections: int) -> None:
    sizes = _shard_sizes(max_connections)
    assert sum(sizes) == max_connections
    assert max(sizes) <= 8 and max(sizes) - min(sizes) <= 1
    assert len(sizes) == -(-max_connections // 8)


# --- the shared TLS context -------------------------------------------------------------------


async def test_pools_share_one_default_tls_context_per_library_and_http_version() -> None:
    # A provider's own pools and the clients made here: one context per library and flag.
    own = [make("openai", "https://api.invalid", http_client=lib) for lib in LIBRARIES]
    clients = [make_http_client(), make_http_client("httpx"), make_http_client(http2=True)]
    try:
        pools = [{id(pool._ssl_context) for pool in sender_of(p).pools} for p in own]
        assert all(len(ids) == 1 for ids in pools)  # every pool of a provider alike
        first = [sender_of(p).pools[0]._ssl_context for p in own]
        contexts = [first[0], clients[0]._transport._pool._ssl_context]
        contexts += [first[1], clients[1]._transport._pool._ssl_context]
        contexts += [clients[2]._transport._pool._ssl_context]
    finally:
        for made in [*own, *clients]:
            await made.aclose()
    assert contexts[0] is contexts[1]
    assert contexts[2] is contexts[3]
    assert len({id(c) for c in (contexts[0], contexts[2], contexts[4])}) == 3
    assert all(c.verify_mode.name == "CERT_REQUIRED" and c.check_hostname for c in contexts)
