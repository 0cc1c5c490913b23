"""The ASGI application: routing, auth, recording, limits, faults, responses."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from email.utils import formatdate
from typing import Any, Literal

import anyio
import msgspec

from ._anthropic import AnthropicApi
from ._config import PROVIDERS, EmulatorConfig, Provider, ProviderConfig
from ._faults import FaultError, FaultSpec, FaultState, parse_fault, to_fault
from ._gemini import GeminiApi
from ._limits import LimitStatus, RateWindow
from ._model import ApiError, Prompt, Reply, plan_reply
from ._openai import OpenAIApi
from ._provider import ErrorInfo, Headers, ProviderApi, StreamPlan, encode
from ._record import REDACTED, SECRET_HEADERS, RecordedRequest, key_fingerprint, redact_query
from ._text import input_tokens

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Op = Literal["chat", "messages", "count", "models", "generate", "stream"]

FAULT_HEADER = "x-emulator-fault"
_decode = msgspec.json.decode
_BAD_JSON = {
    "openai": (
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
        "sent was not valid JSON. If you have trouble figuring out how to fix this, please "
        "contact us through our help center at help.openai.com.)"
    ),
    "anthropic": "There was an issue with your request body. Please check that it is valid JSON.",
    "gemini": "Invalid JSON payload received. Unexpected token.",
}


def _number(value: float) -> bytes:
    return (str(int(value)) if value == int(value) else f"{value:g}").encode()


class Emulator:
    """The emulator: a plain ASGI app plus its mutable state and Python API."""

    def __init__(self, config: EmulatorConfig | None = None) -> None:
        self.config = config or EmulatorConfig()
        cache = self.config.prompt_cache
        self._apis: dict[Provider, ProviderApi] = {
            "openai": OpenAIApi(cache),
            "anthropic": AnthropicApi(cache),
            "gemini": GeminiApi(cache),
        }
        self._records: deque[RecordedRequest] = deque(maxlen=max(1, self.config.record_limit))
        self._faults: dict[Provider, FaultState | None] = {}
        self._windows: dict[Provider, RateWindow] = {}
        self._header_faults: dict[str, FaultState] = {}
        self._cache: dict[Provider, set[str]] = {}
        self.reset()

    # -- Python API -----------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Recorded requests, oldest first (a snapshot)."""
        return list(self._records)

    def requests_for(self, provider: Provider) -> list[RecordedRequest]:
        """Recorded requests of one provider."""
        return [r for r in self._records if r.provider == provider]

    def clear(self) -> None:
        """Forget recorded requests."""
        self._records.clear()

    def set_faults(
        self,
        provider: Provider | Literal["*"],
        spec: FaultSpec | str | Mapping[str, Any] | None,
    ) -> None:
        """Arm (or with None disarm) a standing fault for a provider (``"*"``: all)."""
        for name in self._targets(provider):
            self._faults[name] = None if spec is None else FaultState(to_fault(spec))

    def set_limits(
        self,
        provider: Provider | Literal["*"],
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        window: float = 60.0,
    ) -> None:
        """Replace a provider's RPM/TPM limits (None: unlimited); empties its window."""
        for name in self._targets(provider):
            self._windows[name] = RateWindow(rpm, tpm, window)

    def reset(self) -> None:
        """Back to the configured state: faults, limits, caches and records."""
        for name in PROVIDERS:
            cfg = self.config.provider(name)
            self._faults[name] = None if cfg.faults is None else FaultState(to_fault(cfg.faults))
            self._windows[name] = RateWindow(cfg.rpm, cfg.tpm, cfg.window)
            self._cache[name] = set()
        self._header_faults.clear()
        self._records.clear()

    def _targets(self, provider: str) -> tuple[Provider, ...]:
        if provider in ("*", "all"):
            return PROVIDERS
        for name in PROVIDERS:
            if name == provider:
                return (name,)
        raise ValueError(f"unknown provider {provider!r}")

    # -- ASGI -----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body", False):
                break
        path: str = scope["path"]
        method: str = scope["method"]
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        if path.startswith("/_emulator/"):
            await self._control(method, path, body, send)
            return
        route = _route(method, path, headers)
        if route is None:
            # OpenAI's shape for an unknown route (the others answer HTML or bare 404s).
            error = {
                "message": f"Invalid URL ({method} {path})",
                "type": "invalid_request_error",
                "param": None,
                "code": None,
            }
            payload = encode({"error": error})
            await _respond(send, 404, [(b"content-type", b"application/json")], payload)
            return
        await self._provider_request(scope, headers, body, route, receive, send)

    async def _provider_request(
        self,
        scope: Scope,
        headers: dict[str, str],
        raw: bytes,
        route: tuple[Provider, Op, str | None],
        receive: Receive,
        send: Send,
    ) -> None:
        provider, op, model = route
        api = self._apis[provider]
        cfg = self.config.provider(provider)
        query = scope.get("query_string", b"").decode("latin-1")
        key = api.api_key(headers, query)
        record = RecordedRequest(
            provider=provider,
            method=scope["method"],
            path=scope["path"],
            query=redact_query(query),
            headers={k: REDACTED if k in SECRET_HEADERS else v for k, v in headers.items()},
            body=None,
            received_at=time.time(),
            api_key_sha256=None if key is None else key_fingerprint(key),
        )
        self._records.append(record)
        ex = _Exchange(api, cfg, record, ErrorInfo(model=model or "", api_key=key), send)

        if raw:
            try:
                record.body = _decode(raw)
            except msgspec.DecodeError:
                record.body = raw.decode("utf-8", "replace")
                if op != "models":
                    ex.info.message = _BAD_JSON[provider]
                    await ex.fail("bad_request")
                    return
        if key is None:
            await ex.fail("missing_key")
            return
        if cfg.valid_keys is not None and key not in cfg.valid_keys:
            await ex.fail("invalid_key")
            return
        if provider == "anthropic" and "anthropic-version" not in headers:
            ex.info.message = "anthropic-version: header is required"
            await ex.fail("bad_request")
            return
        if op == "models":
            await ex.ok(api.models(cfg.models))
            return

        body = record.body
        if op == "count":
            body = _count_body(provider, body)
        try:
            prompt = api.parse(body, model)
        except ApiError as exc:
            ex.info.message, ex.info.param = exc.message, exc.param
            await ex.fail(exc.kind)
            return
        ex.info.model = prompt.model
        if cfg.models is not None and prompt.model.removeprefix("models/") not in cfg.models:
            await ex.fail("not_found")
            return
        if op == "count":
            n = input_tokens(prompt.chars)
            if provider == "gemini":
                details = [{"modality": "TEXT", "tokenCount": n}]
                await ex.ok(encode({"totalTokens": n, "promptTokensDetails": details}))
            else:
                await ex.ok(encode({"input_tokens": n}))
            return
        if op == "stream":
            prompt.stream = True

        fault = self._fault(provider, headers.get(FAULT_HEADER))
        if isinstance(fault, FaultError):
            ex.info.message = f"invalid {FAULT_HEADER} header: {fault}"
            await ex.fail("bad_request")
            return
        record.fault = fault
        reply = plan_reply(prompt)
        self._apply_cache(provider, prompt, reply)
        ex.info.tokens = reply.input_tokens
        if fault is None or not (fault.latency > 0 or fault.first_token > 0 or fault.drip > 0):
            await self._deliver(ex, prompt, reply, fault)
            return
        # A delayed answer stops as soon as the client goes away.
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_cancel_on_disconnect, receive, tasks.cancel_scope)
            await self._deliver(ex, prompt, reply, fault)
            tasks.cancel_scope.cancel()

    async def _deliver(
        self, ex: _Exchange, prompt: Prompt, reply: Reply, fault: FaultSpec | None
    ) -> None:
        """Everything after parsing: latency, errors, limits, then the reply."""
        cfg = ex.cfg
        if fault is not None and fault.latency > 0:
            await anyio.sleep(fault.latency)
        if cfg.context_window is not None and reply.input_tokens > cfg.context_window:
            ex.info.limit = cfg.context_window
            await ex.fail("context_length")
            return
        if fault is not None:
            kind = fault.error_kind
            if kind is not None and (fault.error_event is None or not prompt.stream):
                await _fail_fault(ex, fault, kind)
                return
            if fault.error_event is not None and not prompt.stream:
                await ex.fail("overloaded")
                return

        window = self._windows[ex.api.name]
        extra: Headers = []
        if window.active:
            st = window.admit(anyio.current_time(), reply.total_cost)
            extra = ex.api.limit_headers(st)
            if st.exceeded is not None:
                await _fail_limit(ex, st, extra)
                return

        ex.record.status = 200
        if not prompt.stream:
            await _send_json(ex, prompt, reply, fault, extra)
        else:
            await _send_stream(ex, prompt, reply, fault, extra)

    def _fault(self, provider: Provider, header: str | None) -> FaultSpec | FaultError | None:
        if header is not None:
            state = self._header_faults.get(header)
            if state is None:
                try:
                    state = FaultState(parse_fault(header))
                except FaultError as exc:
                    return exc
                if len(self._header_faults) > 1024:
                    self._header_faults.clear()
                self._header_faults[header] = state
        else:
            state = self._faults[provider]
            if state is None:
                return None
        return state.spec if state.fire() else None

    def _apply_cache(self, provider: Provider, prompt: Prompt, reply: Reply) -> None:
        if prompt.prefix_key is None:
            return
        tokens = input_tokens(prompt.prefix_chars)
        if tokens < self.config.cache_min_tokens:
            return
        seen = self._cache[provider]
        if prompt.prefix_key in seen:
            reply.cache_read_tokens = tokens
        else:
            if len(seen) > 10000:
                seen.clear()
            seen.add(prompt.prefix_key)
            if provider == "anthropic":
                reply.cache_creation_tokens = tokens

    # -- control endpoints ----------------------------------------------------------

    async def _control(self, method: str, path: str, body: bytes, send: Send) -> None:
        headers: Headers = [(b"content-type", b"application/json")]
        action = path.removeprefix("/_emulator/")
        try:
            data: Any = _decode(body) if body else {}
            if method == "GET" and action == "requests":
                await _respond(send, 200, headers, encode(self.requests))
                return
            if method == "GET" and action == "health":
                pass
            elif method != "POST":
                raise LookupError(path)
            elif action == "faults":
                self.set_faults(data.get("provider", "*"), data.get("fault"))
            elif action == "limits":
                self.set_limits(
                    data.get("provider", "*"),
                    rpm=data.get("rpm"),
                    tpm=data.get("tpm"),
                    window=float(data.get("window", 60.0)),
                )
            elif action == "reset":
                self.reset()
            elif action == "clear":
                self.clear()
            else:
                raise LookupError(path)
        except LookupError:
            await _respond(send, 404, headers, b'{"error":"no such control endpoint"}')
            return
        except (ValueError, TypeError, AttributeError, msgspec.DecodeError) as exc:
            await _respond(send, 400, headers, encode({"error": str(exc)}))
            return
        await _respond(send, 200, headers, b'{"ok":true}')


