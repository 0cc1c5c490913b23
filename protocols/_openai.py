"""OpenAI Chat Completions (``POST {base}/chat/completions``): the codec and the native provider.

The same wire format serves OpenAI-compatible endpoints (Azure OpenAI's ``/openai/v1``, vLLM,
Ollama, Groq...) through ``base_url`` and ``extra_headers``.

Translation notes:

* ``system`` messages stay in place (as ``developer`` with ``system_role="developer"``);
  tool results become one ``tool`` message each, placed before the rest of their message.
* Base64 images are sent as ``data:`` URLs; only PNG, JPEG, WEBP and GIF are accepted.
* A ``refusal`` from the model is returned as text with finish reason ``content_filter``.
* Usage: ``prompt_tokens`` already counts cached tokens and ``completion_tokens`` reasoning
  tokens, which is the unified convention; OpenAI reports no cache writes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, final

import msgspec
from msgspec import Struct

from ._errors import InvalidRequest, PermissionDenied, SwitchyardError, TransportError
from ._http import HttpClientName, HttpProvider
from ._ratelimit import parse_duration, parse_retry_after
from ._secret import Secret
from ._sse import ServerSentEvent
from ._status import error_for_status
from ._types import (
    ContentPart,
    Finish,
    FinishReason,
    ImagePart,
    Message,
    NamedToolChoice,
    Request,
    Response,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    ToolResultPart,
    Usage,
    UsageEvent,
)

__all__ = [
    "MAX_STOP_SEQUENCES",
    "MAX_TOOLS",
    "OpenAICodec",
    "OpenAIStreamDecoder",
    "openai_provider",
]

MAX_STOP_SEQUENCES = 4
MAX_TOOLS = 128
_MAX_TOOL_CALL_ID = 40
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
_FUNCTION_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_PARTICIPANT_NAME = re.compile(r"[^\s<|\\/>]+")
_DATA_URL = re.compile(r"data:([^;,]+);base64,", re.IGNORECASE)
_CONTEXT_MESSAGE = re.compile(
    r"maximum context length|context length exceeded|exceeds the context window", re.IGNORECASE
)
# Wait hints in 429 messages: OpenAI's "try again in 1.4s", Azure's "retry after 6 seconds".
_TRY_AGAIN = re.compile(r"try again in ((?:\d+(?:\.\d+)?(?:ms|h|m|s))+)")
_RETRY_AFTER = re.compile(r"retry after (\d+(?:\.\d+)?) seconds?")
_CONTENT_FILTER_CODES = frozenset(
    {"content_filter", "content_policy_violation", "invalid_prompt", "ResponsibleAIPolicyViolation"}
)
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
# In-stream errors carry no HTTP status; this is the one the API uses for each type or code.
_ERROR_STATUS = {
    "invalid_request_error": 400,
    "context_length_exceeded": 400,
    "authentication_error": 401,
    "invalid_api_key": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "model_not_found": 404,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "requests": 429,
    "tokens": 429,
    "server_error": 500,
}


# --- wire shapes (decoding only; unknown fields are ignored) -------------------------------


class _PromptDetails(Struct):
    cached_tokens: int | None = None


class _CompletionDetails(Struct):
    reasoning_tokens: int | None = None


class _Usage(Struct):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    prompt_tokens_details: _PromptDetails | None = None
    completion_tokens_details: _CompletionDetails | None = None
    # DeepSeek's spelling of cached prompt tokens.
    prompt_cache_hit_tokens: int | None = None


class _Function(Struct):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(Struct):
    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: _Function | None = None


class _Message(Struct):
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(Struct):
    index: int = 0
    message: _Message | None = None
    finish_reason: str | None = None


class _Completion(Struct):
    model: str | None = None
    choices: list[_Choice] | None = None
    usage: _Usage | None = None
    error: Any = None


class _Delta(Struct):
    content: str | None = None
    refusal: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _ChunkChoice(Struct):
    index: int = 0
    delta: _Delta | None = None
    finish_reason: str | None = None


class _Chunk(Struct):
    model: str | None = None
    choices: list[_ChunkChoice] | None = None
    usage: _Usage | None = None
    error: Any = None


_completion_decoder = msgspec.json.Decoder(_Completion)
_chunk_decoder = msgspec.json.Decoder(_Chunk)
_any_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


# --- errors ---------------------------------------------------------------------------------


class _ErrorInfo(Struct, frozen=True):
    message: str
    codes: frozenset[str]
    status_hint: int | None = None


def _error_info(payload: Any, fallback: str) -> _ErrorInfo:
    """Message and codes of OpenAI's ``{"error": {...}}`` and the compatible variants."""
    detail = payload.get("error", payload) if isinstance(payload, dict) else None
    if isinstance(detail, str):
        return _ErrorInfo(detail, frozenset())
    if not isinstance(detail, dict):
        return _ErrorInfo(fallback, frozenset())
    message = detail.get("message")
    codes: set[str] = set()
    status_hint: int | None = None
    for value in (detail.get("type"), detail.get("code")):
        if isinstance(value, str) and value:
            codes.add(value)
        elif isinstance(value, int) and not isinstance(value, bool) and 400 <= value <= 599:
            status_hint = value  # vLLM puts the HTTP status in "code"
    inner = detail.get("innererror")
    if isinstance(inner, dict) and isinstance(inner.get("code"), str):
        codes.add(inner["code"])  # Azure's content filter
    text = message if isinstance(message, str) and message else fallback
    return _ErrorInfo(text, frozenset(codes), status_hint)


