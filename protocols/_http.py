"""Native HTTP providers: one ``HttpProvider`` driven by a per-API ``Codec``.

The provider owns connection pools (httpx's core or its fork httpx2's, on a trio network
backend of ours) or uses a client it is given, and does the I/O: send, check the status,
stream and split server-sent events. Everything that knows a field name lives in the codec.
Deadlines come from the caller's cancel scopes, so nothing here has timeouts of its own (but
the short wait for a finished stream's last bytes, which lets its connection be reused);
cancelling the calling task closes the upstream connection.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from types import ModuleType
from typing import Any, Literal, NamedTuple, Protocol

import anyio

from ._errors import SwitchyardError, Timeout, TransportError
from ._provider import LLMProvider
from ._ratelimit import parse_rate_limit_headers
from ._secret import Secret
from ._sse import ServerSentEvent, SSEDecoder
from ._trio_backend import TrioNetworkBackend
from ._types import Finish, Request, Response, StreamEvent

__all__ = [
    "Codec",
    "HttpClientName",
    "HttpProvider",
    "StreamDecoder",
    "make_http_client",
]

HttpClientName = Literal["httpx", "httpx2"]


def _library(name: HttpClientName) -> ModuleType:
    # Imported when first used: httpx (with its CLI's imports) adds a fifth to the heap of
    # a process that only ever uses httpx2, and to its start-up time.
    if name not in ("httpx", "httpx2"):
        raise ValueError(f"http_client: expected 'httpx2' or 'httpx', got {name!r}")
    return importlib.import_module(name)


def _core(name: HttpClientName) -> ModuleType:
    """The library's connection pools and their exceptions."""
    return importlib.import_module("httpcore2" if name == "httpx2" else "httpcore")


class _Failures(NamedTuple):
    """What one library raises for a request that timed out, and for one that broke."""

    timeout: tuple[type[BaseException], ...]
    transport: tuple[type[BaseException], ...]


@functools.cache
def _failures(name: HttpClientName) -> _Failures:
    library, core = _library(name), _core(name)
    return _Failures(
        timeout=(library.TimeoutException, core.TimeoutException),
        transport=(
            library.TransportError,
            library.StreamError,
            # From a provider's own pool, which is the library's core called directly.
            core.NetworkError,
            core.ProtocolError,
            core.UnsupportedProtocol,
            # httpx2 can let these through on a broken TLS or half-closed connection.
            ssl.SSLError,
            anyio.EndOfStream,
        ),
    )


def _client_library(client: Any) -> HttpClientName:
    """Which library a client given to a provider comes from (httpx2 unless it is httpx's)."""
    return "httpx" if type(client).__module__.partition(".")[0] == "httpx" else "httpx2"


@functools.cache
def _default_ssl_context(name: HttpClientName, http2: bool) -> ssl.SSLContext:
    """The library's own default (verifying) TLS context, built once: loading the CA store
    takes tens of milliseconds, and every pool made here would otherwise load its own.

    The connection pool sets the context's ALPN protocols before each handshake, from its
    ``http2`` flag; one context per flag keeps that setting the same for every user.
    """
    context: ssl.SSLContext = _library(name).create_ssl_context(trust_env=False)
    return context


# Below the 5 s idle timeout common to servers (hypercorn, nginx): reusing a connection the
# server is closing fails the request.
_KEEPALIVE_S = 4.0


def make_http_client(
    name: HttpClientName = "httpx2", *, max_connections: int = 100, http2: bool = False
) -> Any:
    """A pooled async client with no timeouts of its own (the runtime's deadlines apply)."""
    library = _library(name)
    limits = library.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        keepalive_expiry=_KEEPALIVE_S,
    )
    return library.AsyncClient(
        timeout=None,
        limits=limits,
        http2=http2,
        trust_env=False,
        verify=_default_ssl_context(name, http2),
    )


# How long a finished stream's connection may take to end its body (the few bytes after the
# finish: ``data: [DONE]``, the last chunk's terminator) before it is closed instead of
# going back to the pool. The consumer has its answer by then; only the connection waits.
_DRAIN_S = 0.5


