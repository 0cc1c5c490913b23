"""Native HTTP providers: one ``HttpProvider`` driven by a per-API ``Codec``.

The provider owns an HTTP client (httpx or its fork httpx2; same API) and does the I/O:
send, check the status, stream and split server-sent events. Everything that knows a field
name lives in the codec. Deadlines come from the caller's cancel scopes, so the client has no
timeouts of its own; cancelling the calling task closes the upstream connection.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any, Literal, Protocol

import anyio
import httpx
import httpx2

from ._errors import SwitchyardError, Timeout, TransportError
from ._provider import LLMProvider
from ._ratelimit import parse_rate_limit_headers
from ._secret import Secret
from ._sse import ServerSentEvent, SSEDecoder
from ._types import Request, Response, StreamEvent

__all__ = ["Codec", "HttpClientName", "HttpProvider", "StreamDecoder", "make_http_client"]

HttpClientName = Literal["httpx", "httpx2"]

_TIMEOUT_ERRORS = (httpx.TimeoutException, httpx2.TimeoutException)
_TRANSPORT_ERRORS = (
    httpx.TransportError,
    httpx2.TransportError,
    httpx.StreamError,
    httpx2.StreamError,
    # httpx2 can let these through on a broken TLS or half-closed connection.
    ssl.SSLError,
    anyio.EndOfStream,
)


def make_http_client(
    name: HttpClientName = "httpx2", *, max_connections: int = 100, http2: bool = False
) -> Any:
    """A pooled async client with no timeouts of its own (the runtime's deadlines apply)."""
    module: Any = httpx2 if name == "httpx2" else httpx
    limits = module.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        # Below the 5 s idle timeout common to servers (hypercorn, nginx): reusing a
        # connection the server is closing fails the request.
        keepalive_expiry=4.0,
    )
    return module.AsyncClient(timeout=None, limits=limits, http2=http2, trust_env=False)


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


class HttpProvider(LLMProvider):
    """A provider spoken to over HTTP with ``codec``.

    ``base_url`` follows the official SDKs: OpenAI's includes ``/v1``; Anthropic's and
    Gemini's are the bare host. ``extra_headers`` go on every request (Azure's ``api-key``,
    a gateway's routing header...). ``client`` may be shared; the provider closes it only
    if it created it.
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
        self.name = name
        self.kind = kind
        self.model = model
        self.codec = codec
        self.base_url = base_url.rstrip("/")
        key = api_key if isinstance(api_key, Secret) else Secret(api_key or "")
        self._key = key
        self._headers = {"content-type": "application/json", **(extra_headers or {})}
        if key:
            self._headers.update(codec.auth_headers(key.reveal()))
        self._owns_client = client is None
        self._client = client or make_http_client(http_client, max_connections=max_connections)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()

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
            response = await self._client.post(url, content=body, headers=self._headers)
            content = response.content
        except _TIMEOUT_ERRORS as exc:
            raise Timeout(f"upstream timed out: {type(exc).__name__}", provider=self.name) from None
        except _TRANSPORT_ERRORS as exc:
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
            async with self._client.stream("POST", url, content=body, headers=self._headers) as r:
                self._observe(r.headers)
                if r.status_code >= 300:
                    content = await r.aread()
                    raise self.codec.error(r.status_code, r.headers, content, provider=self.name)
                async for chunk in r.aiter_bytes():
                    for event in sse.feed(chunk):
                        for unified in decoder.feed(event):
                            yield unified
        except _TIMEOUT_ERRORS as exc:
            raise Timeout(f"upstream timed out: {type(exc).__name__}", provider=self.name) from None
        except _TRANSPORT_ERRORS as exc:
            raise self._transport_error(exc) from None
        for event in sse.close():
            for unified in decoder.feed(event):
                yield unified
        if not sse.truncated:
            for unified in decoder.close():
                yield unified
