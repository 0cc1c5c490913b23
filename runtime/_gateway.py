"""The OpenAI-compatible gateway: an ASGI app in front of a runtime, served by hypercorn.

Routes: ``POST /v1/chat/completions`` (JSON and SSE), ``GET /v1/models``, ``GET /health``
(200 when some provider can serve, else 503) and ``GET /metrics`` (Prometheus text).
A client that disconnects cancels its upstream request.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, final

import structlog
import trio

from protocols import (
    AllProvidersFailed,
    ErrorEvent,
    Finish,
    InvalidRequest,
    RateLimited,
    RuntimeClosed,
    StreamEvent,
    StreamInterrupted,
    SwitchyardError,
    TextDelta,
    ToolCallDelta,
    TransportError,
    encode_json,
)
from protocols._openai_gateway import (
    ChatRequest,
    error_body,
    error_status,
    parse_chat_request,
    render_chunk,
    render_completion,
    render_model,
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
Headers = list[tuple[bytes, bytes]]

_JSON: Headers = [(b"content-type", b"application/json")]
_SSE: Headers = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_PROVIDER_HEADER = b"x-switchyard-provider"

_DRAIN_BYTES = 8 * 1024 * 1024
"""How much of an over-large body is read and thrown away so the client gets its 413
(a client still writing when the server closes would see a reset instead)."""


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
class _Reply:
    """The send side of one HTTP exchange; remembers whether the response has started."""

    __slots__ = ("_send", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def start(self, status: int, headers: Headers) -> None:
        self.started = True
        await self._send({"type": "http.response.start", "status": status, "headers": headers})

    async def body(self, data: bytes, *, more: bool) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": more})

    async def respond(self, status: int, body: bytes, headers: Headers | None = None) -> None:
        await self.start(status, headers or _JSON)
        await self.body(body, more=False)

    async def error(
        self,
        status: int,
        message: str,
        kind: str,
        *,
        param: str | None = None,
        code: str | None = None,
        headers: Headers | None = None,
    ) -> None:
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
        await self.respond(status, encode_json(body), [*_JSON, *(headers or [])])


def _hash(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


def _retry_after(error: SwitchyardError) -> float | None:
    """The shortest ``Retry-After`` among rate limits behind ``error``, if any."""
    errors: list[SwitchyardError] = [error]
    if isinstance(error, AllProvidersFailed):
        errors = [a.error for a in error.attempts if a.error is not None]
    waits = [e.retry_after for e in errors if isinstance(e, RateLimited) and e.retry_after]
    return min(waits) if waits else None


@final
class _StreamWriter:
    """Turns one request's runtime events into ``chat.completion.chunk`` SSE frames."""

    __slots__ = ("_role_sent", "_tool_ids", "completion_id", "created", "include_usage", "model")

    def __init__(self, completion_id: str, model: str, *, include_usage: bool) -> None:
        self.completion_id = completion_id
        self.created = int(time.time())
        self.model = model
        self.include_usage = include_usage
        self._role_sent = False
        self._tool_ids: set[int] = set()

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        if not self._role_sent and finish is None:
            delta = {"role": "assistant", **delta}
            self._role_sent = True
        return render_chunk(
            completion_id=self.completion_id,
            created=self.created,
            model=self.model,
            delta=delta,
            finish_reason=finish,
        )

    def frames(self, event: StreamEvent) -> bytes:
        match event:
            case TextDelta(text=text):
                return self._chunk({"content": text}) if text else b""
            case ToolCallDelta():
                call: dict[str, Any] = {"index": event.index}
                if event.index not in self._tool_ids:
                    self._tool_ids.add(event.index)
                    call.update(
                        id=event.id or f"call_{event.index}",
                        type="function",
                        function={"name": event.name or "", "arguments": event.arguments_delta},
                    )
                else:
                    call["function"] = {"arguments": event.arguments_delta}
                return self._chunk({"content": None, "tool_calls": [call]})
            case Finish(response=response) if response is not None:
                if response.model:
                    self.model = response.model
                frames = self._chunk({}, response.finish_reason)
                if self.include_usage:
                    frames += render_usage_chunk(
                        completion_id=self.completion_id,
                        created=self.created,
                        model=self.model,
                        usage=response.usage,
                    )
                return frames + b"data: [DONE]\n\n"
            case ErrorEvent(error=error):
                # An error event inside the stream, then the end of it: never a silent stop.
                # OpenAI clients raise on a data event holding an ``error`` object.
                return b"data: " + error_body(error) + b"\n\n"
        return b""  # usage events: reported in the final usage chunk


