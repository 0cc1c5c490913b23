"""The gateway's wire format: OpenAI Chat Completions as a *server* speaks it.

This is the reverse of the OpenAI client codec: it reads requests that OpenAI clients send
and writes the responses, stream chunks and errors they expect. Fields a client may send
that change nothing here (``frequency_penalty``, ``seed``, ``logprobs``...) are accepted and
ignored; fields whose meaning we cannot honour (``n`` > 1) are refused.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import msgspec
from msgspec import Struct

from ._errors import (
    AllProvidersFailed,
    AuthenticationError,
    ContentFiltered,
    ContextLengthExceeded,
    InvalidRequest,
    NotFound,
    Overloaded,
    PermissionDenied,
    RateLimited,
    RuntimeClosed,
    StreamInterrupted,
    SwitchyardError,
    Timeout,
)
from ._types import (
    ContentPart,
    ImagePart,
    Message,
    Response,
    TextPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)

__all__ = [
    "ChatRequest",
    "error_body",
    "error_status",
    "parse_chat_request",
    "render_chunk",
    "render_completion",
    "render_model",
    "render_models",
    "render_usage_chunk",
]


class ChatRequest(Struct, frozen=True, kw_only=True):
    """A parsed client request: unified messages and runtime options."""

    model: str
    messages: tuple[Message, ...]
    options: dict[str, Any]
    stream: bool
    include_usage: bool


def _bad(message: str, field: str) -> InvalidRequest:
    return InvalidRequest(message, field=field)


def _text_of(content: Any, field: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _bad("expected text parts only here", f"{field}[{j}]")
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    if content is None:
        return ""
    raise _bad("expected a string or a list of parts", field)


def _image(part: dict[str, Any], field: str) -> ImagePart:
    spec = part.get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise _bad("expected image_url.url", f"{field}.image_url")
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        media_type = header.removeprefix("data:").removesuffix(";base64")
        if not header.endswith(";base64"):
            raise _bad("expected a base64 data URL", f"{field}.image_url.url")
        return ImagePart(data=data, media_type=media_type)
    return ImagePart(url=url)


def _parts(content: Any, field: str) -> str | tuple[ContentPart, ...]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _bad("expected a string or a list of parts", field)
    parts: list[ContentPart] = []
    for j, part in enumerate(content):
        where = f"{field}[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(TextPart(str(part.get("text", ""))))
        elif kind == "image_url":
            parts.append(_image(part, where))
        else:
            raise _bad(f"unsupported content part type {kind!r}", f"{where}.type")
    return tuple(parts)


def _message(raw: Any, i: int) -> Message:
    field = f"messages[{i}]"
    if not isinstance(raw, dict):
        raise _bad("expected an object", field)
    role = raw.get("role")
    if role == "developer":
        role = "system"
    if role in ("system", "user"):
        return Message(role=role, content=_parts(raw.get("content"), f"{field}.content"))
    if role == "assistant":
        parts: list[ContentPart] = []
        text = _text_of(raw.get("content"), f"{field}.content")
        if text:
            parts.append(TextPart(text))
        for k, call in enumerate(raw.get("tool_calls") or ()):
            where = f"{field}.tool_calls[{k}]"
            function = call.get("function") if isinstance(call, dict) else None
            if not isinstance(function, dict) or not isinstance(call.get("id"), str):
                raise _bad("expected {id, function: {name, arguments}}", where)
            try:
                arguments = msgspec.json.decode(function.get("arguments") or "{}")
            except msgspec.DecodeError:
                raise _bad("arguments are not valid JSON", f"{where}.function.arguments") from None
            if not isinstance(arguments, dict):
                raise _bad("arguments must be a JSON object", f"{where}.function.arguments")
            parts.append(
                ToolCallPart(id=call["id"], name=str(function.get("name", "")), arguments=arguments)
            )
        if not parts:
            return Message(role="assistant", content="")
        if len(parts) == 1 and isinstance(parts[0], TextPart):
            return Message(role="assistant", content=parts[0].text)
        return Message(role="assistant", content=tuple(parts))
    if role == "tool":
        call_id = raw.get("tool_call_id")
        if not isinstance(call_id, str):
            raise _bad("expected a string", f"{field}.tool_call_id")
        content = _text_of(raw.get("content"), f"{field}.content")
        return Message(
            role="tool", content=(ToolResultPart(tool_call_id=call_id, content=content),)
        )
    raise _bad(
        f"expected one of system, developer, user, assistant, tool; got {role!r}", f"{field}.role"
    )


def _tools(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise _bad("expected a list", "tools")
    tools = []
    for i, tool in enumerate(raw):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or tool.get("type", "function") != "function":
            raise _bad("expected {type: function, function: {...}}", f"tools[{i}]")
        tools.append(
            {
                "name": function.get("name", ""),
                "description": function.get("description") or "",
                "parameters": function.get("parameters") or {},
            }
        )
    return tools


def _tool_choice(raw: Any) -> Any:
    if raw in ("auto", "none", "required"):
        return raw
    if isinstance(raw, dict) and isinstance(raw.get("function"), dict):
        return {"name": raw["function"].get("name", "")}
    raise _bad("expected auto, none, required or {type: function, function: {name}}", "tool_choice")


def _response_format(raw: Any) -> Any:
    if not isinstance(raw, dict):
        raise _bad("expected an object", "response_format")
    kind = raw.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return {"name": "json_object", "schema": {"type": "object"}, "strict": False}
    if kind == "json_schema":
        spec = raw.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
            raise _bad("expected json_schema.schema", "response_format.json_schema")
        return {
            "name": spec.get("name", "response"),
            "schema": spec["schema"],
            "strict": bool(spec.get("strict", False)),
        }
    raise _bad("expected type text, json_object or json_schema", "response_format.type")


def parse_chat_request(body: bytes) -> ChatRequest:
    """Read a ``POST /v1/chat/completions`` body; bad input raises ``InvalidRequest``."""
    try:
        raw = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise _bad(f"the body is not valid JSON ({exc})", "body") from None
    if not isinstance(raw, dict):
        raise _bad("expected a JSON object", "body")
    model = raw.get("model")
    if not isinstance(model, str) or not model:
        raise _bad("expected a model name (or 'auto')", "model")
    messages = raw.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("expected a non-empty list", "messages")
    if raw.get("n", 1) != 1:
        raise _bad("only n = 1 is supported", "n")
    options: dict[str, Any] = {}
    max_tokens = raw.get("max_completion_tokens", raw.get("max_tokens"))
    if max_tokens is not None:
        options["max_tokens"] = max_tokens
    for name in ("temperature", "top_p"):
        if raw.get(name) is not None:
            options[name] = raw[name]
    stop = raw.get("stop")
    if stop is not None:
        options["stop"] = [stop] if isinstance(stop, str) else stop
    if raw.get("tools"):
        options["tools"] = _tools(raw["tools"])
    if raw.get("tool_choice") is not None:
        options["tool_choice"] = _tool_choice(raw["tool_choice"])
    if raw.get("response_format") is not None:
        response_format = _response_format(raw["response_format"])
        if response_format is not None:
            options["response_format"] = response_format
    metadata = raw.get("metadata")
    tenant = raw.get("user")
    if isinstance(metadata, dict) or tenant:
        tags = sorted(f"{k}={v}" for k, v in (metadata or {}).items())
        options["metadata"] = {"tenant": tenant, "tags": tags}
    stream = raw.get("stream", False)
    if stream is None:
        stream = False
    if not isinstance(stream, bool):
        raise _bad("expected true or false", "stream")
    stream_options = raw.get("stream_options") or {}
    if not isinstance(stream_options, dict):
        raise _bad("expected an object", "stream_options")
    return ChatRequest(
        model=model,
        messages=tuple(_message(m, i) for i, m in enumerate(messages)),
        options=options,
        stream=stream,
        include_usage=stream and stream_options.get("include_usage") is True,
    )


# --- writing ----------------------------------------------------------------------------------

_FINISH = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
}


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _tool_call(call: ToolCallPart) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": msgspec.json.encode(call.arguments).decode()},
    }


def render_completion(response: Response, *, completion_id: str) -> bytes:
    """A ``chat.completion`` object; ``model`` is the model that actually answered."""
    message: dict[str, Any] = {"role": "assistant", "content": response.text or None}
    calls = response.tool_calls
    if calls:
        message["tool_calls"] = [_tool_call(c) for c in calls]
    return msgspec.json.encode(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": response.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": _FINISH[response.finish_reason],
                    "logprobs": None,
                }
            ],
            "usage": _usage(response.usage),
        }
    )


def render_chunk(
    *,
    completion_id: str,
    created: int,
    model: str,
    delta: dict[str, Any],
    finish_reason: str | None = None,
) -> bytes:
    """One ``chat.completion.chunk`` as an SSE ``data:`` frame."""
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
    }
    return b"data: " + msgspec.json.encode(chunk) + b"\n\n"


def render_usage_chunk(*, completion_id: str, created: int, model: str, usage: Usage) -> bytes:
    """The final chunk with empty ``choices`` that ``stream_options.include_usage`` asks for."""
    chunk = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": [],
        "usage": _usage(usage),
    }
    return b"data: " + msgspec.json.encode(chunk) + b"\n\n"


def _model(model: str, owner: str) -> dict[str, Any]:
    return {"id": model, "object": "model", "created": 0, "owned_by": owner}


def render_models(models: list[tuple[str, str]]) -> bytes:
    """``GET /v1/models``: ``(id, owned_by)`` pairs."""
    return msgspec.json.encode({"object": "list", "data": [_model(*m) for m in models]})


def render_model(model: str, owner: str) -> bytes:
    """``GET /v1/models/{id}``: one model object."""
    return msgspec.json.encode(_model(model, owner))


def _shared_cause(error: SwitchyardError) -> SwitchyardError:
    """For ``AllProvidersFailed`` whose every attempt failed alike with something about the
    request itself (too long, filtered, invalid) or a timeout: that error, which says more
    to the client than "every provider failed". Otherwise ``error`` itself."""
    if not isinstance(error, AllProvidersFailed):
        return error
    causes = [a.error for a in error.attempts if a.error is not None]
    if not causes or len({type(c) for c in causes}) != 1:
        return error
    if isinstance(causes[0], ContextLengthExceeded | ContentFiltered | InvalidRequest | Timeout):
        return causes[0]
    return error


def error_status(error: SwitchyardError) -> int:
    """The HTTP status a client should see for ``error``.

    Upstream authentication and permission failures are the gateway's own configuration
    problem, not the client's: they are a 502, never a 401 the client would blame on its key.
    """
    error = _shared_cause(error)
    match error:
        case InvalidRequest():
            return error.status if error.status in (400, 404, 413, 422) else 400
        case ContextLengthExceeded() | ContentFiltered():
            return 400
        case AuthenticationError() | PermissionDenied():
            return 502
        case NotFound():
            return 404
        case RateLimited():
            return 429
        case Timeout():
            return 504
        case AllProvidersFailed():
            return error.status or 503
        case Overloaded() | RuntimeClosed():
            return 503
        case StreamInterrupted():
            return 502
    return 502


ErrorType = Literal[
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "not_found_error",
    "rate_limit_error",
    "timeout_error",
    "server_error",
]


def error_body(error: SwitchyardError) -> bytes:
    """An OpenAI-style error object: ``{"error": {message, type, param, code}}``.

    ``code`` is the error's kind (``context_length_exceeded``, ``all_providers_failed``...).
    """
    cause = _shared_cause(error)
    kind: ErrorType
    match error_status(error):
        case 400 | 413 | 422:
            kind = "invalid_request_error"
        case 404:
            kind = "not_found_error" if isinstance(cause, NotFound) else "invalid_request_error"
        case 429:
            kind = "rate_limit_error"
        case 504:
            kind = "timeout_error"
        case _:
            kind = "server_error"
    param = cause.field if isinstance(cause, InvalidRequest) else None
    message = error.message
    if cause is not error:
        message = f"{cause.message} ({error.message})"
    return msgspec.json.encode(
        {"error": {"message": message, "type": kind, "param": param, "code": cause.kind}}
    )
