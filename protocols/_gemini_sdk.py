"""Gemini through the official ``google-genai`` SDK, run under trio."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import httpx
import httpx2
import msgspec
import pydantic
import trio
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from ._errors import InvalidRequest, SwitchyardError, Timeout, TransportError
from ._gemini import GeminiCodec, stream_error
from ._http import _failures, make_http_client
from ._provider import LLMProvider
from ._ratelimit import parse_rate_limit_headers
from ._secret import Secret
from ._sse import ServerSentEvent
from ._types import Request, Response, StreamEvent

__all__ = ["GeminiSDKProvider"]

_CONTENTS: Final = pydantic.TypeAdapter(list[genai_types.Content])
_SDK_ONLY: Final = {"sdk_http_response", "automatic_function_calling_history", "parsed"}
_encoder = msgspec.json.Encoder()


# The SDK is httpx's; the client under it, httpx2's.
_TIMEOUTS = _failures("httpx2").timeout + _failures("httpx").timeout
_BROKEN = _failures("httpx2").transport + _failures("httpx").transport


def _no_sync_calls(request: httpx2.Request) -> httpx2.Response:
    raise RuntimeError("GeminiSDKProvider makes no synchronous calls")


class GeminiSDKProvider(LLMProvider):
    """The Gemini API through ``google.genai.Client(...).aio``, normalised by ``GeminiCodec``.

    The request body is the codec's, handed to the SDK as its typed objects; answers go
    back through the codec (complete: the SDK's raw JSON; streamed: each parsed chunk dumped
    back to its wire dict), so both transports give identical results. The SDK's retries,
    automatic function calling and automatic continuation are off (the runtime retries);
    its HTTP client is an httpx2 ``AsyncClient`` this provider owns and closes in ``aclose``.

    What the SDK hides or changes, and how this transport copes:

    * It accepts a stream that ends without the ``finishReason`` chunk, and takes a last
      event that lacks its blank-line terminator as whole. The codec's decoder emits
      ``Finish`` only after a ``finishReason``, so a cut stream still has no ``Finish``; a
      cut inside the last event is seen only when its JSON is incomplete.
    * It does not close a stream's HTTP response when its generator is dropped (its cleanup
      relies on garbage collection). This provider records the responses each stream
      opens (an httpx2 response hook) and closes them itself.
    * An in-stream error chunk whose ``code`` is missing or not a number makes the SDK
      raise ``TypeError`` instead of ``APIError``: that surfaces as a crash, not a typed
      error (the native transport reads the ``status`` name instead).
    * It sends ``functionDeclarations`` with snake_case keys (``parameters_json_schema``)
      and inline bytes as URL-safe base64; the API reads both spellings.
    """

    def __init__(
        self,
        *,
        name: str,
        base_url: str,
        api_key: Secret | str | None,
        model: str,
        extra_headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
    ) -> None:
        key = api_key if isinstance(api_key, Secret) else Secret(api_key or "")
        if not key:
            # The SDK would fall back to GOOGLE_API_KEY / GEMINI_API_KEY from the environment.
            raise ValueError("GeminiSDKProvider needs an API key")
        self.name = name
        self.kind = "gemini"
        self.model = model
        self._codec = GeminiCodec()
        self._sending: dict[trio.lowlevel.Task, list[Any]] = {}
        self._http: Any = make_http_client("httpx2", max_connections=max_connections)
        self._http.event_hooks = {"request": [], "response": [self._on_response]}
        # The SDK builds a sync client too (a pool and TLS setup); this one opens nothing.
        self._sync = httpx2.Client(transport=httpx2.MockTransport(_no_sync_calls))
        options = genai_types.HttpOptions(
            base_url=base_url.rstrip("/"),
            api_version="v1beta",
            headers=dict(extra_headers or {}),
            httpx_client=self._sync,
            httpx_async_client=self._http,
            retry_options=genai_types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(vertexai=False, api_key=key.reveal(), http_options=options)

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        await self._http.aclose()
        self._sync.close()

    async def _on_response(self, response: Any) -> None:
        if self._rate_limit_listener is not None:
            info = parse_rate_limit_headers(response.headers)
            if not info.empty:
                self._rate_limit_listener(info)
        opened = self._sending.get(trio.lowlevel.current_task())
        if opened is not None:
            opened.append(response)

    def _arguments(
        self, request: Request, *, stream: bool
    ) -> tuple[str, list[genai_types.Content], genai_types.GenerateContentConfig]:
        model = request.options.model or self.model
        self._codec.path(request, model=model, stream=stream)  # the same model-name check
        body = self._codec.body(request)
        config: dict[str, Any] = {
            key: body[key] for key in ("systemInstruction", "tools", "toolConfig") if key in body
        }
        config.update(body.get("generationConfig", {}))
        config["automaticFunctionCalling"] = {"disable": True}
        config["automaticContinuation"] = False
        if not stream:
            config["shouldReturnHttpResponse"] = True
        try:
            contents = _CONTENTS.validate_json(_encoder.encode(body["contents"]))
            parsed = genai_types.GenerateContentConfig.model_validate_json(_encoder.encode(config))
        except (TypeError, ValueError, OverflowError) as exc:
            # pydantic.ValidationError is a ValueError.
            raise InvalidRequest(f"the SDK cannot carry this request: {exc}") from None
        return model, contents, parsed

    def _typed(self, exc: Exception) -> SwitchyardError | None:
        if isinstance(exc, genai_errors.APIError):
            response = exc.response
            if isinstance(response, httpx2.Response | httpx.Response):
                return self._codec.error(
                    exc.code, response.headers, response.content, provider=self.name
                )
            payload = exc.details if isinstance(exc.details, dict) else {}
            return stream_error(payload, provider=self.name)
        if isinstance(exc, _TIMEOUTS):
            return Timeout(f"upstream timed out: {type(exc).__name__}", provider=self.name)
        if isinstance(exc, _BROKEN):
            return TransportError(f"{type(exc).__name__}: {exc}", provider=self.name)
        if isinstance(exc, genai_errors.UnknownApiResponseError | pydantic.ValidationError):
            return TransportError(
                f"not a Gemini response ({type(exc).__name__})", provider=self.name
            )
        return None

    async def complete(self, request: Request) -> Response:
        model, contents, config = self._arguments(request, stream=False)
        try:
            result = await self._client.aio.models.generate_content(
                model=model, contents=contents, config=config
            )
        except Exception as exc:
            if (error := self._typed(exc)) is None:
                raise
            raise error from None
        raw = result.sdk_http_response.body if result.sdk_http_response else None
        return self._codec.decode((raw or "").encode(), provider=self.name)

    async def _next(
        self, chunks: AsyncIterator[genai_types.GenerateContentResponse], opened: list[Any]
    ) -> genai_types.GenerateContentResponse | None:
        # Whatever this task sends while it waits here belongs to this stream.
        task = trio.lowlevel.current_task()
        self._sending[task] = opened
        try:
            return await anext(chunks, None)
        finally:
            del self._sending[task]

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent | str]:
        model, contents, config = self._arguments(request, stream=True)
        decoder = self._codec.stream_decoder(provider=self.name, model=model)
        opened: list[Any] = []
        chunks: Any = None
        try:
            chunks = await self._client.aio.models.generate_content_stream(
                model=model, contents=contents, config=config
            )
            while (chunk := await self._next(chunks, opened)) is not None:
                wire = chunk.model_dump(
                    mode="json", by_alias=True, exclude_none=True, exclude=_SDK_ONLY
                )
                event = ServerSentEvent("message", _encoder.encode(wire).decode())
                for unified in decoder.feed(event):
                    yield unified
        except Exception as exc:
            if (error := self._typed(exc)) is None:
                raise
            raise error from None
        finally:
            with trio.CancelScope(shield=True):
                if chunks is not None:
                    await chunks.aclose()
                for response in opened:
                    await response.aclose()
        for unified in decoder.close():
            yield unified
