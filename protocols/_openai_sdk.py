"""OpenAI through the official async SDK, with the native codec's exact semantics.

The SDK builds and sends the request (auth, Azure routing, its own headers); the body is the
codec's, and what comes back goes through the codec too, so both transports give identical
responses, events and typed errors.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from typing import Any, final

import anyio
import httpx2
import openai
from openai.types.chat import ChatCompletion

from ._errors import SwitchyardError, Timeout, TransportError
from ._openai import OpenAICodec
from ._provider import LLMProvider
from ._ratelimit import parse_rate_limit_headers
from ._secret import Secret
from ._sse import SSEDecoder
from ._types import Request, Response, StreamEvent

__all__ = ["OpenAISDKProvider", "completion_to_response"]

_HTTP_TIMEOUT = (httpx2.TimeoutException,)
# httpx2 can let TLS failures through unmapped (the SDK shims the same two, httpx2 issue 854).
_HTTP_ERRORS = (httpx2.TransportError, httpx2.StreamError, ssl.SSLError, anyio.EndOfStream)


@final
class OpenAISDKProvider(LLMProvider):
    """A provider on ``openai.AsyncOpenAI`` (``AsyncAzureOpenAI`` with ``azure_api_version``).

    ``base_url`` includes ``/v1``; with ``azure_api_version`` it is the Azure endpoint
    (``https://RESOURCE.openai.azure.com``) and requests go to ``azure_deployment``
    (default: the model). The SDK's retries are off (the runtime retries) and its timeouts
    too (the runtime's deadlines apply). It runs on an httpx2 client this provider owns and
    closes in ``aclose()``; ``transport`` replaces that client's transport (tests, proxies).

    What the SDK (openai 3.x) hides, and how this provider copes:

    * Its parsed stream ends quietly when the body ends without ``data: [DONE]``, so a cut
      stream looks complete. Streams are therefore read as the SDK's raw event stream
      (``with_streaming_response``) and decoded by the codec: no ``[DONE]``, no ``Finish``.
    * Malformed JSON escapes it as ``json.JSONDecodeError`` (not an ``OpenAIError``), and a
      200 answer that is not JSON comes back as a ``str``: both become ``TransportError``.
    * An in-stream error event becomes an ``APIError`` without a status; the codec reads the
      raw event instead, as the native transport does.
    * It reads ``OPENAI_ORG_ID`` and ``OPENAI_PROJECT_ID`` from the environment and sends
      them as headers; the native transport reads nothing from the environment.
    """

    def __init__(
        self,
        *,
        name: str,
        model: str,
        api_key: Secret | str,
        base_url: str = "https://api.openai.com/v1",
        extra_headers: Mapping[str, str] | None = None,
        azure_api_version: str | None = None,
        azure_deployment: str | None = None,
        max_connections: int = 100,
        codec: OpenAICodec | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
    ) -> None:
        key = api_key if isinstance(api_key, Secret) else Secret(api_key)
        if not key:
            raise ValueError("the OpenAI SDK needs an API key")
        self.name = name
        self.kind = "openai"
        self.model = model
        self.codec = codec or OpenAICodec()
        limits = httpx2.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        self._http = httpx2.AsyncClient(
            timeout=None, limits=limits, trust_env=False, transport=transport
        )
        self._client: openai.AsyncOpenAI
        if azure_api_version is not None:
            self._client = openai.AsyncAzureOpenAI(
                azure_endpoint=base_url,
                azure_deployment=azure_deployment or model,
                api_version=azure_api_version,
                api_key=key.reveal(),
                default_headers=extra_headers,
                max_retries=0,
                timeout=None,
                http_client=self._http,
            )
        else:
            self._client = openai.AsyncOpenAI(
                api_key=key.reveal(),
                base_url=base_url,
                default_headers=extra_headers,
                max_retries=0,
                timeout=None,
                http_client=self._http,
            )

    async def aclose(self) -> None:
        await self._client.close()
        # The SDK closes the client it was given today; this keeps the ownership explicit.
        await self._http.aclose()

    def _body(self, request: Request, *, stream: bool) -> dict[str, Any]:
        model = request.options.model or self.model
        return self.codec.body(request, model=model, stream=stream)

    def _observe(self, headers: Mapping[str, str]) -> None:
        if self._rate_limit_listener is not None:
            info = parse_rate_limit_headers(headers)
            if not info.empty:
                self._rate_limit_listener(info)

    def _sdk_error(self, exc: openai.OpenAIError) -> SwitchyardError:
        if isinstance(exc, openai.APIStatusError):
            response = exc.response
            self._observe(response.headers)
            try:
                content = response.content
            except httpx2.ResponseNotRead:
                content = b""
            return self.codec.error(exc.status_code, response.headers, content, provider=self.name)
        if isinstance(exc, openai.APITimeoutError):
            return Timeout("upstream timed out", provider=self.name)
        cause = f" ({type(exc.__cause__).__name__})" if exc.__cause__ is not None else ""
        return TransportError(f"{type(exc).__name__}{cause}: {exc}", provider=self.name)

    async def complete(self, request: Request) -> Response:
        body = self._body(request, stream=False)
        try:
            raw = await self._client.chat.completions.with_raw_response.create(**body)
            self._observe(raw.headers)
            parsed = raw.parse()
        except openai.OpenAIError as exc:
            raise self._sdk_error(exc) from None
        except ValueError as exc:  # json.JSONDecodeError: the SDK lets it through
            raise TransportError(
                f"response is not a chat.completion: {type(exc).__name__}", provider=self.name
            ) from None
        return completion_to_response(self.codec, parsed, provider=self.name)

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        body = self._body(request, stream=True)
        decoder = self.codec.stream_decoder(provider=self.name, model=body["model"])
        sse = SSEDecoder(provider=self.name)
        create = self._client.chat.completions.with_streaming_response.create
        try:
            async with create(**body) as response, aclosing(response.iter_bytes()) as chunks:
                self._observe(response.headers)
                async for chunk in chunks:
                    for event in sse.feed(chunk):
                        for unified in decoder.feed(event):
                            yield unified
        except openai.OpenAIError as exc:
            raise self._sdk_error(exc) from None
        except _HTTP_TIMEOUT as exc:
            raise Timeout(f"upstream timed out: {type(exc).__name__}", provider=self.name) from None
        except _HTTP_ERRORS as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}", provider=self.name) from None
        if sse.close():
            for unified in decoder.close():
                yield unified


def completion_to_response(codec: OpenAICodec, parsed: object, *, provider: str) -> Response:
    """The SDK's parsed completion, taken back to its wire shape and decoded by ``codec``."""
    if not isinstance(parsed, ChatCompletion):
        raise TransportError("response is not a JSON chat.completion", provider=provider)
    try:
        wire = parsed.model_dump(mode="json", by_alias=True, exclude_unset=True, warnings=False)
    except (ValueError, TypeError) as exc:
        raise TransportError(
            f"response is not a chat.completion: {type(exc).__name__}", provider=provider
        ) from None
    return codec.decode_object(wire, provider=provider)
