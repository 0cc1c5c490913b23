"""OpenAI Chat Completions wire format."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from ._limits import LimitStatus
from ._model import EFFORT_TOKENS, ApiError, Prompt, Reply, ToolDef, ToolMode, tool_call_id
from ._provider import ErrorInfo, Headers, ProviderApi, StreamPlan, encode, new_id

_FINISH = {"stop": "stop", "length": "length", "tool": "tool_calls"}
_STATUS = {
    "bad_request": 400,
    "context_length": 400,
    "missing_key": 401,
    "invalid_key": 401,
    "auth": 401,
    "permission": 403,
    "not_found": 404,
    "rate_limit": 429,
    "server": 500,
    "unavailable": 503,
    "overloaded": 503,
    "timeout": 504,
}
_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
    "(with blank username) if you're accessing the API from your browser and are prompted for "
    "a username and password. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
_SERVER = "The server had an error while processing your request. Sorry about that!"
_OVERLOADED = "The server is overloaded or not ready yet."
_DONE = b"data: [DONE]\n\n"


def text_of(content: object) -> list[str]:
    """Text fragments of a message ``content`` (string or list of parts)."""
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    return []


def _mask(key: str | None) -> str:
    key = key or ""
    return key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 7 else "*" * len(key)


def _duration(seconds: float) -> str:
    """Go-style duration as in ``x-ratelimit-reset-*`` (``17ms``, ``8.64s``, ``1m0s``)."""
    if seconds < 1:
        return f"{int(seconds * 1000)}ms"
    minutes, secs = divmod(seconds, 60)
    text = f"{secs:.3f}".rstrip("0").rstrip(".")
    return f"{int(minutes)}m{text}s" if minutes else f"{text}s"


class OpenAIApi(ProviderApi):
    """``POST /v1/chat/completions`` and ``GET /v1/models``."""

    name = "openai"
    default_models: ClassVar[tuple[str, ...]] = ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "o4-mini")

    def __init__(self, cache: bool = False) -> None:
        self.cache = cache

    def api_key(self, headers: Mapping[str, str], query: str) -> str | None:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None

    def parse(self, body: Any, model: str | None) -> Prompt:
        if not isinstance(body, dict):
            raise ApiError("bad_request", "Invalid type for request body: expected an object.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError("bad_request", "you must provide a model parameter", param="model")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError("bad_request", "[] is too short - 'messages'", param="messages")
        chars = 0
        prefix_chars = 0
        parts: list[str] = []
        last: list[str] = []
        n = len(messages)
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
                raise ApiError(
                    "bad_request", f"Invalid value for 'messages[{i}]'.", param="messages"
                )
            texts = text_of(msg.get("content"))
            for call in msg.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, dict) else None
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    texts.append(fn["arguments"])
            chars += sum(map(len, texts))
            if i < n - 1:
                prefix_chars = chars
                if self.cache:
                    parts.extend(texts)
            else:
                last = texts
        prompt = Prompt(model=model, chars=chars, seed="\n".join(last))
        prompt.last_is_tool_result = messages[-1].get("role") == "tool"
        prompt.stream = body.get("stream") is True
        if prompt.stream:
            opts = body.get("stream_options")
            prompt.include_usage = isinstance(opts, dict) and opts.get("include_usage") is True
        limit = body.get("max_completion_tokens", body.get("max_tokens"))
        if isinstance(limit, int):
            prompt.max_tokens = limit
        effort = body.get("reasoning_effort")
        if isinstance(effort, str):
            prompt.reasoning = EFFORT_TOKENS.get(effort, 0)
        tools = body.get("tools")
        if tools:
            prompt.tools = tuple(
                ToolDef(t["function"]["name"], t["function"].get("parameters") or {})
                for t in tools
                if isinstance(t, dict) and isinstance(t.get("function"), dict)
            )
            choice = body.get("tool_choice", "auto")
            if isinstance(choice, dict):
                fn = choice.get("function")
                prompt.forced_tool = fn.get("name") if isinstance(fn, dict) else None
                prompt.tool_mode = "required"
            elif choice in ("none", "auto", "required"):
                mode: ToolMode = choice
                prompt.tool_mode = mode
        fmt = body.get("response_format")
        if isinstance(fmt, dict):
            if fmt.get("type") == "json_schema":
                spec = fmt.get("json_schema")
                prompt.json_schema = (spec.get("schema") if isinstance(spec, dict) else None) or {}
            elif fmt.get("type") == "json_object":
                prompt.json_mode = True
        if self.cache and prefix_chars:
            prompt.prefix_chars = prefix_chars
            prompt.prefix_key = hashlib.blake2b("\x1f".join(parts).encode()).hexdigest()
        return prompt

    def _usage(self, r: Reply) -> dict[str, Any]:
        return {
            "prompt_tokens": r.input_tokens,
            "completion_tokens": r.output_tokens,
            "total_tokens": r.input_tokens + r.output_tokens,
            "prompt_tokens_details": {"cached_tokens": r.cache_read_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": r.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }

    def render(self, p: Prompt, r: Reply) -> bytes:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": r.text,
            "refusal": None,
            "annotations": [],
        }
        if r.kind == "tool":
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": tool_call_id("call_", r.tool_seed),
                    "type": "function",
                    "function": {"name": r.tool_name, "arguments": r.text},
                }
            ]
        return encode(
            {
                "id": new_id("chatcmpl-"),
                "object": "chat.completion",
                "created": int(time.time()),
                "model": p.model,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": _FINISH[r.finish],
                    }
                ],
                "usage": self._usage(r),
                "service_tier": "default",
                "system_fingerprint": "fp_emulator",
            }
        )

    def stream(self, p: Prompt, r: Reply) -> StreamPlan:
        head = encode(
            {
                "id": new_id("chatcmpl-"),
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": p.model,
                "service_tier": "default",
                "system_fingerprint": "fp_emulator",
            }
        )[:-1]
        tail = b',"usage":null}\n\n' if p.include_usage else b"}\n\n"
        prefix = b"data: " + head + b',"choices":[{"index":0,"delta":'
        suffix = b',"logprobs":null,"finish_reason":null}]' + tail

        frames: list[bytes] = []
        if r.kind == "tool":
            first: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "index": 0,
                        "id": tool_call_id("call_", r.tool_seed),
                        "type": "function",
                        "function": {"name": r.tool_name, "arguments": ""},
                    }
                ],
                "refusal": None,
            }
            frames.append(prefix + encode(first) + suffix)
            piece_prefix = prefix + b'{"tool_calls":[{"index":0,"function":{"arguments":'
            piece_suffix = b"}}]}" + suffix
        else:
            frames.append(prefix + b'{"role":"assistant","content":"","refusal":null}' + suffix)
            piece_prefix = prefix + b'{"content":'
            piece_suffix = b"}" + suffix
        frames.extend(piece_prefix + encode(piece) + piece_suffix for piece in r.pieces)
        finish = encode(_FINISH[r.finish])
        frames.append(prefix + b'{},"logprobs":null,"finish_reason":' + finish + b"}]" + tail)
        if p.include_usage:
            usage = encode(self._usage(r))
            frames.append(b"data: " + head + b',"choices":[],"usage":' + usage + b"}\n\n")
        frames.append(_DONE)
        return StreamPlan(frames=frames, first_content=1, n_term=1)

    def status_for(self, kind: str) -> int:
        return _STATUS.get(kind, 500)

    def _error(self, kind: str, info: ErrorInfo) -> dict[str, Any]:
        kind_type, code, param = "invalid_request_error", None, info.param
        message = info.message
        if kind == "missing_key":
            message = _MISSING_KEY
        elif kind in ("invalid_key", "auth"):
            code = "invalid_api_key"
            message = (
                f"Incorrect API key provided: {_mask(info.api_key)}. You can find your API key "
                "at https://platform.openai.com/account/api-keys."
            )
        elif kind == "permission":
            message = message or "You have insufficient permissions for this operation."
        elif kind == "not_found":
            code = "model_not_found"
            message = f"The model `{info.model}` does not exist or you do not have access to it."
        elif kind == "context_length":
            code, param = "context_length_exceeded", "messages"
            message = (
                f"This model's maximum context length is {info.limit} tokens. However, your "
                f"messages resulted in {info.tokens} tokens. Please reduce the length of the "
                "messages."
            )
        elif kind == "rate_limit":
            code = "rate_limit_exceeded"
            st = info.limits
            wait = f"{info.retry_after:.3g}s" if info.retry_after is not None else "a moment"
            if st is not None and st.exceeded == "tokens":
                kind_type = "tokens"
                message = (
                    f"Rate limit reached for {info.model} in organization org-emulator on tokens "
                    f"per min (TPM): Limit {st.tpm}, Used {st.used_tokens}, Requested "
                    f"{info.tokens}. Please try again in {wait}. Visit "
                    "https://platform.openai.com/account/rate-limits to learn more."
                )
            else:
                kind_type = "requests"
                limit = f"Limit {st.rpm}, Used {st.used_requests}, " if st is not None else ""
                message = (
                    f"Rate limit reached for {info.model} in organization org-emulator on "
                    f"requests per min (RPM): {limit}Requested 1. Please try again in {wait}. "
                    "Visit https://platform.openai.com/account/rate-limits to learn more."
                )
        elif kind in ("unavailable", "overloaded"):
            kind_type, message = "server_error", message or _OVERLOADED
        elif kind in ("server", "timeout"):
            kind_type, message = "server_error", message or _SERVER
        return {
            "error": {
                "message": message or "Invalid request.",
                "type": kind_type,
                "param": param,
                "code": code,
            }
        }

    def error(self, kind: str, status: int, info: ErrorInfo) -> tuple[bytes, Headers]:
        return encode(self._error(kind, info)), []

    def stream_error(self, kind: str, status: int, info: ErrorInfo) -> bytes:
        # The real API reports a mid-stream failure as a data event holding an
        # "error" object (no event name); the SDK raises APIError on it.
        return b"data: " + encode(self._error(kind, info)) + b"\n\n"

    def limit_headers(self, st: LimitStatus) -> Headers:
        headers: Headers = []
        if st.rpm is not None:
            headers += [
                (b"x-ratelimit-limit-requests", str(st.rpm).encode()),
                (b"x-ratelimit-remaining-requests", str(st.remaining_requests).encode()),
                (b"x-ratelimit-reset-requests", _duration(st.reset_requests).encode()),
            ]
        if st.tpm is not None:
            headers += [
                (b"x-ratelimit-limit-tokens", str(st.tpm).encode()),
                (b"x-ratelimit-remaining-tokens", str(st.remaining_tokens).encode()),
                (b"x-ratelimit-reset-tokens", _duration(st.reset_tokens).encode()),
            ]
        return headers

    def request_id_headers(self) -> Headers:
        return [(b"x-request-id", new_id("req_").encode())]

    def models(self, configured: tuple[str, ...] | None) -> bytes:
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "system"}
            for m in configured or self.default_models
        ]
        return encode({"object": "list", "data": data})