@final
class Gateway:
    """ASGI application. ``routes`` maps each model name or alias clients may ask for to a
    ``ModelRoute``; ``auto`` is always accepted. ``api_keys`` empty means no authentication.
    ``provider_models`` names each provider's default model (what ``auto`` gets there).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        routes: Mapping[str, ModelRoute],
        api_keys: Sequence[str] = (),
        max_body_bytes: int = 4 * 1024 * 1024,
        models: Sequence[tuple[str, str]] = (),
        provider_models: Mapping[str, str] | None = None,
    ) -> None:
        self.runtime = runtime
        self.routes = dict(routes)
        self.routes.setdefault("auto", ModelRoute((), None))
        # Keys are kept and compared as digests: equal lengths, compared in constant time.
        self._keys = [_hash(key.encode()) for key in api_keys if key]
        self.max_body_bytes = max_body_bytes
        self.metrics = GatewayMetrics(runtime)
        self._models = list(models)
        self._provider_models = dict(provider_models or {})
        self._clients: set[_Client] = set()
        self._cut = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        reply = _Reply(send)
        try:
            await self._http(scope, receive, reply)
        except Exception:
            # A bug, not a request's failure: log it, and answer if nothing was sent yet.
            _log.exception("gateway_error", method=scope.get("method"), path=scope.get("path"))
            self.metrics.failed("internal")
            if not reply.started:
                await reply.error(500, "internal gateway error", "server_error")

    async def _http(self, scope: Scope, receive: Receive, reply: _Reply) -> None:
        method, path = scope["method"], scope["path"]
        if path == "/health" and method in ("GET", "HEAD"):
            health = self.runtime.health()
            await reply.respond(200 if health.serving else 503, encode_json(health))
            return
        if path == "/metrics" and method in ("GET", "HEAD"):
            headers = [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")]
            await reply.respond(200, self.metrics.render(), headers)
            return
        if not path.startswith("/v1/"):
            await reply.error(404, f"no route for {method} {path}", "invalid_request_error")
            return
        if not self._authorised(scope):
            self.metrics.failed("authentication")
            await reply.error(
                401,
                "invalid or missing API key: send 'Authorization: Bearer <key>'",
                "invalid_request_error",
                code="invalid_api_key",
                headers=[(b"www-authenticate", b"Bearer")],
            )
            return
        if path == "/v1/chat/completions":
            if method != "POST":
                await reply.error(405, "use POST", "invalid_request_error")
                return
            await self._chat(scope, receive, reply)
            return
        if path == "/v1/models" or path.startswith("/v1/models/"):
            if method != "GET":
                await reply.error(405, "use GET", "invalid_request_error")
                return
            await self._models_route(reply, path.removeprefix("/v1/models").removeprefix("/"))
            return
        await reply.error(404, f"no route for {method} {path}", "invalid_request_error")

    async def _models_route(self, reply: _Reply, model: str) -> None:
        if not model:
            await reply.respond(200, render_models(self._models))
            return
        for known, owner in self._models:
            if known == model:
                await reply.respond(200, render_model(known, owner))
                return
        await reply.error(
            404,
            f"the model {model!r} does not exist here",
            "invalid_request_error",
            param="model",
            code="model_not_found",
        )

    def _authorised(self, scope: Scope) -> bool:
        if not self._keys:
            return True
        header = b""
        for name, value in scope["headers"]:
            if name.lower() == b"authorization":
                header = value
        scheme, _, token = header.strip().partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            return False
        # Compare against every key, each in constant time, so timing reveals nothing.
        digest = _hash(token)
        matched = False
        for key in self._keys:
            matched |= hmac.compare_digest(digest, key)
        return matched

    def _declared_length(self, scope: Scope) -> int | None:
        for name, value in scope["headers"]:
            if name.lower() == b"content-length":
                try:
                    return int(value)
                except ValueError:
                    return None
        return None

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body; None if the client went away. Too large raises a 413."""
        limit = self.max_body_bytes
        too_large = InvalidRequest(
            f"the request body is larger than {limit} bytes", field="body", status=413
        )
        declared = self._declared_length(scope)
        if declared is not None and declared > limit + _DRAIN_BYTES:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size <= limit:
                chunks.append(chunk)
            else:
                chunks.clear()  # keep reading (and dropping) so the client reads its 413
                if size > limit + _DRAIN_BYTES:
                    raise too_large
            if not message.get("more_body", False):
                if size > limit:
                    raise too_large
                return b"".join(chunks)

    def _resolve(self, request: ChatRequest) -> dict[str, Any]:
        route = self.routes.get(request.model)
        if route is None:
            raise _UnknownModel(request.model, sorted(self.routes))
        options = dict(request.options)
        if route.providers:
            options["providers"] = route.providers
        if route.model is not None:
            options["model"] = route.model
        return options

    async def _chat(self, scope: Scope, receive: Receive, reply: _Reply) -> None:
        try:
            body = await self._read_body(scope, receive)
            if body is None:
                return
            request = parse_chat_request(body)
            options = self._resolve(request)
        except _UnknownModel as unknown:
            self.metrics.failed("model_not_found")
            await reply.error(
                404,
                f"the model {unknown.model!r} does not exist here; "
                f"known models: {', '.join(unknown.known)}",
                "invalid_request_error",
                param="model",
                code="model_not_found",
            )
            return
        except InvalidRequest as error:
            self.metrics.failed(error.kind)
            await reply.respond(error.status or 400, error_body(error))
            return
        client = _Client()
        if self._cut:
            client.cut()
        self._clients.add(client)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(client.watch, receive)
                if request.stream:
                    await self._stream(reply, client, request, options)
                else:
                    await self._complete(reply, client, request, options)
                nursery.cancel_scope.cancel()  # stop watching: the answer is out
        finally:
            self._clients.discard(client)

    @property
    def in_flight(self) -> int:
        """Chat requests being answered now."""
        return len(self._clients)

    def cut(self) -> None:
        """Cut short every request still being answered (and any that comes later): each
        gets an OpenAI-style 503, or inside a stream an error event, saying the server is
        shutting down. For the end of a shutdown's grace period."""
        self._cut = True
        for client in list(self._clients):
            client.cut()

    async def _fail(self, reply: _Reply, error: SwitchyardError) -> None:
        self.metrics.failed(error.kind, error.provider)
        headers = list(_JSON)
        wait = _retry_after(error)
        if wait is not None and error_status(error) == 429:
            headers.append((b"retry-after", str(max(1, math.ceil(wait))).encode()))
        await reply.respond(error_status(error), error_body(error), headers)

    async def _complete(
        self, reply: _Reply, client: _Client, request: ChatRequest, options: dict[str, Any]
    ) -> None:
        response = None
        with client.upstream():
            try:
                response = await self.runtime.complete(request.messages, **options)
            except SwitchyardError as error:
                await self._fail(reply, error)
                return
        if response is None:  # cancelled: the client went away, or the server is closing
            if not client.gone:
                await self._fail(reply, _shutting_down())
            return
        self.metrics.answered(response)
        headers = [*_JSON, (_PROVIDER_HEADER, response.provider.encode())]
        body = render_completion(response, completion_id=f"chatcmpl-{response.request_id}")
        await reply.respond(200, body, headers)

    async def _stream(
        self, reply: _Reply, client: _Client, request: ChatRequest, options: dict[str, Any]
    ) -> None:
        try:
            async with self.runtime.stream(request.messages, **options) as events:
                writer: _StreamWriter | None = None
                while True:
                    event: StreamEvent | None = None
                    with client.upstream():
                        event = await anext(events, None)
                    if client.gone:
                        break  # leaving the block cancels the upstream request
                    if event is None:
                        # Cut short by a shutdown (or, against the runtime's promise, an end
                        # without a terminal event): say so, never stop silently.
                        event = ErrorEvent(_shutting_down() if client.is_cut else _no_end())
                    if writer is None:
                        if isinstance(event, ErrorEvent):
                            # Failed before anything was sent: a plain error with its status.
                            await self._fail(reply, event.error)
                            return
                        # Headers go out with the first event, once a provider is answering,
                        # so that they can name it.
                        provider = events.provider or ""
                        model = (
                            options.get("model")
                            or self._provider_models.get(provider)
                            or request.model
                        )
                        writer = _StreamWriter(
                            f"chatcmpl-{events.request_id}",
                            model,
                            include_usage=request.include_usage,
                        )
                        await reply.start(200, [*_SSE, (_PROVIDER_HEADER, provider.encode())])
                    if isinstance(event, Finish) and event.response is not None:
                        self.metrics.answered(event.response)
                    elif isinstance(event, ErrorEvent):
                        self.metrics.failed(event.error.kind, events.provider)
                    frames = writer.frames(event)
                    if frames:
                        await reply.body(frames, more=True)
                    if isinstance(event, ErrorEvent | Finish):
                        break  # terminal
                if writer is not None and not client.gone:
                    await reply.body(b"", more=False)
        except SwitchyardError as error:  # refused on entry: invalid request, runtime closed
            if reply.started:
                raise
            await self._fail(reply, error)


