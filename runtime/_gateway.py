"""The OpenAI-compatible gateway: an ASGI app in front of a runtime, served by hypercorn.

Routes: ``POST /v1/chat/completions`` (JSON and SSE), ``GET /v1/models``, ``GET /health``
(200 when some provider can serve, else 503) and ``GET /metrics`` (Prometheus text).
A client that disconnects cancels its upstream request.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, final

import structlog
import trio

from protocols import (
    ErrorEvent,
    Finish,
    InvalidRequest,
    SwitchyardError,
    TextDelta,
    ToolCallDelta,
    UsageEvent,
    encode_json,
)
from protocols._openai_gateway import (
    ChatRequest,
    error_body,
    error_status,
    parse_chat_request,
    render_chunk,
    render_completion,
    render_models,
    render_usage_chunk,
)

from ._metrics import GatewayMetrics
from ._runtime import Runtime

__all__ = ["Gateway", "ModelRoute"]

_log = structlog.get_logger("switchyard.gateway")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_JSON = [(b"content-type", b"application/json")]
_SSE = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]


@final
class ModelRoute:
    """Which providers serve a requested model name, and which model to ask them for.

    ``model`` None means each provider's own default (the ``auto`` model).
    """

    __slots__ = ("model", "providers")

    def __init__(self, providers: tuple[str, ...], model: str | None) -> None:
        self.providers = providers
        self.model = model


@final
class Gateway:
    """ASGI application. ``routes`` maps each model name or alias clients may ask for to a
    ``ModelRoute``; ``auto`` is always accepted. ``api_keys`` empty means no authentication.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        routes: Mapping[str, ModelRoute],
        api_keys: Sequence[str] = (),
        max_body_bytes: int = 4 * 1024 * 1024,
        models: Sequence[tuple[str, str]] = (),
    ) -> None:
        self.runtime = runtime
        self.routes = dict(routes)
        self.routes.setdefault("auto", ModelRoute((), None))
        self._keys = [key.encode() for key in api_keys if key]
        self.max_body_bytes = max_body_bytes
        self.metrics = GatewayMetrics(runtime)
        self._models = list(models)
        self._ids = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        if path == "/health" and method == "GET":
            health = self.runtime.health()
            await _respond(send, 200 if health.serving else 503, encode_json(health))
            return
        if path == "/metrics" and method == "GET":
            metrics = self.metrics.render()
            headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
            await _respond(send, 200, metrics, headers)
            return
        if path in ("/v1/chat/completions", "/v1/models") and not self._authorised(scope):
            await _error(send, 401, "invalid or missing API key", "authentication_error")
            return
        if path == "/v1/models" and method == "GET":
            await _respond(send, 200, render_models(self._models))
            return
        if path == "/v1/chat/completions":
            if method != "POST":
                await _error(send, 405, "use POST", "invalid_request_error")
                return
            await self._chat(receive, send)
            return
        await _error(send, 404, f"no route for {method} {path}", "not_found_error")

    def _authorised(self, scope: Scope) -> bool:
        if not self._keys:
            return True
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        if scheme.lower() != b"bearer" or not token:
            return False
        # Compare against every key, each in constant time, so timing reveals nothing.
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(token, key)
        return matched

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise InvalidRequest(
                    f"the body is larger than {self.max_body_bytes} bytes", field="body", status=413
                )
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _resolve(self, request: ChatRequest) -> dict[str, Any]:
        route = self.routes.get(request.model)
        if route is None:
            known = ", ".join(sorted(self.routes))
            raise InvalidRequest(
                f"unknown model {request.model!r}; known: {known}", field="model", status=404
            )
        options = dict(request.options)
        if route.providers:
            options["providers"] = route.providers
        if route.model is not None:
            options["model"] = route.model
        return options

    async def _chat(self, receive: Receive, send: Send) -> None:
        try:
            body = await self._read_body(receive)
            if body is None:
                return
            request = parse_chat_request(body)
            options = self._resolve(request)
        except InvalidRequest as error:
            self.metrics.failed(error.kind)
            await _respond(send, error.status or 400, error_body(error))
            return
        self._ids += 1
        completion_id = f"chatcmpl-sy{self._ids}"
        async with trio.open_nursery() as nursery:
            # A client that goes away cancels this nursery, and with it the upstream call.
            nursery.start_soon(_cancel_on_disconnect, receive, nursery.cancel_scope)
            if request.stream:
                await self._stream(send, request, options, completion_id)
            else:
                await self._complete(send, request, options)
            nursery.cancel_scope.cancel()

    async def _complete(self, send: Send, request: ChatRequest, options: dict[str, Any]) -> None:
        try:
            response = await self.runtime.complete(request.messages, **options)
        except SwitchyardError as error:
            self.metrics.failed(error.kind)
            await _respond(send, error_status(error), error_body(error))
            return
        self.metrics.answered(response)
        headers = [*_JSON, (b"x-switchyard-provider", response.provider.encode())]
        body = render_completion(response, completion_id=f"chatcmpl-{response.request_id}")
        await _respond(send, 200, body, headers)

    async def _stream(
        self, send: Send, request: ChatRequest, options: dict[str, Any], completion_id: str
    ) -> None:
        created = int(time.time())
        try:
            context = self.runtime.stream(request.messages, **options)
            events = await context.__aenter__()
        except SwitchyardError as error:
            self.metrics.failed(error.kind)
            await _respond(send, error_status(error), error_body(error))
            return
        try:
            started = False
            model = request.model
            tool_ids: set[int] = set()
            async for event in events:
                if not started:
                    if isinstance(event, ErrorEvent):
                        # Failed before anything was sent: a plain error with its status.
                        self.metrics.failed(event.error.kind)
                        await _respond(send, error_status(event.error), error_body(event.error))
                        return
                    # Headers go out with the first event, once a provider is answering,
                    # so they can name it.
                    provider = events.provider or ""
                    headers = [*_SSE, (b"x-switchyard-provider", provider.encode())]
                    await send({"type": "http.response.start", "status": 200, "headers": headers})
                    started = True
                frames = self._frames(event, completion_id, created, model, request, tool_ids)
                if frames:
                    await send({"type": "http.response.body", "body": frames, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            await context.__aexit__(None, None, None)

    def _frames(
        self,
        event: Any,
        completion_id: str,
        created: int,
        model: str,
        request: ChatRequest,
        tool_ids: set[int],
    ) -> bytes:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return render_chunk(
                completion_id=completion_id,
                created=created,
                model=model,
                delta=delta,
                finish_reason=finish,
            )

        match event:
            case TextDelta(text=text):
                return chunk({"role": "assistant", "content": text})
            case ToolCallDelta():
                call: dict[str, Any] = {"index": event.index}
                if event.index not in tool_ids:
                    tool_ids.add(event.index)
                    call.update(
                        id=event.id or f"call_{event.index}",
                        type="function",
                        function={"name": event.name or "", "arguments": event.arguments_delta},
                    )
                else:
                    call["function"] = {"arguments": event.arguments_delta}
                return chunk({"tool_calls": [call]})
            case UsageEvent():
                return b""
            case Finish(response=response) if response is not None:
                self.metrics.answered(response)
                frames = chunk({}, response.finish_reason)
                if request.include_usage:
                    frames += render_usage_chunk(
                        completion_id=completion_id,
                        created=created,
                        model=response.model,
                        usage=response.usage,
                    )
                return frames + b"data: [DONE]\n\n"
            case ErrorEvent(error=error):
                # An error inside the stream, then the end of it; never a silent stop.
                self.metrics.failed(error.kind)
                return b"data: " + error_body(error) + b"\n\n"
        return b""


async def _cancel_on_disconnect(receive: Receive, scope: trio.CancelScope) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            scope.cancel()
            return


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or _JSON})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _error(send: Send, status: int, message: str, kind: str) -> None:
    body = encode_json({"error": {"message": message, "type": kind, "param": None, "code": None}})
    await _respond(send, status, body)
