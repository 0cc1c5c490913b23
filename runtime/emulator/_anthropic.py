"""Anthropic Messages wire format."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from ._limits import LimitStatus
from ._model import EFFORT_TOKENS, ApiError, Prompt, Reply, ToolDef, budget_tokens, tool_call_id
from ._provider import ErrorInfo, Headers, ProviderApi, StreamPlan, encode, new_id
from ._text import encode_json, stable_id, word_pieces

_STOP = {"stop": "end_turn", "length": "max_tokens", "tool": "tool_use"}
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
    "timeout": 504,
    "overloaded": 529,
}
_TYPES = {
    "bad_request": "invalid_request_error",
    "context_length": "invalid_request_error",
    "missing_key": "authentication_error",
    "invalid_key": "authentication_error",
    "auth": "authentication_error",
    "permission": "permission_error",
    "not_found": "not_found_error",
    "rate_limit": "rate_limit_error",
    "server": "api_error",
    "unavailable": "api_error",
    "timeout": "timeout_error",
    "overloaded": "overloaded_error",
}
_MESSAGES = {
    "bad_request": "Invalid request.",
    "missing_key": "x-api-key header is required",
    "invalid_key": "invalid x-api-key",
    "auth": "invalid x-api-key",
    "permission": "Your API key does not have permission to use the specified resource.",
    "server": "Internal server error",
    "unavailable": "Service unavailable",
    "timeout": "Request timeout",
    "overloaded": "Overloaded",
}
_RATE_TAIL = (
    " For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the "
    "response headers for current usage. Please reduce the prompt length or the maximum tokens "
    "requested, or try again later. You may also contact sales at "
    "https://www.anthropic.com/contact-sales to discuss your options for a rate limit increase."
)


def _sse(event: bytes, data: bytes) -> bytes:
    return b"event: " + event + b"\ndata: " + data + b"\n\n"


def _block_text(block: dict[str, Any]) -> list[str]:
    kind = block.get("type")
    if kind == "text":
        text = block.get("text")
        return [text] if isinstance(text, str) else []
    if kind == "tool_use":
        return [encode_json(block.get("input", {}))]
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, str):
            return [content]
        if isinstance(content, list):
            return [t for b in content if isinstance(b, dict) for t in _block_text(b)]
    return []


def _rfc3339(seconds_from_now: float) -> str:
    return datetime.fromtimestamp(time.time() + seconds_from_now, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


class AnthropicApi(ProviderApi):
    """``POST /v1/messages``, ``/v1/messages/count_tokens`` and ``GET /v1/models``."""

    name = "anthropic"
    default_models: ClassVar[tuple[str, ...]] = (
        "claude-sonnet-5",
        "claude-haiku-5-5",
        "claude-opus-5",
    )

    def __init__(self, cache: bool = False) -> None:
        self.cache = cache

    def api_key(self, headers: Mapping[str, str], query: str) -> str | None:
        key = headers.get("x-api-key")
        if key:
            return key
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    def parse(self, body: Any, model: str | None) -> Prompt:
        if not isinstance(body, dict):
            raise ApiError("bad_request", "Request body must be a JSON object")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError("bad_request", "model: Field required")
        max_tokens = body.get("max_tokens")
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
            raise ApiError("bad_request", "max_tokens: Field required")
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError("bad_request", "messages: at least one message is required")
        chars = 0
        cached_at = 0
        parts: list[str] = []
        system = body.get("system")
        blocks: list[Any] = [{"type": "text", "text": system}] if isinstance(system, str) else []
        if isinstance(system, list):
            blocks = system
        for block in blocks:
            if isinstance(block, dict):
                texts = _block_text(block)
                chars += sum(map(len, texts))
                parts.extend(texts)
                if block.get("cache_control"):
                    cached_at = len(parts)
        last: list[str] = []
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict) or msg.get("role") not in ("user", "assistant"):
                raise ApiError(
                    "bad_request", f"messages.{i}.role: Input should be 'user' or 'assistant'"
                )
            content = msg.get("content")
            last = []
            if isinstance(content, str):
                last.append(content)
                parts.append(content)
            elif isinstance(content, list):
                for block in content:
                    if isinstance(block, dict):
                        texts = _block_text(block)
                        last.extend(texts)
                        parts.extend(texts)
                        if block.get("cache_control"):
                            cached_at = len(parts)
            chars += sum(map(len, last))
        prompt = Prompt(model=model, chars=chars, seed="\n".join(last), max_tokens=max_tokens)
        final = messages[-1].get("content")
        prompt.last_is_tool_result = isinstance(final, list) and any(
            isinstance(b, dict) and b.get("type") == "tool_result" for b in final
        )
        prompt.stream = body.get("stream") is True
        tools = body.get("tools")
        if tools:
            prompt.tools = tuple(
                ToolDef(t["name"], t["input_schema"])
                for t in tools
                if isinstance(t, dict) and "input_schema" in t and isinstance(t.get("name"), str)
            )
            choice = body.get("tool_choice")
            if isinstance(choice, dict):
                kind = choice.get("type")
                if kind == "none":
                    prompt.tool_mode = "none"
                elif kind == "any":
                    prompt.tool_mode = "required"
                elif kind == "tool":
                    prompt.tool_mode = "required"
                    prompt.forced_tool = choice.get("name")
        for key in ("output_config", "output_format"):
            cfg = body.get(key)
            fmt = cfg.get("format", cfg) if isinstance(cfg, dict) else None
            if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
                prompt.json_schema = fmt.get("schema") or {}
        thinking = body.get("thinking")
        if isinstance(thinking, dict):
            if thinking.get("type") == "enabled":
                prompt.reasoning = budget_tokens(thinking.get("budget_tokens"))
            elif thinking.get("type") == "adaptive":
                prompt.reasoning = EFFORT_TOKENS["medium"]
        if self.cache and cached_at:
            prompt.prefix_chars = sum(map(len, parts[:cached_at]))
            prompt.prefix_key = hashlib.blake2b("\x1f".join(parts[:cached_at]).encode()).hexdigest()
        return prompt

    def _usage(self, r: Reply, output_tokens: int) -> dict[str, Any]:
        return {
            "input_tokens": r.input_tokens - r.cache_read_tokens - r.cache_creation_tokens,
            "cache_creation_input_tokens": r.cache_creation_tokens,
            "cache_read_input_tokens": r.cache_read_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": r.cache_creation_tokens,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    def _signature(self, p: Prompt) -> str:
        return "EmuSig" + stable_id("sig:" + p.seed, 40)

    def render(self, p: Prompt, r: Reply) -> bytes:
        content: list[dict[str, Any]] = []
        if r.thinking:
            content.append(
                {
                    "type": "thinking",
                    "thinking": " ".join(r.thinking),
                    "signature": self._signature(p),
                }
            )
        if r.kind == "tool":
            content.append(
                {
                    "type": "tool_use",
                    "id": tool_call_id("toolu_", r.tool_seed),
                    "name": r.tool_name,
                    "input": r.tool_args,
                }
            )
        else:
            content.append({"type": "text", "text": r.text})
        return encode(
            {
                "id": new_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": p.model,
                "content": content,
                "stop_reason": _STOP[r.finish],
                "stop_sequence": None,
                "usage": self._usage(r, r.output_tokens),
            }
        )

    def stream(self, p: Prompt, r: Reply) -> StreamPlan:
        start = {
            "type": "message_start",
            "message": {
                "id": new_id("msg_"),
                "type": "message",
                "role": "assistant",
                "model": p.model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": self._usage(r, 1),
            },
        }
        frames = [_sse(b"message_start", encode(start))]
        first_content = 0
        # Each block: its content_block_start payload and its complete delta objects.
        blocks: list[tuple[dict[str, Any], list[bytes]]] = []
        if r.thinking:
            deltas = [
                b'{"type":"thinking_delta","thinking":' + encode(piece) + b"}"
                for piece in word_pieces(r.thinking)
            ]
            deltas.append(encode({"type": "signature_delta", "signature": self._signature(p)}))
            blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
        if r.kind == "tool":
            tool: dict[str, Any] = {
                "type": "tool_use",
                "id": tool_call_id("toolu_", r.tool_seed),
                "name": r.tool_name,
                "input": {},
            }
            deltas = [
                b'{"type":"input_json_delta","partial_json":' + encode(piece) + b"}"
                for piece in ["", *r.pieces]
            ]
            blocks.append((tool, deltas))
        else:
            deltas = [b'{"type":"text_delta","text":' + encode(piece) + b"}" for piece in r.pieces]
            blocks.append(({"type": "text", "text": ""}, deltas))
        for index, (block, deltas) in enumerate(blocks):
            start_block = {"type": "content_block_start", "index": index, "content_block": block}
            frames.append(_sse(b"content_block_start", encode(start_block)))
            if index == 0:
                frames.append(_sse(b"ping", b'{"type": "ping"}'))
                first_content = len(frames)
            head = b'{"type":"content_block_delta","index":' + str(index).encode() + b',"delta":'
            frames.extend(_sse(b"content_block_delta", head + d + b"}") for d in deltas)
            stop = b'{"type":"content_block_stop","index":' + str(index).encode() + b"}"
            frames.append(_sse(b"content_block_stop", stop))
        usage = self._usage(r, r.output_tokens)
        del usage["cache_creation"], usage["service_tier"]
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP[r.finish], "stop_sequence": None},
            "usage": usage,
        }
        frames.append(_sse(b"message_delta", encode(delta)))
        frames.append(_sse(b"message_stop", b'{"type":"message_stop"}'))
        return StreamPlan(frames=frames, first_content=first_content, n_term=1)

    def status_for(self, kind: str) -> int:
        return _STATUS.get(kind, 500)

    def _error(self, kind: str, info: ErrorInfo) -> dict[str, Any]:
        message = info.message or _MESSAGES.get(kind)
        if kind == "not_found":
            message = f"model: {info.model}"
        elif kind == "context_length":
            message = f"prompt is too long: {info.tokens} tokens > {info.limit} maximum"
        elif kind == "rate_limit":
            st = info.limits
            if st is not None and st.exceeded == "tokens":
                message = (
                    "This request would exceed the rate limit for your organization "
                    f"(org-emulator) of {st.tpm} input tokens per minute." + _RATE_TAIL
                )
            elif st is not None:
                message = (
                    "This request would exceed the rate limit for your organization "
                    f"(org-emulator) of {st.rpm} requests per minute." + _RATE_TAIL
                )
            else:
                message = message or (
                    "This request would exceed your organization's rate limit." + _RATE_TAIL
                )
        return {
            "type": "error",
            "error": {"type": _TYPES.get(kind, "api_error"), "message": message or "Error"},
            "request_id": new_id("req_"),
        }

    def error(self, kind: str, status: int, info: ErrorInfo) -> tuple[bytes, Headers]:
        return encode(self._error(kind, info)), []

    def stream_error(self, kind: str, status: int, info: ErrorInfo) -> bytes:
        return _sse(b"error", encode(self._error(kind, info)))

    def limit_headers(self, st: LimitStatus) -> Headers:
        headers: Headers = []
        if st.rpm is not None:
            headers += [
                (b"anthropic-ratelimit-requests-limit", str(st.rpm).encode()),
                (b"anthropic-ratelimit-requests-remaining", str(st.remaining_requests).encode()),
                (b"anthropic-ratelimit-requests-reset", _rfc3339(st.reset_requests).encode()),
            ]
        if st.tpm is not None:
            headers += [
                (b"anthropic-ratelimit-tokens-limit", str(st.tpm).encode()),
                (b"anthropic-ratelimit-tokens-remaining", str(st.remaining_tokens).encode()),
                (b"anthropic-ratelimit-tokens-reset", _rfc3339(st.reset_tokens).encode()),
            ]
        return headers

    def request_id_headers(self) -> Headers:
        return [(b"request-id", new_id("req_").encode())]

    def models(self, configured: tuple[str, ...] | None) -> bytes:
        names = list(configured or self.default_models)
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in names
        ]
        return encode({"data": data, "has_more": False, "first_id": names[0], "last_id": names[-1]})