def _body_snippet(body: bytes) -> str:
    return " ".join(body[:300].decode("utf-8", "replace").split())[:200]


def _typed_error(
    status: int, info: _ErrorInfo, headers: Mapping[str, str], provider: str
) -> SwitchyardError:
    codes = info.codes
    shown = sorted(c for c in codes if c not in info.message)
    message = f"{info.message} ({', '.join(shown)})" if shown else info.message
    client_error = status < 500 and status != 429
    if status == 429 and "insufficient_quota" in codes:
        # Out of credit: waiting will not help, another provider may.
        return PermissionDenied(f"{status}: {message}", provider=provider, status=status)
    retry_after: float | None = None
    if status == 429 and parse_retry_after(headers) is None:
        retry_after = _wait_hint(info.message)
    return error_for_status(
        status,
        message,
        provider=provider,
        headers=headers,
        retry_after=retry_after,
        context_length=client_error
        and ("context_length_exceeded" in codes or bool(_CONTEXT_MESSAGE.search(info.message))),
        content_filter=client_error and bool(codes & _CONTENT_FILTER_CODES),
        overloaded=status >= 500
        and ("overloaded" in info.message.lower() or "overloaded" in codes),
    )


def _wait_hint(message: str) -> float | None:
    if (duration := _TRY_AGAIN.search(message)) is not None:
        return parse_duration(duration.group(1))
    if (seconds := _RETRY_AFTER.search(message)) is not None:
        return float(seconds.group(1))
    return None


def _stream_error(payload: Any, provider: str) -> SwitchyardError:
    info = _error_info(payload, "error event in the stream")
    status = info.status_hint or next(
        (_ERROR_STATUS[c] for c in sorted(info.codes) if c in _ERROR_STATUS), 500
    )
    return _typed_error(status, info, {}, provider)


# --- decoding -------------------------------------------------------------------------------


def _usage(wire: _Usage | None) -> Usage:
    if wire is None:
        return Usage()
    cached = wire.prompt_tokens_details.cached_tokens if wire.prompt_tokens_details else None
    reasoning = (
        wire.completion_tokens_details.reasoning_tokens if wire.completion_tokens_details else None
    )
    return Usage(
        input_tokens=wire.prompt_tokens or 0,
        output_tokens=wire.completion_tokens or 0,
        cache_read_tokens=cached or wire.prompt_cache_hit_tokens or 0,
        reasoning_tokens=reasoning or 0,
    )


