"""Google Gemini ``generateContent`` (Generative Language API, v1beta): the codec.

Requests go to ``POST {base}/v1beta/models/{model}:generateContent`` and, streamed, to
``:streamGenerateContent?alt=sse``, with the key in ``x-goog-api-key``. ``base_url`` is the
bare host, as in the official SDK.

Mapping notes:

* System messages must lead the conversation; they become ``systemInstruction``.
  ``assistant`` is role ``model``; ``tool`` messages are ``user`` turns of
  ``functionResponse`` parts. Consecutive turns of one role are merged, so the results of
  parallel calls travel in one turn, as the API requires.
* Gemini has no tool-call ids (unless the model sends ``functionCall.id``): a call's id is
  ``call_`` + a digest of its position in the answer, name and arguments, so the same answer
  always gets the same ids. ``functionResponse`` carries the name of the matching call.
* Images: base64 ``data`` and ``data:`` URLs go inline; ``https://`` URLs (public, signed or
  Files API) and ``gs://`` URIs go as ``fileData``; anything else is refused.
* ``finishReason``: STOP is ``stop`` (``tool_calls`` when the answer calls tools),
  MAX_TOKENS and CONTINUATION ``length``, the safety family ``content_filter``, unknown
  values ``stop``; a malformed or unexpected function call is a ``ServerError``. Thought
  parts are reasoning, not content; ``Message.name`` has no Gemini field and is dropped.
* Streams have no terminator event: the chunk carrying ``finishReason`` ends the answer,
  so ``Finish`` (and the final ``UsageEvent``) come from the decoder's ``close()``, and
  only if that chunk arrived.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mimetypes
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta, Struct

from ._errors import (
    AuthenticationError,
    ContentFiltered,
    InvalidRequest,
    PermissionDenied,
    ServerError,
    SwitchyardError,
    TransportError,
)
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

__all__ = ["MAX_STOP_SEQUENCES", "GeminiCodec", "GeminiStreamDecoder", "gemini_provider"]

MAX_STOP_SEQUENCES: Final = 5
"""``generationConfig.stopSequences`` takes at most five."""

# Gemini 3 refuses replayed functionCall parts without the thoughtSignature it issued; the
# unified format does not carry signatures, so history uses the value Google documents for
# calls it did not issue itself.
_SKIP_SIGNATURE: Final = "skip_thought_signature_validator"
_FUNCTION_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)
_RETRY_DELAY = re.compile(r"(\d+(?:\.\d+)?)s")
_CONTEXT_LENGTH = re.compile(
    r"input token count.*exceeds|exceeds the maximum number of tokens|"
    r"only supports up to \d+ tokens",
    re.IGNORECASE | re.DOTALL,
)
_FINISH: Final[dict[str, FinishReason]] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    # Cut by the per-request output limit; the rest needs a continuation request.
    "CONTINUATION": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "ESCALATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
    "PUP_LIMITED_DISABLED": "content_filter",
}
# The model's answer is unusable, but another sample (here or elsewhere) may not be.
_MODEL_FAILURES: Final = frozenset(
    {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS", "MALFORMED_RESPONSE"}
)
_HTTP_STATUS: Final = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "ABORTED": 409,
    "ALREADY_EXISTS": 409,
    "RESOURCE_EXHAUSTED": 429,
    "CANCELLED": 499,
    "INTERNAL": 500,
    "UNKNOWN": 500,
    "DATA_LOSS": 500,
    "UNIMPLEMENTED": 501,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


# --- wire shapes (responses) -------------------------------------------------------------

_Count = Annotated[int, Meta(ge=0)]


class _FunctionCall(Struct, frozen=True):
    name: str
    args: dict[str, Any] = {}
    id: str | None = None


class _Blob(Struct, frozen=True, rename="camel"):
    mime_type: str = ""
    data: str = ""


class _FileData(Struct, frozen=True, rename="camel"):
    file_uri: str
    mime_type: str = ""


class _Part(Struct, frozen=True, rename="camel"):
    text: str | None = None
    thought: bool = False
    function_call: _FunctionCall | None = None
    inline_data: _Blob | None = None
    file_data: _FileData | None = None


class _Content(Struct, frozen=True):
    parts: list[_Part] = []
    role: str | None = None


class _Candidate(Struct, frozen=True, rename="camel"):
    content: _Content | None = None
    finish_reason: str | None = None
    index: int = 0


class _UsageMetadata(Struct, frozen=True, rename="camel"):
    prompt_token_count: _Count = 0
    cached_content_token_count: _Count = 0
    candidates_token_count: _Count = 0
    thoughts_token_count: _Count = 0
    tool_use_prompt_token_count: _Count = 0


class _PromptFeedback(Struct, frozen=True, rename="camel"):
    block_reason: str | None = None


class _GenerateContentResponse(Struct, frozen=True, rename="camel"):
    candidates: list[_Candidate] = []
    prompt_feedback: _PromptFeedback | None = None
    usage_metadata: _UsageMetadata | None = None
    model_version: str | None = None
    error: dict[str, Any] | None = None


_response_decoder = msgspec.json.Decoder(_GenerateContentResponse)
_encoder = msgspec.json.Encoder()


# --- errors ------------------------------------------------------------------------------


def _error_object(body: bytes) -> dict[str, Any] | None:
    """The ``error`` object of an error body (an object or a one-item list), if any."""
    try:
        data = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return None
    if isinstance(data, list) and len(data) == 1:
        data = data[0]
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        error: dict[str, Any] = data["error"]
        return error
    return None


def _retry_delay(details: object) -> float | None:
    """``retryDelay`` of a ``google.rpc.RetryInfo`` detail (a Duration such as ``"1.5s"``)."""
    if not isinstance(details, list):
        return None
    for detail in details:
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith(
            "google.rpc.RetryInfo"
        ):
            continue
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and (match := _RETRY_DELAY.fullmatch(delay.strip())):
            return float(match.group(1))
    return None


def _key_rejected(details: object) -> bool:
    # A bad key is 400 INVALID_ARGUMENT with an ErrorInfo reason such as API_KEY_INVALID.
    return isinstance(details, list) and any(
        isinstance(d, dict) and str(d.get("reason", "")).startswith("API_KEY_") for d in details
    )


def _typed_error(
    status: int, headers: Mapping[str, str], error: dict[str, Any] | None, raw: bytes, provider: str
) -> SwitchyardError:
    if error is None:
        snippet = raw[:200].decode("utf-8", "replace").strip()
        return error_for_status(status, snippet, provider=provider, headers=headers)
    code = error.get("status")
    code = code if isinstance(code, str) else ""
    message = error.get("message")
    message = message if isinstance(message, str) else ""
    text = f"{code}: {message}" if code else message
    details = error.get("details")
    if _key_rejected(details):
        return AuthenticationError(f"{status}: {text}", provider=provider, status=status)
    if code == "FAILED_PRECONDITION":
        # "User location is not supported", a region without the free tier: this key cannot
        # be used from here, another provider may be.
        return PermissionDenied(f"{status}: {text}", provider=provider, status=status)
    return error_for_status(
        status,
        text,
        provider=provider,
        headers=headers,
        retry_after=_retry_delay(details),
        context_length=status == 400 and bool(_CONTEXT_LENGTH.search(message)),
        overloaded=status >= 500 and "overloaded" in message.lower(),
    )


def stream_error(payload: Mapping[str, Any], *, provider: str) -> SwitchyardError:
    """The typed error for an in-stream ``{"error": {...}}`` chunk."""
    error = payload.get("error")
    error = error if isinstance(error, dict) else {}
    code = error.get("code")
    status = code if isinstance(code, int) and 100 <= code <= 599 else None
    if status is None:
        status = _HTTP_STATUS.get(str(error.get("status")), 500)
    return _typed_error(status, {}, error, b"", provider)


# --- responses ---------------------------------------------------------------------------


def _json(body: bytes | str, provider: str) -> _GenerateContentResponse:
    try:
        return _response_decoder.decode(body)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise TransportError(
            f"not a Gemini GenerateContentResponse: {exc}", provider=provider
        ) from None


def _usage(meta: _UsageMetadata | None) -> Usage:
    if meta is None:
        return Usage()
    # candidatesTokenCount excludes thinking; tool-use prompt tokens are prompt tokens too.
    return Usage(
        input_tokens=meta.prompt_token_count + meta.tool_use_prompt_token_count,
        output_tokens=meta.candidates_token_count + meta.thoughts_token_count,
        cache_read_tokens=meta.cached_content_token_count,
        reasoning_tokens=meta.thoughts_token_count,
    )


def _call_id(call: _FunctionCall, index: int) -> str:
    if call.id:
        return call.id
    seed = _encoder.encode([index, call.name, call.args])
    return "call_" + hashlib.blake2b(seed, digest_size=8).hexdigest()


def _image(blob: _Blob, provider: str) -> ImagePart:
    data = blob.data.strip().replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise TransportError("inlineData is not base64", provider=provider) from None
    # The SDK hands bytes back URL-safe; the unified form is standard base64.
    return ImagePart(data=base64.b64encode(raw).decode("ascii"), media_type=blob.mime_type)


def _finish_reason(reason: str, *, calls: bool, provider: str) -> FinishReason:
    if reason in _MODEL_FAILURES:
        raise ServerError(f"the model's answer was unusable ({reason})", provider=provider)
    if reason == "MISSING_THOUGHT_SIGNATURE":
        raise InvalidRequest(
            "the history lacks a thought signature Gemini requires", provider=provider
        )
    mapped = _FINISH.get(reason, "stop")
    return "tool_calls" if mapped == "stop" and calls else mapped


def _check_blocked(response: _GenerateContentResponse, provider: str) -> None:
    if response.error is not None:
        raise stream_error({"error": response.error}, provider=provider)
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason:
        raise ContentFiltered(
            f"Gemini blocked the prompt ({feedback.block_reason})", provider=provider
        )


def _decode_response(body: bytes, provider: str) -> Response:
    response = _json(body, provider)
    _check_blocked(response, provider)
    if not response.candidates:
        raise TransportError("Gemini answered without candidates", provider=provider)
    candidate = response.candidates[0]
    if candidate.finish_reason is None:
        raise TransportError("Gemini answered without a finishReason", provider=provider)
    content: list[ContentPart] = []
    text: list[str] = []
    calls = 0
    for part in candidate.content.parts if candidate.content else ():
        if part.text is not None:
            if not part.thought:
                text.append(part.text)
            continue
        if "".join(text):
            content.append(TextPart("".join(text)))
        text = []
        if part.function_call is not None:
            call = part.function_call
            content.append(
                ToolCallPart(id=_call_id(call, calls), name=call.name, arguments=call.args)
            )
            calls += 1
        elif part.inline_data is not None and part.inline_data.mime_type.startswith("image/"):
            content.append(_image(part.inline_data, provider))
        elif part.file_data is not None and part.file_data.mime_type.startswith("image/"):
            content.append(
                ImagePart(url=part.file_data.file_uri, media_type=part.file_data.mime_type)
            )
    if "".join(text):
        content.append(TextPart("".join(text)))
    return Response(
        content=tuple(content),
        finish_reason=_finish_reason(candidate.finish_reason, calls=calls > 0, provider=provider),
        usage=_usage(response.usage_metadata),
        provider=provider,
        model=response.model_version or "",
    )


class GeminiStreamDecoder:
    """One streamed answer: every SSE event is a whole ``GenerateContentResponse`` chunk."""

    __slots__ = ("_calls", "_finish", "_model", "_provider", "_usage")

    def __init__(self, *, provider: str, model: str) -> None:
        self._provider = provider
        self._model = model
        self._calls = 0
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None

    def feed(self, event: ServerSentEvent) -> list[StreamEvent]:
        chunk = _json(event.data, self._provider)
        _check_blocked(chunk, self._provider)
        if chunk.model_version:
            self._model = chunk.model_version
        if chunk.usage_metadata is not None:
            # Every chunk carries the running totals; the last one is the answer's usage.
            self._usage = _usage(chunk.usage_metadata)
        if not chunk.candidates:
            return []
        candidate = chunk.candidates[0]
        events: list[StreamEvent] = []
        for part in candidate.content.parts if candidate.content else ():
            if part.function_call is not None:
                call = part.function_call
                events.append(
                    ToolCallDelta(
                        index=self._calls,
                        id=_call_id(call, self._calls),
                        name=call.name,
                        arguments_delta=_encoder.encode(call.args).decode(),
                    )
                )
                self._calls += 1
            elif part.text and not part.thought:
                events.append(TextDelta(part.text))
        if candidate.finish_reason is not None:
            self._finish = _finish_reason(
                candidate.finish_reason, calls=self._calls > 0, provider=self._provider
            )
        return events

    def close(self) -> list[StreamEvent]:
        if self._finish is None:
            return []
        events: list[StreamEvent] = []
        if self._usage is not None:
            events.append(UsageEvent(self._usage))
        events.append(Finish(self._finish, model=self._model))
        return events


# --- requests ----------------------------------------------------------------------------


def _image_part(part: ImagePart, where: str) -> dict[str, Any]:
    if part.data is not None:
        return {"inlineData": {"mimeType": part.media_type, "data": part.data}}
    url = part.url or ""
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if match is None:
            raise InvalidRequest(
                "a data: URL must be data:image/...;base64,...", field=f"{where}.url"
            )
        return {"inlineData": {"mimeType": match.group(1), "data": match.group(2)}}
    scheme = urlsplit(url).scheme.lower()
    if scheme not in ("https", "gs"):
        raise InvalidRequest(
            f"Gemini fetches images only from https:// or gs:// URLs, not {scheme or url!r}",
            field=f"{where}.url",
        )
    media_type = part.media_type or mimetypes.guess_type(urlsplit(url).path)[0]
    if not media_type or not media_type.startswith("image/"):
        raise InvalidRequest(
            "Gemini needs the image's media type for a URL; give media_type",
            field=f"{where}.media_type",
        )
    return {"fileData": {"mimeType": media_type, "fileUri": url}}


def _parts(message: Message, i: int, role: str, call_names: dict[str, str]) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        if not message.content:
            raise InvalidRequest("Gemini refuses empty text", field=f"messages[{i}].content")
        return [{"text": message.content}]
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(message.content):
        where = f"messages[{i}].content[{j}]"
        match part:
            case TextPart(text=text):
                if text:
                    parts.append({"text": text})
            case ImagePart():
                if role == "system":
                    raise InvalidRequest("Gemini system instructions are text only", field=where)
                parts.append(_image_part(part, where))
            case ToolCallPart(id=call_id, name=name, arguments=arguments):
                call_names[call_id] = name
                parts.append({"functionCall": {"name": name, "args": arguments}})
            case ToolResultPart(tool_call_id=call_id, content=text, is_error=is_error):
                if role != "user":
                    raise InvalidRequest("tool results go in a tool or user message", field=where)
                called = call_names.get(call_id)
                if called is None:
                    raise InvalidRequest(
                        f"no earlier tool call has id {call_id!r}", field=f"{where}.tool_call_id"
                    )
                result = {"error": text} if is_error else {"output": text}
                parts.append({"functionResponse": {"name": called, "response": result}})
    if not parts:
        raise InvalidRequest(
            "Gemini refuses a turn without content", field=f"messages[{i}].content"
        )
    return parts


_ROLES: Final = {"system": "system", "user": "user", "tool": "user", "assistant": "model"}


def _contents(
    messages: tuple[Message, ...],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(systemInstruction parts, contents)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    call_names: dict[str, str] = {}
    for i, message in enumerate(messages):
        role = _ROLES[message.role]
        if role == "system":
            if contents:
                raise InvalidRequest(
                    "Gemini takes system instructions only before the conversation",
                    field=f"messages[{i}].role",
                )
            system.extend(_parts(message, i, role, call_names))
            continue
        parts = _parts(message, i, role, call_names)
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if not contents:
        raise InvalidRequest("Gemini needs a user or assistant message", field="messages")
    for content in contents:
        if content["role"] == "model":
            # Each model turn is one step; its first call is the one a signature goes on.
            call = next((p for p in content["parts"] if "functionCall" in p), None)
            if call is not None:
                call["thoughtSignature"] = _SKIP_SIGNATURE
    return system, contents


def _tools(request: Request) -> dict[str, Any]:
    options = request.options
    out: dict[str, Any] = {}
    names = {tool.name for tool in options.tools}
    if options.tools:
        declarations = []
        for i, tool in enumerate(options.tools):
            if not _FUNCTION_NAME.fullmatch(tool.name):
                raise InvalidRequest(
                    "Gemini function names are 1-64 of A-Z a-z 0-9 _ . : -",
                    field=f"tools[{i}].name",
                )
            declaration: dict[str, Any] = {"name": tool.name}
            if tool.description:
                declaration["description"] = tool.description
            if tool.parameters:
                declaration["parametersJsonSchema"] = tool.parameters
            declarations.append(declaration)
        out["tools"] = [{"functionDeclarations": declarations}]
    choice = options.tool_choice
    if choice is None:
        return out
    if isinstance(choice, NamedToolChoice):
        if choice.name not in names:
            raise InvalidRequest(f"no tool is named {choice.name!r}", field="tool_choice")
        calling: dict[str, Any] = {"mode": "ANY", "allowedFunctionNames": [choice.name]}
    elif choice == "required" and not options.tools:
        raise InvalidRequest("'required' needs tools", field="tool_choice")
    else:
        calling = {"mode": {"auto": "AUTO", "none": "NONE", "required": "ANY"}[choice]}
    if options.tools:
        out["toolConfig"] = {"functionCallingConfig": calling}
    return out


def _generation_config(request: Request) -> dict[str, Any]:
    options = request.options
    config: dict[str, Any] = {}
    if options.max_tokens is not None:
        config["maxOutputTokens"] = options.max_tokens
    if options.temperature is not None:
        config["temperature"] = options.temperature
    if options.top_p is not None:
        config["topP"] = options.top_p
    if options.stop:
        if len(options.stop) > MAX_STOP_SEQUENCES:
            raise InvalidRequest(
                f"Gemini takes at most {MAX_STOP_SEQUENCES} stop sequences, "
                f"got {len(options.stop)}",
                field="stop",
            )
        config["stopSequences"] = list(options.stop)
    if options.response_format is not None:
        config["responseMimeType"] = "application/json"
        config["responseJsonSchema"] = options.response_format.schema
    return config


class GeminiCodec:
    """The Gemini ``generateContent`` wire format (see the module docstring)."""

    def path(self, request: Request, *, model: str, stream: bool) -> str:
        name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
        if not _MODEL_NAME.fullmatch(name):
            raise InvalidRequest(f"not a Gemini model name: {model!r}", field="model")
        return f"/v1beta/{name}:" + (
            "streamGenerateContent?alt=sse" if stream else "generateContent"
        )

    def body(self, request: Request) -> dict[str, Any]:
        """The request as a JSON-ready dict; raises ``InvalidRequest`` for what Gemini lacks."""
        system, contents = _contents(request.messages)
        body: dict[str, Any] = {"contents": contents}
        if system:
            body["systemInstruction"] = {"parts": system}
        body.update(_tools(request))
        config = _generation_config(request)
        if config:
            body["generationConfig"] = config
        return body

    def encode(self, request: Request, *, model: str, stream: bool) -> bytes:
        body = self.body(request)
        try:
            return _encoder.encode(body)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidRequest(f"the request holds a value JSON cannot carry: {exc}") from None

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key}

    def decode(self, body: bytes, *, provider: str) -> Response:
        return _decode_response(body, provider)

    def stream_decoder(self, *, provider: str, model: str) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(provider=provider, model=model)

    def error(
        self, status: int, headers: Mapping[str, str], body: bytes, *, provider: str
    ) -> SwitchyardError:
        return _typed_error(status, headers, _error_object(body), body, provider)


def gemini_provider(
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
    """A native HTTP provider for the Gemini API at ``base_url`` (the bare host)."""
    return HttpProvider(
        kind="gemini",
        name=name,
        codec=GeminiCodec(),
        base_url=base_url,
        api_key=api_key,
        model=model,
        extra_headers=extra_headers,
        client=client,
        http_client=http_client,
        max_connections=max_connections,
    )