class _Exchange:
    """One provider request being answered: what error and success replies need."""

    __slots__ = ("api", "cfg", "info", "record", "send")

    def __init__(
        self,
        api: ProviderApi,
        cfg: ProviderConfig,
        record: RecordedRequest,
        info: ErrorInfo,
        send: Send,
    ) -> None:
        self.api = api
        self.cfg = cfg
        self.record = record
        self.info = info
        self.send = send

    async def fail(
        self, kind: str, status: int | None = None, extra: Sequence[tuple[bytes, bytes]] = ()
    ) -> None:
        """Answer with the provider's error for ``kind``."""
        api = self.api
        code = status or api.status_for(kind)
        self.record.status = code
        payload, more = api.error(kind, code, self.info)
        headers = [*api.json_headers, *api.request_id_headers(), *more, *extra]
        await _respond(self.send, code, headers, payload)

    async def ok(self, payload: bytes, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
        """Answer 200 with a JSON payload."""
        self.record.status = 200
        headers = [*self.api.json_headers, *self.api.request_id_headers(), *extra]
        await _respond(self.send, 200, headers, payload)


async def _cancel_on_disconnect(receive: Receive, scope: anyio.CancelScope) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    scope.cancel()


async def _fail_fault(ex: _Exchange, fault: FaultSpec, kind: str) -> None:
    extra: Headers = []
    if fault.retry_after is not None:
        if ex.api.name == "gemini":
            ex.info.retry_after = fault.retry_after
        else:
            extra.append((b"retry-after", _number(fault.retry_after)))
    if fault.retry_after_date is not None:
        stamp = formatdate(time.time() + fault.retry_after_date, usegmt=True)
        extra.append((b"retry-after", stamp.encode()))
    if fault.retry_after_ms is not None:
        extra.append((b"retry-after-ms", str(fault.retry_after_ms).encode()))
    if kind == "context_length":
        ex.info.limit = ex.cfg.context_window or 128000
        ex.info.tokens = max(ex.info.tokens, ex.info.limit + 1)
    await ex.fail(kind, fault.status, extra)


async def _fail_limit(ex: _Exchange, st: LimitStatus, extra: Headers) -> None:
    wait = max(1, -int(-st.retry_after // 1))
    ex.info.limits = st
    ex.info.retry_after = float(wait)
    if ex.api.name != "gemini":
        extra = [*extra, (b"retry-after", str(wait).encode())]
    await ex.fail("rate_limit", None, extra)


async def _send_json(
    ex: _Exchange, prompt: Prompt, reply: Reply, fault: FaultSpec | None, extra: Headers
) -> None:
    payload = ex.api.render(prompt, reply)
    if fault is None:
        await ex.ok(payload, extra)
        return
    if fault.first_token > 0:
        await anyio.sleep(fault.first_token)
    if fault.disconnect is not None:
        # Promise the whole body, deliver half, then drop the connection.
        headers = [
            *ex.api.json_headers,
            *ex.api.request_id_headers(),
            *extra,
            (b"content-length", str(len(payload)).encode()),
        ]
        await ex.send({"type": "http.response.start", "status": 200, "headers": headers})
        half = payload[: len(payload) // 2]
        await ex.send({"type": "http.response.body", "body": half, "more_body": True})
        return
    if fault.malformed is not None or fault.truncate is not None:
        payload = payload[: len(payload) // 2]
    await ex.ok(payload, extra)


async def _send_stream(
    ex: _Exchange, prompt: Prompt, reply: Reply, fault: FaultSpec | None, extra: Headers
) -> None:
    api, send = ex.api, ex.send
    plan = api.stream(prompt, reply)
    headers = [*api.sse_headers, *api.request_id_headers(), *extra]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if fault is None or not _shapes_stream(fault):
        await send({"type": "http.response.body", "body": b"".join(plan.frames)})
        return
    frames, tail, abort = _cut(plan, fault, api, ex.info)
    for i, frame in enumerate(frames):
        if i == plan.first_content and fault.first_token > 0:
            await anyio.sleep(fault.first_token)
        elif i and fault.drip > 0:
            await anyio.sleep(fault.drip)
        await send({"type": "http.response.body", "body": frame, "more_body": True})
    if tail:
        await send({"type": "http.response.body", "body": tail, "more_body": True})
    if abort:
        # Returning without the final body message makes the server (hypercorn,
        # uvicorn) close the connection mid-body: the client sees an incomplete
        # chunked read.
        return
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _shapes_stream(fault: FaultSpec) -> bool:
    return (
        fault.first_token > 0
        or fault.drip > 0
        or fault.disconnect is not None
        or fault.error_event is not None
        or fault.truncate is not None
        or fault.malformed is not None
    )


def _count_body(provider: Provider, body: Any) -> Any:
    if not isinstance(body, dict):
        return body
    if provider == "anthropic" and "max_tokens" not in body:
        return {**body, "max_tokens": 1}
    if provider == "gemini" and isinstance(body.get("generateContentRequest"), dict):
        inner: Any = body["generateContentRequest"]
        return inner
    return body


def _cut(
    plan: StreamPlan, fault: FaultSpec, api: ProviderApi, info: ErrorInfo
) -> tuple[list[bytes], bytes, bool]:
    """Apply a stream fault: (frames to send, a final extra frame, abort?)."""
    frames = plan.frames
    body_end = len(frames) - plan.n_term
    if fault.disconnect is not None:
        return frames[: min(fault.disconnect, body_end)], b"", True
    if fault.error_event is not None:
        kind = fault.error_kind or "overloaded"
        status = fault.status or api.status_for(kind)
        return (
            frames[: min(fault.error_event, body_end)],
            api.stream_error(kind, status, info),
            False,
        )
    if fault.malformed is not None:
        # Break a frame the client must parse (SDKs skip e.g. Anthropic pings).
        n = min(max(fault.malformed, plan.first_content), len(frames) - 1)
        victim = frames[n]
        sep = b"\r\n\r\n" if victim.endswith(b"\r\n\r\n") else b"\n\n"
        return frames[:n], victim[: len(victim) // 2].rstrip(b"\r\n") + sep, False
    if fault.truncate is not None:
        return frames[: min(fault.truncate, body_end)], b"", False
    return frames, b"", False


def _route(
    method: str, path: str, headers: Mapping[str, str]
) -> tuple[Provider, Op, str | None] | None:
    if method == "POST":
        if path == "/v1/chat/completions":
            return "openai", "chat", None
        if path == "/v1/messages":
            return "anthropic", "messages", None
        if path == "/v1/messages/count_tokens":
            return "anthropic", "count", None
        for prefix in ("/v1beta/models/", "/v1/models/"):
            if path.startswith(prefix):
                model, _, verb = path[len(prefix) :].rpartition(":")
                if verb == "generateContent":
                    return "gemini", "generate", model
                if verb == "streamGenerateContent":
                    return "gemini", "stream", model
                if verb == "countTokens":
                    return "gemini", "count", model
        return None
    if method == "GET":
        if path == "/v1/models":
            anthropic = "anthropic-version" in headers or "x-api-key" in headers
            return ("anthropic" if anthropic else "openai"), "models", None
        if path == "/v1beta/models":
            return "gemini", "models", None
    return None


async def _respond(send: Send, status: int, headers: Headers, body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