def _finish_reason(raw: str | None, *, tool_calls: bool, refused: bool) -> FinishReason:
    if refused:
        return "content_filter"
    reason = _FINISH.get(raw or "")
    if reason is None:
        # Missing or unknown (some compatible servers): infer it from the content.
        return "tool_calls" if tool_calls else "stop"
    return reason


def _arguments(raw: str | None, name: str, provider: str) -> dict[str, Any]:
    try:
        value = _any_decoder.decode(raw or "{}")
    except msgspec.DecodeError:
        raise TransportError(
            f"tool call {name!r} arguments are not valid JSON", provider=provider
        ) from None
    if not isinstance(value, dict):
        raise TransportError(f"tool call {name!r} arguments are not an object", provider=provider)
    return value


def _tool_call_part(call: _ToolCall, provider: str) -> ToolCallPart:
    fn = call.function
    if fn is None or not fn.name or not call.id:
        raise TransportError(
            f"unsupported tool call (type {call.type!r}) without an id or function name",
            provider=provider,
        )
    return ToolCallPart(
        id=call.id, name=fn.name, arguments=_arguments(fn.arguments, fn.name, provider)
    )


def _response(wire: _Completion, provider: str) -> Response:
    if wire.error is not None and not wire.choices:
        raise _stream_error({"error": wire.error}, provider)
    choice = next((c for c in wire.choices or () if c.index == 0), None)
    if choice is None or choice.message is None:
        raise TransportError("response has no choices[0].message", provider=provider)
    message = choice.message
    content: list[ContentPart] = []
    text = (message.content or "") + (message.refusal or "")
    if text:
        content.append(TextPart(text))
    content.extend(_tool_call_part(call, provider) for call in message.tool_calls or ())
    return Response(
        content=tuple(content),
        finish_reason=_finish_reason(
            choice.finish_reason, tool_calls=bool(message.tool_calls), refused=bool(message.refusal)
        ),
        usage=_usage(wire.usage),
        provider=provider,
        model=wire.model or "",
    )


@final
class OpenAIStreamDecoder:
    """One attempt's ``chat.completion.chunk`` events into unified events.

    ``Finish`` comes only at ``data: [DONE]``, with the finish reason seen earlier; one
    ``UsageEvent`` comes with the usage chunk (``stream_options.include_usage``), or just
    before ``Finish`` from servers that attach usage to a content chunk.
    """

    __slots__ = (
        "_done",
        "_finish",
        "_model",
        "_next_call",
        "_provider",
        "_refused",
        "_tools",
        "_usage",
        "_usage_sent",
    )

    def __init__(self, *, provider: str, model: str) -> None:
        self._provider = provider
        self._model = model
        self._finish: str | None = None
        self._refused = False
        self._tools = False
        self._usage: _Usage | None = None
        self._usage_sent = False
        self._next_call = 0
        self._done = False

    def feed(self, event: ServerSentEvent) -> list[StreamEvent]:
        if self._done:
            return []
        data = event.data.strip()
        if event.event == "error":
            raise _stream_error(self._loads_any(data), self._provider)
        if not data:
            return []
        if data == "[DONE]":
            return self._end()
        try:
            chunk = _chunk_decoder.decode(data)
        except msgspec.DecodeError as exc:
            raise TransportError(
                f"stream chunk is not a chat.completion.chunk: {exc}", provider=self._provider
            ) from None
        if chunk.error is not None:
            raise _stream_error({"error": chunk.error}, self._provider)
        if chunk.model:
            self._model = chunk.model
        events: list[StreamEvent] = []
        for choice in chunk.choices or ():
            if choice.index == 0:
                self._choice(choice, events)
        if chunk.usage is not None:
            self._usage = chunk.usage
            if not chunk.choices and not self._usage_sent:
                events.append(UsageEvent(_usage(chunk.usage)))
                self._usage_sent = True
        return events

    def close(self) -> list[StreamEvent]:
        # The byte stream ended; without [DONE] it is broken, so no Finish.
        return []

    def _choice(self, choice: _ChunkChoice, events: list[StreamEvent]) -> None:
        delta = choice.delta
        if delta is not None:
            if delta.content:
                events.append(TextDelta(delta.content))
            if delta.refusal:
                self._refused = True
                events.append(TextDelta(delta.refusal))
            for call in delta.tool_calls or ():
                self._tools = True
                fn = call.function
                events.append(
                    ToolCallDelta(
                        index=self._call_index(call),
                        arguments_delta=(fn.arguments if fn else None) or "",
                        id=call.id,
                        name=fn.name if fn else None,
                    )
                )
        if choice.finish_reason:
            self._finish = choice.finish_reason

    def _call_index(self, call: _ToolCall) -> int:
        if call.index is not None:
            self._next_call = max(self._next_call, call.index + 1)
            return call.index
        # No index (some gateways): an id starts the next call, else it continues the last.
        if call.id:
            self._next_call += 1
        return max(self._next_call - 1, 0)

    def _end(self) -> list[StreamEvent]:
        self._done = True
        events: list[StreamEvent] = []
        if self._usage is not None and not self._usage_sent:
            events.append(UsageEvent(_usage(self._usage)))
        reason = _finish_reason(self._finish, tool_calls=self._tools, refused=self._refused)
        events.append(Finish(reason, model=self._model))
        return events

    def _loads_any(self, data: str) -> Any:
        try:
            return _any_decoder.decode(data) if data else None
        except msgspec.DecodeError:
            return {"error": {"message": data[:200]}}


