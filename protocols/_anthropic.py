"""The Anthropic Messages API (``POST {base}/v1/messages``, ``anthropic-version: 2023-06-01``).

Encoding decisions (each a real constraint of the API, checked before any HTTP call):

* System messages become the top-level ``system`` prompt, joined with a blank line, wherever
  they appear: the API has no system turn, and a late instruction still applies (it is not
  silently dropped). They may hold text only.
* ``user`` and ``tool`` messages become ``user`` turns; consecutive turns of one role are
  merged, and in a merged user turn the ``tool_result`` blocks are moved to the front, as the
  API requires. Every ``tool_use`` must be answered in the very next turn and every result
  must answer a call of the turn before; anything else is ``InvalidRequest``.
* Whitespace-only text blocks are dropped (the API refuses them); a turn left empty is an
  ``InvalidRequest``, except a final assistant turn, which is simply left out. Trailing
  whitespace of a final assistant (prefill) turn is stripped, which the API also requires.
* ``max_tokens`` is required by the API; without one, ``default_max_tokens`` is sent (the
  runtime's default, the amount its limiter reserved).
* Images: base64 (JPEG, PNG, GIF, WebP only), ``data:`` URLs, or http(s) URLs (sent as a
  ``url`` source). Images may not appear in assistant or system messages.
* ``temperature`` must be within [0, 1]; current Claude models refuse ``temperature`` and
  ``top_p`` together. Stop sequences must hold non-whitespace. Tool names must match
  ``[a-zA-Z0-9_-]{1,128}``. A forced tool choice needs tools (and, when named, that tool).
* ``response_format`` becomes ``output_config.format`` (JSON schema; Anthropic's structured
  outputs are always strict and have no name). ``Message.name`` has no Anthropic field and is
  dropped; ``Metadata`` is never sent (``metadata.user_id`` must not identify anyone).

Usage: Anthropic's ``input_tokens`` excludes cache reads and writes, so the normalised
``input_tokens`` adds both back. ``reasoning_tokens`` comes from
``usage.output_tokens_details.thinking_tokens`` when the API reports it, else 0. Thinking
blocks carry no unified part and are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, final
from urllib.parse import urlsplit

import msgspec
from msgspec import Struct

from ._errors import InvalidRequest, PermissionDenied, SwitchyardError, TransportError
from ._http import HttpClientName, HttpProvider
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
    RequestOptions,
    Response,
    StreamEvent,
    TextDelta,
    TextPart,
    ToolCallDelta,
    ToolCallPart,
    Usage,
    UsageEvent,
)
from ._validate import DEFAULT_MAX_OUTPUT_TOKENS

__all__ = ["API_VERSION", "AnthropicCodec", "AnthropicStreamDecoder", "anthropic_provider"]

API_VERSION: Final = "2023-06-01"

_IMAGE_TYPES: Final = ("image/gif", "image/jpeg", "image/png", "image/webp")
_TOOL_NAME: Final = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_FINISH: Final[dict[str | None, FinishReason]] = {
    None: "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# The HTTP status each documented error type comes with.
_ERROR_STATUS: Final = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
# "prompt is too long: 208310 tokens > 200000 maximum" and "input length and `max_tokens`
# exceed context limit: 197000 + 8192 > 200000, decrease input length or `max_tokens`".
_CONTEXT_LENGTH: Final = re.compile(r"prompt is too long|exceed context limit|context window")
_CONTENT_FILTER: Final = "content filtering policy"


# --- wire shapes (only the fields read; unknown fields are ignored) ---------------------------


class _OutputDetails(Struct):
    thinking_tokens: int = 0


class _Usage(Struct):
    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None
    output_tokens_details: _OutputDetails | None = None


class _Block(Struct):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class _Message(Struct):
    content: list[_Block]
    model: str = ""
    stop_reason: str | None = None
    usage: _Usage | None = None


class _Delta(Struct):
    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class _Error(Struct):
    type: str = ""
    message: str = ""


class _Event(Struct):
    type: str
    index: int | None = None
    message: _Message | None = None
    content_block: _Block | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    error: _Error | None = None


class _ErrorBody(Struct):
    error: _Error


_encode = msgspec.json.Encoder().encode
_decode_message = msgspec.json.Decoder(_Message).decode
_decode_event = msgspec.json.Decoder(_Event).decode
_decode_error = msgspec.json.Decoder(_ErrorBody).decode
_WIRE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError)


# --- errors ----------------------------------------------------------------------------------


def _typed_error(
    status: int, kind: str, message: str, headers: Mapping[str, str], provider: str
) -> SwitchyardError:
    text = f"{kind}: {message}" if kind and message else kind or message
    if kind == "billing_error":
        # The account cannot pay here; another provider bills elsewhere.
        return PermissionDenied(f"{status}: {text}", provider=provider, status=status)
    lowered = message.lower()
    return error_for_status(
        status,
        text,
        provider=provider,
        headers=headers,
        context_length=status == 413
        or (status == 400 and _CONTEXT_LENGTH.search(lowered) is not None),
        content_filter=_CONTENT_FILTER in lowered,
        overloaded=kind == "overloaded_error",
    )


def _stream_error(error: _Error | None, provider: str) -> SwitchyardError:
    # Typed as if it had come with the HTTP status its error type is documented with.
    if error is None:
        return TransportError("error event without an error object", provider=provider)
    status = _ERROR_STATUS.get(error.type, 500)
    return _typed_error(status, error.type, error.message, {}, provider)


def _bad_wire(what: str, exc: Exception, provider: str) -> TransportError:
    return TransportError(f"{what} is not the Anthropic wire format: {exc}", provider=provider)


# --- encoding --------------------------------------------------------------------------------


class _Turn:
    """One API turn under construction, remembering where each tool block came from."""

    __slots__ = ("blocks", "calls", "first", "results", "role")

    def __init__(self, role: str, first: int) -> None:
        self.role = role
        self.first = first
        self.blocks: list[dict[str, Any]] = []
        self.calls: dict[str, str] = {}  # tool_use id -> field path
        self.results: dict[str, str] = {}  # tool_use_id answered -> field path


def _image(part: ImagePart, where: str) -> dict[str, Any]:
    if part.data is not None:
        media_type = part.media_type or ""
        data = part.data
        field = f"{where}.media_type"
    elif part.url is not None and part.url.startswith("data:"):
        header, comma, data = part.url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        field = f"{where}.url"
        if not comma or encoding != "base64":
            raise InvalidRequest("expected a base64 data: URL", field=field)
    elif part.url is not None:
        scheme = urlsplit(part.url).scheme.lower()
        if scheme not in ("http", "https"):
            raise InvalidRequest(
                f"Anthropic takes image URLs over http(s) only, got {scheme or 'no'} scheme",
                field=f"{where}.url",
            )
        return {"type": "image", "source": {"type": "url", "url": part.url}}
    else:
        raise InvalidRequest("give exactly one of url or data", field=where)
    if media_type not in _IMAGE_TYPES:
        raise InvalidRequest(
            f"Anthropic takes {', '.join(_IMAGE_TYPES)} images, got {media_type!r}", field=field
        )
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _add_parts(turn: _Turn, message: Message, i: int) -> None:
    parts: tuple[ContentPart, ...] = (
        (TextPart(message.content),) if isinstance(message.content, str) else message.content
    )
    assistant = turn.role == "assistant"
    for j, part in enumerate(parts):
        where = f"messages[{i}].content[{j}]"
        if isinstance(part, TextPart):
            if part.text.strip():
                turn.blocks.append({"type": "text", "text": part.text})
        elif isinstance(part, ToolCallPart):
            if not assistant:
                raise InvalidRequest("only assistant messages may call tools", field=where)
            if part.id in turn.calls:
                raise InvalidRequest(f"duplicate tool call id {part.id!r}", field=f"{where}.id")
            turn.calls[part.id] = where
            block = {"type": "tool_use", "id": part.id, "name": part.name, "input": part.arguments}
            turn.blocks.append(block)
        elif assistant:
            kind = "images" if isinstance(part, ImagePart) else "tool results"
            raise InvalidRequest(f"Anthropic takes no {kind} in assistant messages", field=where)
        elif isinstance(part, ImagePart):
            turn.blocks.append(_image(part, where))
        else:
            turn.results[part.tool_call_id] = f"{where}.tool_call_id"
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": part.tool_call_id}
            if part.content:
                result["content"] = part.content
            if part.is_error:
                result["is_error"] = True
            turn.blocks.append(result)


def _system_text(message: Message, i: int) -> str:
    if isinstance(message.content, str):
        return message.content
    for j, part in enumerate(message.content):
        if not isinstance(part, TextPart):
            raise InvalidRequest(
                "a system message may hold text only", field=f"messages[{i}].content[{j}]"
            )
    return message.text


def _encode_messages(messages: tuple[Message, ...]) -> tuple[str, list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[_Turn] = []
    for i, message in enumerate(messages):
        if message.role == "system":
            text = _system_text(message, i)
            if text.strip():
                system.append(text)
            continue
        role = "assistant" if message.role == "assistant" else "user"
        if not turns or turns[-1].role != role:
            turns.append(_Turn(role, i))
        _add_parts(turns[-1], message, i)
    if turns and turns[-1].role == "assistant" and not turns[-1].blocks:
        turns.pop()
    if not turns:
        raise InvalidRequest("expected at least one user or assistant message", field="messages")
    for k, turn in enumerate(turns):
        if not turn.blocks:
            raise InvalidRequest(
                "Anthropic needs non-whitespace content in every turn",
                field=f"messages[{turn.first}].content",
            )
        if turn.results:
            # The API wants a turn's tool results before anything else in it.
            turn.blocks.sort(key=lambda b: b["type"] != "tool_result")
            called = turns[k - 1].calls if k else {}
            for call_id, where in turn.results.items():
                if call_id not in called:
                    raise InvalidRequest(
                        f"tool result for {call_id!r} does not answer a tool call of the "
                        "assistant turn just before it",
                        field=where,
                    )
        if turn.calls:
            answered = turns[k + 1].results if k + 1 < len(turns) else {}
            for call_id, where in turn.calls.items():
                if call_id not in answered:
                    raise InvalidRequest(
                        f"tool call {call_id!r} has no tool result in the next message",
                        field=where,
                    )
    last = turns[-1]
    if last.role == "assistant" and last.blocks[-1]["type"] == "text":
        last.blocks[-1]["text"] = last.blocks[-1]["text"].rstrip()
    encoded = [{"role": t.role, "content": t.blocks} for t in turns]
    return "\n\n".join(system), encoded


def _encode_tools(options: RequestOptions, body: dict[str, Any]) -> None:
    names: set[str] = set()
    tools: list[dict[str, Any]] = []
    for i, tool in enumerate(options.tools):
        if not _TOOL_NAME.fullmatch(tool.name):
            raise InvalidRequest(
                "Anthropic tool names must match [a-zA-Z0-9_-]{1,128}", field=f"tools[{i}].name"
            )
        schema = {"type": "object", **tool.parameters}
        if schema["type"] != "object":
            raise InvalidRequest(
                "expected a JSON Schema with type 'object'", field=f"tools[{i}].parameters"
            )
        encoded: dict[str, Any] = {"name": tool.name, "input_schema": schema}
        if tool.description:
            encoded["description"] = tool.description
        tools.append(encoded)
        names.add(tool.name)
    choice = options.tool_choice
    if isinstance(choice, NamedToolChoice):
        if choice.name not in names:
            raise InvalidRequest(f"no tool named {choice.name!r} in tools", field="tool_choice")
        wire: dict[str, str] = {"type": "tool", "name": choice.name}
    elif choice == "required":
        if not tools:
            raise InvalidRequest("a required tool choice needs tools", field="tool_choice")
        wire = {"type": "any"}
    else:
        wire = {"type": choice or "auto"}
    if tools:
        body["tools"] = tools
        if choice is not None:
            body["tool_choice"] = wire


def _encode_options(options: RequestOptions, body: dict[str, Any]) -> None:
    if options.temperature is not None:
        if not 0.0 <= options.temperature <= 1.0:
            raise InvalidRequest(
                f"Anthropic takes a temperature from 0 to 1, got {options.temperature}",
                field="temperature",
            )
        body["temperature"] = options.temperature
    if options.top_p is not None:
        if options.temperature is not None:
            raise InvalidRequest(
                "current Claude models refuse temperature and top_p together; give one",
                field="top_p",
            )
        body["top_p"] = options.top_p
    for i, stop in enumerate(options.stop):
        if not stop.strip():
            raise InvalidRequest(
                "Anthropic stop sequences must contain non-whitespace", field=f"stop[{i}]"
            )
    if options.stop:
        body["stop_sequences"] = list(options.stop)
    _encode_tools(options, body)
    if options.response_format is not None:
        schema = options.response_format.schema
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}


# --- decoding --------------------------------------------------------------------------------


def _usage(usage: _Usage | None) -> Usage:
    if usage is None:
        return Usage()
    cache_read = usage.cache_read_input_tokens or 0
    cache_write = usage.cache_creation_input_tokens or 0
    details = usage.output_tokens_details
    return Usage(
        input_tokens=(usage.input_tokens or 0) + cache_read + cache_write,
        output_tokens=usage.output_tokens or 0,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        reasoning_tokens=details.thinking_tokens if details is not None else 0,
    )


def _merged(start: _Usage | None, final: _Usage | None) -> _Usage | None:
    """message_start's usage updated by message_delta's cumulative counts, where given."""
    if start is None or final is None:
        return final or start
    given = {k: v for k, v in msgspec.structs.asdict(final).items() if v is not None}
    return msgspec.structs.replace(start, **given)


def _finish_reason(stop_reason: str | None) -> FinishReason:
    return _FINISH.get(stop_reason, "stop")


def _response(message: _Message, provider: str) -> Response:
    content: list[ContentPart] = []
    for block in message.content:
        if block.type == "text":
            if block.text is None:
                raise TransportError("text block without text", provider=provider)
            content.append(TextPart(block.text))
        elif block.type == "tool_use":
            if block.id is None or block.name is None or not isinstance(block.input, dict):
                raise TransportError("tool_use block without id, name or input", provider=provider)
            content.append(ToolCallPart(id=block.id, name=block.name, arguments=block.input))
    return Response(
        content=tuple(content),
        finish_reason=_finish_reason(message.stop_reason),
        usage=_usage(message.usage),
        provider=provider,
        model=message.model,
    )


@final
class AnthropicStreamDecoder:
    """Anthropic's stream events to unified events; ``Finish`` only at ``message_stop``.

    Tool calls are numbered in order of appearance (``ToolCallDelta.index``), whatever the
    content-block index. ``feed_object`` takes an event already parsed into plain Python
    objects (the SDK transport's way in); both paths share one state machine.
    """

    __slots__ = ("_done", "_model", "_provider", "_start", "_stop_reason", "_tools", "_usage")

    def __init__(self, *, provider: str, model: str) -> None:
        self._provider = provider
        self._model = model
        self._tools: dict[int, int] = {}  # content-block index -> tool call number
        self._start: _Usage | None = None
        self._usage: _Usage | None = None
        self._stop_reason: str | None = None
        self._done = False

    def feed(self, event: ServerSentEvent) -> list[StreamEvent]:
        if event.event == "error" and not self._done:
            try:
                error = _decode_error(event.data).error
            except _WIRE_ERRORS as exc:
                raise _bad_wire("error event", exc, self._provider) from None
            raise _stream_error(error, self._provider)
        try:
            parsed = _decode_event(event.data)
        except _WIRE_ERRORS as exc:
            raise _bad_wire(f"{event.event!r} event", exc, self._provider) from None
        return self._handle(parsed)

    def feed_object(self, data: object) -> list[StreamEvent]:
        try:
            parsed = msgspec.convert(data, _Event)
        except _WIRE_ERRORS as exc:
            raise _bad_wire("stream event", exc, self._provider) from None
        return self._handle(parsed)

    def close(self) -> list[StreamEvent]:
        return []  # the stream's end marker is message_stop; nothing is implied by EOF

    def _handle(self, event: _Event) -> list[StreamEvent]:
        if self._done:
            return []
        kind = event.type
        if kind == "content_block_delta":
            return self._delta(event)
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "message_start":
            if event.message is not None:
                self._model = event.message.model or self._model
                self._start = event.message.usage
        elif kind == "message_delta":
            if event.delta is not None and event.delta.stop_reason is not None:
                self._stop_reason = event.delta.stop_reason
            if event.usage is not None:
                self._usage = event.usage
        elif kind == "message_stop":
            self._done = True
            return [
                UsageEvent(_usage(_merged(self._start, self._usage))),
                Finish(_finish_reason(self._stop_reason), model=self._model),
            ]
        elif kind == "error":
            raise _stream_error(event.error, self._provider)
        # ping, content_block_stop and event types added later carry nothing to forward.
        return []

    def _block_start(self, event: _Event) -> list[StreamEvent]:
        block = event.content_block
        if block is None or event.index is None:
            raise TransportError("content_block_start without a block", provider=self._provider)
        if block.type == "tool_use":
            if block.id is None or block.name is None:
                raise TransportError("tool_use block without id or name", provider=self._provider)
            number = self._tools[event.index] = len(self._tools)
            return [ToolCallDelta(number, id=block.id, name=block.name)]
        if block.type == "text" and block.text:
            return [TextDelta(block.text)]
        return []

    def _delta(self, event: _Event) -> list[StreamEvent]:
        delta = event.delta
        if delta is None or event.index is None:
            raise TransportError("content_block_delta without a delta", provider=self._provider)
        if delta.type == "text_delta":
            return [TextDelta(delta.text)] if delta.text else []
        if delta.type == "input_json_delta":
            number = self._tools.get(event.index)
            if number is None:
                raise TransportError(
                    f"input_json_delta for block {event.index}, which is not a tool call",
                    provider=self._provider,
                )
            return [ToolCallDelta(number, delta.partial_json)] if delta.partial_json else []
        return []  # thinking_delta, signature_delta, citations_delta


@final
class AnthropicCodec:
    """The Codec for Anthropic Messages. See the module docstring for what it refuses."""

    __slots__ = ("default_max_tokens",)

    def __init__(self, *, default_max_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS) -> None:
        self.default_max_tokens = default_max_tokens

    def path(self, request: Request, *, model: str, stream: bool) -> str:
        return "/v1/messages"

    def payload(self, request: Request, *, model: str, stream: bool) -> dict[str, Any]:
        """The request body as a dict; raises ``InvalidRequest`` for what the API refuses."""
        options = request.options
        system, messages = _encode_messages(request.messages)
        body: dict[str, Any] = {
            "model": model,
            "max_tokens": options.max_tokens or self.default_max_tokens,
            "messages": messages,
        }
        if system:
            body["system"] = system
        _encode_options(options, body)
        if stream:
            body["stream"] = True
        return body

    def encode(self, request: Request, *, model: str, stream: bool) -> bytes:
        return _encode(self.payload(request, model=model, stream=stream))

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key, "anthropic-version": API_VERSION}

    def decode(self, body: bytes, *, provider: str) -> Response:
        try:
            message = _decode_message(body)
        except _WIRE_ERRORS as exc:
            raise _bad_wire("response body", exc, provider) from None
        return _response(message, provider)

    def decode_object(self, data: object, *, provider: str) -> Response:
        """Like ``decode``, for a message already parsed into plain Python objects."""
        try:
            message = msgspec.convert(data, _Message)
        except _WIRE_ERRORS as exc:
            raise _bad_wire("response", exc, provider) from None
        return _response(message, provider)

    def stream_decoder(self, *, provider: str, model: str) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(provider=provider, model=model)

    def error(
        self, status: int, headers: Mapping[str, str], body: bytes, *, provider: str
    ) -> SwitchyardError:
        try:
            error = _decode_error(body).error
        except _WIRE_ERRORS:
            snippet = body[:300].decode("utf-8", "replace").strip()
            return _typed_error(status, "", snippet, headers, provider)
        return _typed_error(status, error.type, error.message, headers, provider)

    def stream_error(self, body: object, *, provider: str) -> SwitchyardError:
        """The typed error for an in-stream ``error`` event's parsed (or raw) body."""
        try:
            error = msgspec.convert(body, _ErrorBody).error
        except _WIRE_ERRORS as exc:
            return _bad_wire("error event", exc, provider)
        return _stream_error(error, provider)


def anthropic_provider(
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
    """A native HTTP provider for Anthropic Messages; ``base_url`` is the bare host."""
    # anthropic-version goes on every request, with or without a key (a gateway may
    # authenticate through extra_headers instead).
    headers = {"anthropic-version": API_VERSION, **(extra_headers or {})}
    return HttpProvider(
        kind="anthropic",
        name=name,
        codec=AnthropicCodec(),
        base_url=base_url,
        api_key=api_key,
        model=model,
        extra_headers=headers,
        client=client,
        http_client=http_client,
        max_connections=max_connections,
    )