async def _drain(chunks: AsyncIterator[bytes], failures: _Failures) -> None:
    """Read what is left of a body whose answer is complete, so that its connection can be
    reused: a consumer stops at the ``Finish``, which comes before the body's end, and a
    half-read response's connection is closed (a new TCP and TLS handshake next time)."""
    with anyio.move_on_after(_DRAIN_S), contextlib.suppress(*failures.timeout, *failures.transport):
        async for _ in chunks:
            pass


class StreamDecoder(Protocol):
    """Turns one attempt's server-sent events into unified events.

    ``feed`` may raise a typed error (an in-stream ``error`` event); ``close`` is called at
    a clean end of the byte stream and returns any final events (e.g. Gemini's ``Finish``,
    which has no terminator of its own).
    """

    def feed(self, event: ServerSentEvent) -> list[StreamEvent]: ...

    def close(self) -> list[StreamEvent]: ...


class Codec(Protocol):
    """One provider API's wire format."""

    def path(self, request: Request, *, model: str, stream: bool) -> str:
        """The URL path (and query) below the base URL."""
        ...

    def encode(self, request: Request, *, model: str, stream: bool) -> bytes:
        """The request body."""
        ...

    def auth_headers(self, api_key: str) -> dict[str, str]: ...

    def decode(self, body: bytes, *, provider: str) -> Response:
        """A complete response body; malformed bytes raise ``TransportError``."""
        ...

    def stream_decoder(self, *, provider: str, model: str) -> StreamDecoder: ...

    def error(
        self, status: int, headers: Mapping[str, str], body: bytes, *, provider: str
    ) -> SwitchyardError:
        """The typed error for a non-2xx answer."""
        ...


class _Sender(Protocol):
    async def open(self, url: str, body: bytes) -> Any:
        """POST ``body`` to ``url``: the response, its body not yet read. The caller reads or
        streams it and closes it."""
        ...

    async def aclose(self) -> None: ...


# httpcore's pool looks at every connection it holds twice a request (polling each idle one):
# with 64 connections, a quarter of a request's CPU (``bench/``). A provider's connections
# are split over pools of at most this many instead.
_POOL_SHARD = 8