# --- the codec ------------------------------------------------------------------------------


def _check_image(part: ImagePart, where: str) -> str:
    if part.data is not None:
        media_type = (part.media_type or "").lower()
        if media_type not in _IMAGE_TYPES:
            raise InvalidRequest(
                f"OpenAI takes PNG, JPEG, WEBP or GIF images, got {part.media_type!r}",
                field=f"{where}.media_type",
            )
        return f"data:{media_type};base64,{part.data}"
    url = part.url or ""
    data_url = _DATA_URL.match(url)
    if data_url is not None:
        if data_url.group(1).lower() not in _IMAGE_TYPES:
            raise InvalidRequest(
                f"OpenAI takes PNG, JPEG, WEBP or GIF images, got {data_url.group(1)!r}",
                field=f"{where}.url",
            )
    elif not url.lower().startswith(("https://", "http://")):
        raise InvalidRequest("OpenAI takes http(s) image URLs or base64 data", field=f"{where}.url")
    return url


def _check_call_id(call_id: str, where: str) -> None:
    if not call_id or len(call_id) > _MAX_TOOL_CALL_ID:
        raise InvalidRequest(
            f"OpenAI takes tool call ids of 1 to {_MAX_TOOL_CALL_ID} characters", field=where
        )


def _check_function_name(name: str, where: str) -> None:
    if _FUNCTION_NAME.fullmatch(name) is None:
        raise InvalidRequest(
            "OpenAI takes names of 1 to 64 letters, digits, '_' or '-'", field=where
        )


