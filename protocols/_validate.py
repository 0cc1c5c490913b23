"""Turning what a caller passes into a validated ``Request``, or an ``InvalidRequest``.

Bad input is caught here, before any actor or provider sees it, and the error names the
field (``messages[1].role``, ``temperature``) and what was expected.
"""

from __future__ import annotations

import base64
import binascii
import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any, get_args

import msgspec

from ._errors import InvalidRequest
from ._types import (
    ImagePart,
    Message,
    Request,
    RequestOptions,
    Role,
    TextPart,
    ToolCallPart,
    ToolResultPart,
)

__all__ = ["build_request", "coerce_messages", "estimate_tokens", "parse_options"]

# A rough prompt-size estimate for the token limiter: about four characters a token for
# English text. Usage reported by the provider reconciles it afterwards.
_CHARS_PER_TOKEN = 4
_IMAGE_TOKENS = 800
DEFAULT_MAX_OUTPUT_TOKENS = 1024

_OPTION_NAMES = frozenset(RequestOptions.__struct_fields__)


def _field_path(msgspec_path: str, root: str) -> str:
    # msgspec says "$[1].role"; callers know it as "messages[1].role".
    return (root + msgspec_path.removeprefix("$")).removeprefix(".")


def _convert_error(exc: msgspec.ValidationError, root: str) -> InvalidRequest:
    text = str(exc)
    message, _, path = text.rpartition(" - at `")
    if path:
        return InvalidRequest(message, field=_field_path(path.rstrip("`"), root))
    return InvalidRequest(text, field=root)


def coerce_messages(messages: Iterable[Message | Mapping[str, Any]]) -> tuple[Message, ...]:
    """Accept ``Message`` objects or plain dicts (``{"role": ..., "content": ...}``)."""
    kind = type(messages)
    # A list or tuple (the usual) skips the costlier ABC checks.
    if (
        kind is not list
        and kind is not tuple
        and (isinstance(messages, str | bytes | Mapping) or not isinstance(messages, Iterable))
    ):
        raise InvalidRequest(f"expected a list of messages, got {kind.__name__}", field="messages")
    items = list(messages)
    if not items:
        raise InvalidRequest("expected at least one message", field="messages")
    plain = _plain_text_messages(items)
    if plain is not None:
        return plain  # valid as a conversation too: no tool messages, no parts
    if all(type(m) is Message for m in items):
        result: tuple[Message, ...] = tuple(items)  # type: ignore[arg-type]
    else:
        try:
            result = msgspec.convert(items, tuple[Message, ...])
        except msgspec.ValidationError as exc:
            raise _convert_error(exc, "messages") from None
    _check_conversation(result)
    return result


# A tool message carries a tool_result part, never plain text: the general path says so.
_TEXT_ROLES = frozenset(get_args(Role)) - {"tool"}


def _plain_text_messages(items: list[Any]) -> tuple[Message, ...] | None:
    """The usual shape, ``{"role": ..., "content": "text"}`` dicts with a role other than
    ``tool``, converted without the general conversion's union matching (a few
    microseconds a request); None for anything else, which takes the general path and its
    errors."""
    messages = []
    for item in items:
        if type(item) is not dict or len(item) != 2:
            return None
        role = item.get("role")
        content = item.get("content")
        if type(content) is not str or type(role) is not str or role not in _TEXT_ROLES:
            return None
        messages.append(Message(role=role, content=content))  # type: ignore[arg-type]
    return tuple(messages)


def _check_conversation(messages: tuple[Message, ...]) -> None:
    call_ids: set[str] = set()
    for i, message in enumerate(messages):
        if isinstance(message.content, str):
            if message.role == "tool":
                raise InvalidRequest(
                    "a tool message must carry a tool_result part", field=f"messages[{i}].content"
                )
            continue
        if not message.content:
            raise InvalidRequest("expected at least one part", field=f"messages[{i}].content")
        for j, part in enumerate(message.content):
            where = f"messages[{i}].content[{j}]"
            if isinstance(part, ToolCallPart):
                if message.role != "assistant":
                    raise InvalidRequest("only assistant messages may call tools", field=where)
                call_ids.add(part.id)
            elif isinstance(part, ToolResultPart):
                if part.tool_call_id not in call_ids:
                    raise InvalidRequest(
                        f"tool result for {part.tool_call_id!r} has no matching tool call "
                        "in an earlier assistant message",
                        field=f"{where}.tool_call_id",
                    )
            elif isinstance(part, ImagePart):
                _check_image(part, where)