def _shard_sizes(max_connections: int) -> list[int]:
    """``max_connections`` split as evenly as can be over pools of at most ``_POOL_SHARD``."""
    total = max(1, max_connections)
    shards = -(-total // _POOL_SHARD)
    size, extra = divmod(total, shards)
    return [size + 1] * extra + [size] * (shards - extra)


class _PoolSender:
    """Straight to connection pools of the provider's own: the library's core pools
    (``httpcore2`` under httpx2), on ``TrioNetworkBackend``. A request goes to the pool
    with the most connections to spare (the first of them: at low concurrency, one pool and
    its kept-alive connections serve everything). When every connection is taken, requests
    wait their turn in one FIFO line for the first connection freed in any pool, never in
    one pool's own queue, behind long streams, while another pool frees up.

    What a client does per request (base-URL merging, cookies, the auth flow, redirects,
    event hooks, merging default headers) is nothing a gateway needs, nor is the transport's
    translation of each request and response between the client's types and the pool's.
    The request is built here with the headers a client would send, merged once; the parsed
    URL is kept per URL. The answer is the client library's ``Response``, so that it decodes
    its ``Content-Encoding`` as a client's would.
    """

    _MAX_URLS = 64  # models named per request could otherwise grow the cache without bound

    def __init__(
        self, name: HttpClientName, headers: Mapping[str, str], *, max_connections: int
    ) -> None:
        library = _library(name)
        core = _core(name)
        self._library = library
        self._core = core
        self._body = _body_type(name)
        defaults = library.Headers(
            {
                "Accept": "*/*",
                "Accept-Encoding": "gzip, deflate",
                "Connection": "keep-alive",
                "User-Agent": f"python-{name}/{library.__version__}",
            }
        )
        defaults.update(headers)
        self._headers: list[tuple[bytes, bytes]] = defaults.raw
        self._host = "Host" not in defaults  # unless extra_headers name one
        self._urls: dict[str, tuple[Any, list[tuple[bytes, bytes]]]] = {}
        backend = TrioNetworkBackend(core)
        sizes = _shard_sizes(max_connections)
        self.pools = [
            core.AsyncConnectionPool(
                ssl_context=_default_ssl_context(name, False),
                max_connections=size,
                max_keepalive_connections=size,
                keepalive_expiry=_KEEPALIVE_S,
                network_backend=backend,
            )
            for size in sizes
        ]
        # Connections each pool has to spare: not held by a request, open or yet to open.
        self._spare = list(sizes)
        # Every pool's spare, for the line; fast_acquire: a token free now is taken without a
        # trip through the scheduler.
        self._free = anyio.Semaphore(sum(self._spare), fast_acquire=True)

    @property
    def connections(self) -> list[Any]:
        """Every pooled connection (open or not yet swept), across the pools."""
        return [connection for pool in self.pools for connection in pool.connections]

    def _url(self, text: str) -> tuple[Any, list[tuple[bytes, bytes]]]:
        """The parsed URL and the request headers for it, all but ``Content-Length``."""
        known = self._urls.get(text)
        if known is None:
            if len(self._urls) >= self._MAX_URLS:
                self._urls.clear()
            parsed = self._library.URL(text)  # the client's parsing, checks and errors
            if parsed.scheme not in ("http", "https"):
                raise self._library.UnsupportedProtocol(
                    f"unsupported URL scheme {parsed.scheme!r} in {text!r}"
                )
            url = self._core.URL(
                scheme=parsed.raw_scheme,
                host=parsed.raw_host,
                port=parsed.port,
                target=parsed.raw_path,
            )
            host = [(b"Host", parsed.netloc)] if self._host else []
            known = self._urls[text] = (url, [*host, *self._headers])
        return known

    async def open(self, url: str, body: bytes) -> Any:
        target, headers = self._url(url)
        request = self._core.Request(
            b"POST",
            target,
            headers=[*headers, (b"Content-Length", b"%d" % len(body))],
            content=body,
        )
        await self._free.acquire()
        spare = self._spare
        shard = spare.index(max(spare))  # one has a connection to spare: the line saw to it
        spare[shard] -= 1
        try:
            answer = await self.pools[shard].handle_async_request(request)
        except BaseException:
            self._release(shard)
            raise
        return self._library.Response(
            answer.status,
            headers=answer.headers,
            stream=self._body(answer.stream, self, shard),
            extensions=answer.extensions,
        )

    def _release(self, shard: int) -> None:
        """A request is done with its connection in pool ``shard``."""
        self._spare[shard] += 1
        self._free.release()

    async def aclose(self) -> None:
        """Close every pool, even when closing one fails; the first failure is raised."""
        failure: BaseException | None = None
        for pool in self.pools:
            try:
                await pool.aclose()
            except BaseException as exc:
                failure = failure or exc
        if failure is not None:
            raise failure


class _CoreBody:
    """A pool's response body as the client library's ``AsyncByteStream``; closing it
    hands the connection back to the pool (or closes it, if the body was not read) and,
    the first time, gives the sender its connection back."""

    def __init__(self, stream: Any, sender: _PoolSender, shard: int) -> None:
        self._stream = stream
        self._sender: _PoolSender | None = sender
        self._shard = shard

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        sender, self._sender = self._sender, None
        try:
            await self._stream.aclose()
        finally:
            if sender is not None:
                sender._release(self._shard)


@functools.cache
def _body_type(name: HttpClientName) -> type[_CoreBody]:
    """``_CoreBody`` as the library's own ``AsyncByteStream`` (its ``Response`` asks)."""
    stream_type = _library(name).AsyncByteStream
    return type(f"{stream_type.__module__}.CoreBody", (_CoreBody, stream_type), {})


class _ClientSender:
    """Through a client the caller passed in (a mock transport, a proxy...) and closes."""

    def __init__(self, client: Any, headers: Mapping[str, str]) -> None:
        self.client = client
        self._headers = dict(headers)

    async def open(self, url: str, body: bytes) -> Any:
        request = self.client.build_request("POST", url, content=body, headers=self._headers)
        return await self.client.send(request, stream=True)

    async def aclose(self) -> None:
        pass


class HttpProvider(LLMProvider):
    """A provider spoken to over HTTP with ``codec``.

    ``base_url`` follows the official SDKs: OpenAI's includes ``/v1``; Anthropic's and
    Gemini's are the bare host. ``extra_headers`` go on every request (Azure's ``api-key``,
    a gateway's routing header...). Without a ``client`` the provider sends through a
    connection pool of its own (``http_client`` names the library, ``max_connections`` its
    size) and closes it in ``aclose``; a ``client`` given (one with a proxy, a mock
    transport...) is used as it is, may be shared, and is left for its owner to close.
    """

    def __init__(
        self,
        *,
        name: str,
        codec: Codec,
        base_url: str,
        api_key: Secret | str | None,
        model: str,
        extra_headers: Mapping[str, str] | None = None,
        client: Any = None,
        http_client: HttpClientName = "httpx2",
        max_connections: int = 100,
        kind: str = "custom",
    ) -> None:
        if (
            isinstance(max_connections, bool)
            or not isinstance(max_connections, int)
            or max_connections < 1
        ):
            raise ValueError(f"max_connections: expected an integer >= 1, got {max_connections!r}")
        self.name = name
        self.kind = kind
        self.model = model
        self.codec = codec
        self.base_url = base_url.rstrip("/")
        key = api_key if isinstance(api_key, Secret) else Secret(api_key or "")
        self._key = key
        headers = {"content-type": "application/json", **(extra_headers or {})}
        if key:
            headers.update(codec.auth_headers(key.reveal()))
        self._failures = _failures(http_client if client is None else _client_library(client))
        self._sender: _Sender = (
            _PoolSender(http_client, headers, max_connections=max_connections)
            if client is None
            else _ClientSender(client, headers)
        )

    async def aclose(self) -> None:
        await self._sender.aclose()

    def _target(self, request: Request, stream: bool) -> tuple[str, bytes]:
        model = request.options.model or self.model
        url = self.base_url + self.codec.path(request, model=model, stream=stream)
        return url, self.codec.encode(request, model=model, stream=stream)

    def _transport_error(self, exc: BaseException) -> TransportError:
        # An exception may quote a header it choked on; the key must not ride along.
        text = str(exc)
        if self._key and self._key.reveal() in text:
            text = text.replace(self._key.reveal(), "***")
        return TransportError(f"{type(exc).__name__}: {text}", provider=self.name)

    def _observe(self, headers: Mapping[str, str]) -> None:
        if self._rate_limit_listener is not None:
            info = parse_rate_limit_headers(headers)
            if not info.empty:
                self._rate_limit_listener(info)

    async def complete(self, request: Request) -> Response:
        url, body = self._target(request, stream=False)
        try:
            response = await self._sender.open(url, body)
            try:
                content = await response.aread()
            finally:
                await response.aclose()
        except self._failures.timeout as exc:
            raise Timeout(f"upstream timed out: {type(exc).__name__}", provider=self.name) from None
        except self._failures.transport as exc:
            raise self._transport_error(exc) from None
        self._observe(response.headers)
        if response.status_code >= 300:
            raise self.codec.error(
                response.status_code, response.headers, content, provider=self.name
            )
        return self.codec.decode(content, provider=self.name)

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent | str]:
        url, body = self._target(request, stream=True)
        model = request.options.model or self.model
        decoder = self.codec.stream_decoder(provider=self.name, model=model)
        sse = SSEDecoder(provider=self.name)
        try:
            response = await self._sender.open(url, body)
            try:
                self._observe(response.headers)
                if response.status_code >= 300:
                    content = await response.aread()
                    raise self.codec.error(
                        response.status_code, response.headers, content, provider=self.name
                    )
                finished = False
                async with aclosing(response.aiter_bytes()) as chunks:
                    try:
                        async for chunk in chunks:
                            for event in sse.feed(chunk):
                                for unified in decoder.feed(event):
                                    finished = finished or isinstance(unified, Finish)
                                    yield unified
                    finally:
                        if finished:
                            await _drain(chunks, self._failures)
            finally:
                # Also when the consumer stops early or is cancelled: a half-read
                # connection is closed, not handed back to the pool.
                await response.aclose()
        except self._failures.timeout as exc:
            raise Timeout(f"upstream timed out: {type(exc).__name__}", provider=self.name) from None
        except self._failures.transport as exc:
            raise self._transport_error(exc) from None
        for event in sse.close():
            for unified in decoder.feed(event):
                yield unified
        if not sse.truncated:
            for unified in decoder.close():
                yield unified