@final
class OpenAICodec:
    """The Chat Completions wire format (see the module docstring).

    ``max_tokens_field`` is ``max_completion_tokens`` (OpenAI's current name, required by its
    reasoning models) or ``max_tokens`` for older compatible servers; ``system_role`` is the
    role system messages are sent with (``developer`` for OpenAI's reasoning models).
    """

    __slots__ = ("max_tokens_field", "system_role")

    def __init__(
        self,
        *,
        max_tokens_field: Literal["max_completion_tokens", "max_tokens"] = "max_completion_tokens",
        system_role: Literal["system", "developer"] = "system",
    ) -> None:
        self.max_tokens_field = max_tokens_field
        self.system_role = system_role

    def path(self, request: Request, *, model: str, stream: bool) -> str:
        return "/chat/completions"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {api_key}"}

    def encode(self, request: Request, *, model: str, stream: bool) -> bytes:
        return _encoder.encode(self.body(request, model=model, stream=stream))

    def body(self, request: Request, *, model: str, stream: bool) -> dict[str, Any]:
        """The request as a JSON-ready dict; raises ``InvalidRequest`` for what OpenAI lacks."""
        o = request.options
        body: dict[str, Any] = {"model": model, "messages": self._messages(request.messages)}
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if o.max_tokens is not None:
            body[self.max_tokens_field] = o.max_tokens
        if o.temperature is not None:
            body["temperature"] = o.temperature
        if o.top_p is not None:
            body["top_p"] = o.top_p
        if o.stop:
            if len(o.stop) > MAX_STOP_SEQUENCES:
                raise InvalidRequest(
                    f"OpenAI takes at most {MAX_STOP_SEQUENCES} stop sequences, got {len(o.stop)}",
                    field="stop",
                )
            body["stop"] = list(o.stop)
        if o.tools:
            body["tools"] = self._tools(request)
        if o.tool_choice is not None:
            choice = self._tool_choice(request)
            if choice is not None:
                body["tool_choice"] = choice
        if o.response_format is not None:
            fmt = o.response_format
            _check_function_name(fmt.name, "response_format.name")
            if fmt.strict and fmt.schema.get("type") != "object":
                raise InvalidRequest(
                    "OpenAI's strict structured output needs a schema of type 'object'",
                    field="response_format.schema",
                )
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": fmt.name, "schema": fmt.schema, "strict": fmt.strict},
            }
        return body

    def _tools(self, request: Request) -> list[dict[str, Any]]:
        tools = request.options.tools
        if len(tools) > MAX_TOOLS:
            raise InvalidRequest(
                f"OpenAI takes at most {MAX_TOOLS} tools, got {len(tools)}", field="tools"
            )
        out: list[dict[str, Any]] = []
        for i, tool in enumerate(tools):
            _check_function_name(tool.name, f"tools[{i}].name")
            function: dict[str, Any] = {"name": tool.name}
            if tool.description:
                function["description"] = tool.description
            if tool.parameters:
                function["parameters"] = tool.parameters
            out.append({"type": "function", "function": function})
        return out

    def _tool_choice(self, request: Request) -> str | dict[str, Any] | None:
        choice = request.options.tool_choice
        names = {t.name for t in request.options.tools}
        if isinstance(choice, NamedToolChoice):
            if choice.name not in names:
                raise InvalidRequest(f"no tool named {choice.name!r} in tools", field="tool_choice")
            return {"type": "function", "function": {"name": choice.name}}
        if not names:
            if choice == "required":
                raise InvalidRequest("'required' needs at least one tool", field="tool_choice")
            return None  # OpenAI rejects tool_choice without tools; auto/none mean no call
        return choice

    def _messages(self, messages: Sequence[Message]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            if message.name is not None and (
                message.role == "tool" or _PARTICIPANT_NAME.fullmatch(message.name) is None
            ):
                raise InvalidRequest(
                    "OpenAI takes a name without spaces or <|\\/> on non-tool messages",
                    field=f"{where}.name",
                )
            if message.role == "assistant":
                out.append(self._assistant(message, where))
                continue
            if isinstance(message.content, str):
                out.append(self._wire_message(message, message.content))
                continue
            rest: list[tuple[int, ContentPart]] = []
            for j, part in enumerate(message.content):
                if isinstance(part, ToolResultPart):
                    out.append(self._tool_result(part, f"{where}.content[{j}]"))
                else:
                    rest.append((j, part))
            if message.role == "tool":
                if rest:
                    raise InvalidRequest(
                        "a tool message holds only tool_result parts",
                        field=f"{where}.content[{rest[0][0]}]",
                    )
                continue
            if rest:
                out.append(self._wire_message(message, self._parts(message, rest, where)))
        return out

    def _wire_message(
        self, message: Message, content: str | list[dict[str, Any]] | None
    ) -> dict[str, Any]:
        role = self.system_role if message.role == "system" else message.role
        wire: dict[str, Any] = {"role": role, "content": content}
        if message.name is not None:
            wire["name"] = message.name
        return wire

    def _parts(
        self, message: Message, parts: list[tuple[int, ContentPart]], where: str
    ) -> str | list[dict[str, Any]]:
        if len(parts) == 1 and isinstance(parts[0][1], TextPart):
            return parts[0][1].text
        out: list[dict[str, Any]] = []
        for j, part in parts:
            field = f"{where}.content[{j}]"
            if isinstance(part, TextPart):
                out.append({"type": "text", "text": part.text})
            elif isinstance(part, ImagePart) and message.role == "user":
                out.append({"type": "image_url", "image_url": {"url": _check_image(part, field)}})
            else:
                raise InvalidRequest(
                    f"OpenAI takes no {part.__class__.__name__} in a {message.role} message",
                    field=field,
                )
        return out

    def _tool_result(self, part: ToolResultPart, where: str) -> dict[str, Any]:
        _check_call_id(part.tool_call_id, f"{where}.tool_call_id")
        if part.is_error:
            raise InvalidRequest(
                "OpenAI has no error flag for tool results; describe the error in content",
                field=f"{where}.is_error",
            )
        return {"role": "tool", "tool_call_id": part.tool_call_id, "content": part.content}

    def _assistant(self, message: Message, where: str) -> dict[str, Any]:
        if isinstance(message.content, str):
            return self._wire_message(message, message.content)
        text: list[str] = []
        calls: list[dict[str, Any]] = []
        for j, part in enumerate(message.content):
            field = f"{where}.content[{j}]"
            if isinstance(part, TextPart):
                text.append(part.text)
            elif isinstance(part, ToolCallPart):
                _check_call_id(part.id, f"{field}.id")
                _check_function_name(part.name, f"{field}.name")
                arguments = _encoder.encode(part.arguments).decode()
                calls.append(
                    {
                        "id": part.id,
                        "type": "function",
                        "function": {"name": part.name, "arguments": arguments},
                    }
                )
            else:
                raise InvalidRequest(
                    f"OpenAI takes no {part.__class__.__name__} in an assistant message",
                    field=field,
                )
        wire = self._wire_message(message, "".join(text) if text else None)
        if calls:
            wire["tool_calls"] = calls
        return wire

    def decode(self, body: bytes, *, provider: str) -> Response:
        try:
            wire = _completion_decoder.decode(body)
        except msgspec.DecodeError as exc:
            raise TransportError(
                f"response is not a chat.completion: {exc}", provider=provider
            ) from None
        return _response(wire, provider)

    def decode_object(self, obj: object, *, provider: str) -> Response:
        """A response already parsed into JSON-like objects (e.g. an SDK model's dump)."""
        try:
            wire = msgspec.convert(obj, _Completion)
        except msgspec.ValidationError as exc:
            raise TransportError(
                f"response is not a chat.completion: {exc}", provider=provider
            ) from None
        return _response(wire, provider)

    def stream_decoder(self, *, provider: str, model: str) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(provider=provider, model=model)

    def error(
        self, status: int, headers: Mapping[str, str], body: bytes, *, provider: str
    ) -> SwitchyardError:
        snippet = _body_snippet(body)
        try:
            payload = _any_decoder.decode(body) if body else None
        except msgspec.DecodeError:
            payload = None
        return _typed_error(status, _error_info(payload, snippet), headers, provider)


def openai_provider(
    *,
    name: str,
    base_url: str,
    api_key: Secret | str | None,
    model: str,
    extra_headers: Mapping[str, str] | None = None,
    http_client: HttpClientName = "httpx2",
    max_connections: int = 100,
    client: Any = None,
) -> HttpProvider:
    """A native provider for OpenAI or a compatible endpoint; ``base_url`` includes ``/v1``.

    Azure OpenAI: ``base_url="https://RESOURCE.openai.azure.com/openai/v1"``,
    ``api_key=None`` and ``extra_headers={"api-key": KEY}``.
    """
    return HttpProvider(
        kind="openai",
        name=name,
        codec=OpenAICodec(),
        base_url=base_url,
        api_key=api_key,
        model=model,
        extra_headers=extra_headers,
        client=client,
        http_client=http_client,
        max_connections=max_connections,
    )