def _check_image(part: ImagePart, where: str) -> None:
    if (part.url is None) == (part.data is None):
        raise InvalidRequest("give exactly one of url or data", field=where)
    if part.data is not None:
        if not part.media_type or not part.media_type.startswith("image/"):
            raise InvalidRequest(
                f"expected an image/* media type with base64 data, got {part.media_type!r}",
                field=f"{where}.media_type",
            )
        try:
            base64.b64decode(part.data, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidRequest("data is not valid base64", field=f"{where}.data") from None


def parse_options(options: Mapping[str, Any]) -> RequestOptions:
    """Validate keyword options; an unknown name is an error, not silently ignored."""
    if not options:
        return _DEFAULT_OPTIONS
    unknown = options.keys() - _OPTION_NAMES
    if unknown:
        name = sorted(unknown)[0]
        raise InvalidRequest(
            f"unknown option; expected one of {', '.join(sorted(_OPTION_NAMES))}", field=name
        )
    try:
        parsed = msgspec.convert(dict(options), RequestOptions)
    except msgspec.ValidationError as exc:
        raise _convert_error(exc, "") from None
    _check_ranges(parsed)
    return parsed


_DEFAULT_OPTIONS = RequestOptions()


def _check_ranges(o: RequestOptions) -> None:
    if o.max_tokens is not None and o.max_tokens <= 0:
        raise InvalidRequest(f"expected an integer > 0, got {o.max_tokens}", field="max_tokens")
    if o.temperature is not None and not 0.0 <= o.temperature <= 2.0:
        raise InvalidRequest(f"expected 0 to 2, got {o.temperature}", field="temperature")
    if o.top_p is not None and not 0.0 < o.top_p <= 1.0:
        raise InvalidRequest(f"expected a number in (0, 1], got {o.top_p}", field="top_p")
    if o.timeout is not None and not (o.timeout > 0 and math.isfinite(o.timeout)):
        raise InvalidRequest(f"expected seconds > 0, got {o.timeout}", field="timeout")
    names = [t.name for t in o.tools]
    if len(set(names)) != len(names):
        raise InvalidRequest("tool names must be unique", field="tools")
    for i, tool in enumerate(o.tools):
        if not tool.name:
            raise InvalidRequest("expected a non-empty name", field=f"tools[{i}].name")
        if tool.parameters:
            where = f"tools[{i}].parameters"
            _check_schema(tool.parameters, where)
            if tool.parameters.get("type", "object") != "object":
                raise InvalidRequest("expected a JSON Schema with type 'object'", field=where)
    if o.response_format is not None:
        _check_schema(o.response_format.schema, "response_format.schema")


def _check_schema(schema: dict[str, Any], where: str) -> None:
    error = _schema_error(msgspec.json.encode(schema))
    if error is not None:
        raise InvalidRequest(f"not a valid JSON Schema: {error}", field=where)


@functools.lru_cache(maxsize=256)
def _schema_error(encoded: bytes) -> str | None:
    # Checking a schema costs far more than encoding it; tools repeat across requests.
    # jsonschema is imported here, at the first schema: it adds ~2,900 objects to the heap
    # (every full GC pass walks them), and most programs send none.
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(msgspec.json.decode(encoded))
    except jsonschema.SchemaError as exc:
        return exc.message
    return None


def estimate_tokens(messages: tuple[Message, ...], options: RequestOptions) -> int:
    """Prompt tokens (about 4 characters each, images a flat amount) plus the reply's cap."""
    chars = 0
    images = 0
    for m in messages:
        if isinstance(m.content, str):
            chars += len(m.content)
            continue
        for p in m.content:
            if isinstance(p, TextPart):
                chars += len(p.text)
            elif isinstance(p, ImagePart):
                images += 1
            elif isinstance(p, ToolResultPart):
                chars += len(p.content)
            else:
                chars += len(p.name) + 16 * len(p.arguments)
    prompt = -(-chars // _CHARS_PER_TOKEN) + images * _IMAGE_TOKENS
    return prompt + (options.max_tokens or DEFAULT_MAX_OUTPUT_TOKENS)


def build_request(
    messages: Iterable[Message | Mapping[str, Any]],
    options: Mapping[str, Any],
    *,
    request_id: str,
    now: float,
    default_timeout: float,
    stream: bool,
) -> Request:
    """Validate everything and fix the request's absolute deadline."""
    msgs = coerce_messages(messages)
    opts = parse_options(options)
    timeout = opts.timeout if opts.timeout is not None else default_timeout
    return Request(
        id=request_id,
        messages=msgs,
        options=opts,
        deadline=now + timeout,
        estimated_tokens=estimate_tokens(msgs, opts),
        stream=stream,
    )
