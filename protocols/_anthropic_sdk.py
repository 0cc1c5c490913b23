"""Anthropic Messages through the official async SDK, with the native codec's semantics.

The request body is the codec's; the SDK's parsed message and stream events are taken back
to their wire dicts (``to_dict``: only fields the API set, under their API names) and decoded
by the same codec code, so both transports give identical results and typed errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, final

import anthropic
import httpx2
import msgspec
import trio

from ._anthropic import API_VERSION, AnthropicCodec
from ._errors import ProviderUnavailable, SwitchyardError, Timeout, TransportError
from ._http import make_http_client
from ._provider import LLMProvider
from ._ratelimit import parse_rate_limit_headers
from ._secret import Secret
from ._types import Finish, Request, Response, StreamEvent

__all__ = ["AnthropicClient", "AnthropicSDKProvider"]

AnthropicClient = (
    anthropic.AsyncAnthropic | anthropic.AsyncAnthropicBedrock | anthropic.AsyncAnthropicVertex
)

# Sampling parameters the SDK's ``messages.create`` has no keyword for; sent as extra body.
_EXTRA_BODY = ("temperature", "top_p")
_HTTP_TIMEOUTS = httpx2.TimeoutException
_HTTP_ERRORS = (httpx2.TransportError, httpx2.StreamError)


def _raw(body: object) -> bytes:
    # The SDK keeps an error body as parsed JSON, or as text when it was not JSON.
    if body is None:
        return b""
    return body.encode() if isinstance(body, str) else msgspec.json.encode(body)


def _wire(obj: object) -> object:
    # Fields the API did not send stay out, so the codec sees what the wire carried.
    if isinstance(obj, anthropic.BaseModel):
        return obj.to_dict(mode="python", warnings=False)
    return obj


@final
class AnthropicSDKProvider(LLMProvider):
    """Anthropic through ``anthropic.AsyncAnthropic`` (or a given Bedrock/Vertex client).

    Without ``client`` it builds an ``AsyncAnthropic`` on ``http_client`` or, by default, on
    an httpx2 client it owns and closes in ``aclose()`` (the SDK's own cleanup is
    asyncio-only). A given ``client`` or ``http_client`` stays the caller's to close; a given
    ``client`` is used through ``with_options(max_retries=0, timeout=None)``.
    Either way the SDK never retries (the runtime does) and has no timeout of its own (the
    caller's cancel scopes are the deadline; this also skips the SDK's refusal of large
    ``max_tokens`` without streaming).

    What the SDK hides, and how it is handled:

    * A stream that ends without ``message_stop`` ends the SDK's iterator quietly, and a
      truncated last event is dropped. The events go through the codec's decoder, which
      emits ``Finish`` only at ``message_stop``, so such a stream has no ``Finish`` and the
      runtime reports it as broken.
    * An in-stream ``error`` event is raised as an ``APIStatusError`` carrying the HTTP
      status of the stream (200); its body is typed by the codec like the native stream.
    * The SDK has no ``temperature``/``top_p`` keywords; they go in ``extra_body``.
    * Events without an ``event:`` line are skipped by the SDK (Anthropic always names them).
    * The SDK sends its own, newer ``anthropic-version``; the client built here pins the
      native transport's. Bedrock and Vertex clients keep their SDK's version (in the body).
    * The SDK sends the key as ``Authorization: Bearer``, not ``x-api-key``, and still reads
      ``ANTHROPIC_CUSTOM_HEADERS`` from the environment.
    * Bedrock streaming (AWS event-stream frames) and Bedrock SigV4 signing need
      ``botocore``, which is not a dependency here; without it they raise
      ``ProviderUnavailable``.
    """

    def __init__(
        self,
        *,
        name: str,
        model: str,
        api_key: Secret | str | None = None,
        base_url: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        client: AnthropicClient | None = None,
        http_client: httpx2.AsyncClient | None = None,
        max_connections: int = 100,
        codec: AnthropicCodec | None = None,
    ) -> None:
        self.name = name
        self.kind = "anthropic"
        self.model = model
        self.codec = codec or AnthropicCodec()
        self._http: httpx2.AsyncClient | None = None
        self._request_headers: dict[str, str | anthropic.Omit] = {}
        if client is None:
            key = api_key if isinstance(api_key, Secret) else Secret(api_key or "")
            if not key:
                # Like the native transport: no key, no auth header (the API answers 401).
                # An explicit "" also keeps the SDK from looking for credentials elsewhere.
                self._request_headers["Authorization"] = anthropic.omit
            if http_client is None:
                self._http = make_http_client("httpx2", max_connections=max_connections)
            self._client: AnthropicClient = anthropic.AsyncAnthropic(
                api_key=key.reveal(),
                base_url=base_url,
                http_client=http_client or self._http,
                max_retries=0,
                timeout=None,
                # The SDK would send its own, newer version; pin the native transport's.
                default_headers={"anthropic-version": API_VERSION, **(extra_headers or {})},
            )
        else:
            self._client = client.with_options(
                max_retries=0, timeout=None, default_headers=extra_headers
            )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def _params(self, request: Request, *, stream: bool) -> tuple[dict[str, Any], dict[str, Any]]:
        model = request.options.model or self.model
        body = self.codec.payload(request, model=model, stream=stream)
        extra = {key: body.pop(key) for key in _EXTRA_BODY if key in body}
        return body, extra

    def _observe(self, headers: Mapping[str, str]) -> None:
        if self._rate_limit_listener is not None:
            info = parse_rate_limit_headers(headers)
            if not info.empty:
                self._rate_limit_listener(info)

    def _sdk_error(self, exc: Exception) -> SwitchyardError:
        if isinstance(exc, anthropic.APIStatusError):
            if exc.status_code < 300:  # an in-stream error event
                return self.codec.stream_error(exc.body, provider=self.name)
            headers = exc.response.headers
            self._observe(headers)
            return self.codec.error(exc.status_code, headers, _raw(exc.body), provider=self.name)
        if isinstance(exc, anthropic.APITimeoutError | _HTTP_TIMEOUTS):
            return Timeout(f"upstream timed out: {type(exc).__name__}", provider=self.name)
        return TransportError(f"{type(exc).__name__}: {exc}", provider=self.name)

    def _missing(self, exc: ImportError) -> ProviderUnavailable:
        # An optional SDK dependency (botocore for Bedrock) that is not installed.
        return ProviderUnavailable(f"the SDK client needs {exc.name}", provider=self.name)

    async def complete(self, request: Request) -> Response:
        body, extra = self._params(request, stream=False)
        try:
            raw = await self._client.messages.with_raw_response.create(
                **body, extra_headers=self._request_headers or None, extra_body=extra or None
            )
            self._observe(raw.headers)
            message = await raw.parse()
        except (anthropic.APIError, *_HTTP_ERRORS, _HTTP_TIMEOUTS) as exc:
            raise self._sdk_error(exc) from None
        except ImportError as exc:
            raise self._missing(exc) from None
        except ValueError as exc:  # the body is not JSON
            raise TransportError(f"response body: {exc}", provider=self.name) from None
        return self.codec.decode_object(_wire(message), provider=self.name)

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent | str]:
        body, extra = self._params(request, stream=True)
        model = request.options.model or self.model
        decoder = self.codec.stream_decoder(provider=self.name, model=model)
        try:
            raw = await self._client.messages.with_raw_response.create(
                **body, extra_headers=self._request_headers or None, extra_body=extra or None
            )
        except (anthropic.APIError, *_HTTP_ERRORS, _HTTP_TIMEOUTS) as exc:
            raise self._sdk_error(exc) from None
        except ImportError as exc:
            raise self._missing(exc) from None
        self._observe(raw.headers)
        try:
            events: anthropic.AsyncStream[Any] = await raw.parse()
        except ImportError as exc:  # the stream's decoder could not be built
            with trio.CancelScope(shield=True):
                await raw.http_response.aclose()
            raise self._missing(exc) from None
        iterator = events.__aiter__()
        try:
            while True:
                try:
                    event = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                except (anthropic.APIError, *_HTTP_ERRORS, _HTTP_TIMEOUTS) as exc:
                    raise self._sdk_error(exc) from None
                except ValueError as exc:  # an event whose data is not JSON
                    raise TransportError(f"stream event: {exc}", provider=self.name) from None
                for unified in decoder.feed_object(_wire(event)):
                    yield unified
                    if isinstance(unified, Finish):
                        return  # message_stop ends the answer; nothing after it counts
        finally:
            with trio.CancelScope(shield=True):
                await events.close()


def anthropic_bedrock_provider(
    *,
    name: str,
    model: str,
    region: str,
    api_key: Secret | str | None = None,
    max_connections: int = 100,
) -> AnthropicSDKProvider:
    """Claude on AWS Bedrock through ``anthropic.AsyncAnthropicBedrock``.

    ``api_key`` is a Bedrock API key (bearer token); without one the SDK signs requests with
    the AWS credentials in the environment, which needs ``botocore``.
    """
    http = make_http_client("httpx2", max_connections=max_connections)
    key = api_key.reveal() if isinstance(api_key, Secret) else api_key
    client = anthropic.AsyncAnthropicBedrock(aws_region=region, api_key=key, http_client=http)
    provider = AnthropicSDKProvider(name=name, model=model, client=client)
    provider._http = http  # the provider owns the HTTP client it was built on
    return provider


def anthropic_vertex_provider(
    *,
    name: str,
    model: str,
    region: str,
    project: str,
    access_token: Secret | str | None = None,
    max_connections: int = 100,
) -> AnthropicSDKProvider:
    """Claude on Google Vertex AI through ``anthropic.AsyncAnthropicVertex``.

    ``access_token`` is an OAuth token; without one the SDK uses Google's application
    default credentials.
    """
    http = make_http_client("httpx2", max_connections=max_connections)
    token = access_token.reveal() if isinstance(access_token, Secret) else access_token
    client = anthropic.AsyncAnthropicVertex(
        region=region, project_id=project, access_token=token, http_client=http
    )
    provider = AnthropicSDKProvider(name=name, model=model, client=client)
    provider._http = http
    return provider