@final
class _Client:
    """Watches for the client going away and then cancels the upstream work.

    Only the upstream work runs in the scope it cancels, never a send: hypercorn does its
    own connection bookkeeping inside ``send`` (and tells the app the exchange is over with
    ``http.disconnect`` while the last send is still running), which must not be cut.
    """

    __slots__ = ("_scope", "gone", "is_cut")

    def __init__(self) -> None:
        self.gone = False
        self.is_cut = False
        self._scope: trio.CancelScope | None = None

    def cut(self) -> None:
        """Stop the upstream work, for a shutdown (the client is still there)."""
        self.is_cut = True
        if self._scope is not None:
            self._scope.cancel()

    async def watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                if self._scope is not None:
                    self._scope.cancel()
                return

    def upstream(self) -> trio.CancelScope:
        """A fresh scope for the next piece of upstream work (cancelled if already gone)."""
        scope = self._scope = trio.CancelScope()
        if self.gone or self.is_cut:
            scope.cancel()
        return scope


def _no_end() -> StreamInterrupted:
    cause = TransportError("the stream ended without a finish")
    return StreamInterrupted(cause, delivered_text="")


def _shutting_down() -> RuntimeClosed:
    return RuntimeClosed("the server is shutting down; the request was cut short")


class _UnknownModel(Exception):
    def __init__(self, model: str, known: list[str]) -> None:
        super().__init__(model)
        self.model = model
        self.known = known


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
