"""Gemini (Generative Language API, v1beta) wire format."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qs

from ._model import EFFORT_TOKENS, ApiError, Prompt, Reply, ToolDef, budget_tokens
from ._provider import ErrorInfo, Headers, ProviderApi, StreamPlan, encode, new_id
from ._text import encode_json

_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool": "STOP"}
_STATUS = {
    "bad_request": 400,
    "context_length": 400,
    "invalid_key": 400,
    "missing_key": 403,
    "auth": 401,
    "permission": 403,
    "not_found": 404,
    "rate_limit": 429,
    "server": 500,
    "unavailable": 503,
    "overloaded": 503,
    "timeout": 504,
}
_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_MESSAGES = {
    "bad_request": "Request contains an invalid argument.",
    "invalid_key": "API key not valid. Please pass a valid API key.",
    "missing_key": (
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API."
    ),
    "auth": (
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project."
    ),
    "permission": "The caller does not have permission",
    "rate_limit": (
        "You exceeded your current quota, please check your plan and billing details. For more "
        "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
    ),
    "server": (
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting"
    ),
    "unavailable": "The model is overloaded. Please try again later.",
    "overloaded": "The model is overloaded. Please try again later.",
    "timeout": "Deadline expired before operation could complete.",
}
_SEP = b"\r\n\r\n"


def _get(obj: Mapping[str, Any], camel: str, snake: str) -> Any:
    value = obj.get(camel)
    return obj.get(snake) if value is None else value


def _part_text(part: Mapping[str, Any]) -> str | None:
    text = part.get("text")
    if isinstance(text, str):
        return None if part.get("thought") else text
    call = _get(part, "functionCall", "function_call")
    if isinstance(call, dict):
        return encode_json(call.get("args", {}))
    result = _get(part, "functionResponse", "function_response")
    if isinstance(result, dict):
        return encode_json(result.get("response", {}))
    return None


def _texts(content: object) -> list[str]:
    if not isinstance(content, dict):
        return []
    parts = content.get("parts")
    if not isinstance(parts, list):
        return []
    return [t for p in parts if isinstance(p, dict) and (t := _part_text(p)) is not None]


class GeminiApi(ProviderApi):
    """``models/{model}:generateContent``, ``:streamGenerateContent``, ``:countTokens``."""

    name = "gemini"
    default_models: ClassVar[tuple[str, ...]] = ("gemini-2.5-flash", "gemini-2.5-pro")
    json_headers: ClassVar[Headers] = [(b"content-type", b"application/json; charset=UTF-8")]
    sse_headers: ClassVar[Headers] = [(b"content-type", b"text/event-stream")]

    def __init__(self, cache: bool = False) -> None:
        self.cache = cache

    def api_key(self, headers: Mapping[str, str], query: str) -> str | None:
        key = headers.get("x-goog-api-key")
        if key:
            return key
        if "key=" in query:
            values = parse_qs(query).get("key")
            if values and values[0]:
                return values[0]
        return None

    def parse(self, body: Any, model: str | None) -> Prompt:
        if not isinstance(body, dict):
            raise ApiError("bad_request", "Invalid JSON payload received.")
        contents = body.get("contents")
        if not isinstance(contents, list) or not contents:
            raise ApiError(
                "bad_request", "* GenerateContentRequest.contents: contents is not specified\n"
            )
        chars = 0
        prefix_chars = 0
        parts: list[str] = []
        system = _texts(_get(body, "systemInstruction", "system_instruction"))
        chars += sum(map(len, system))
        parts.extend(system)
        last: list[str] = []
        for i, content in enumerate(contents):
            texts = _texts(content)
            chars += sum(map(len, texts))
            if i < len(contents) - 1:
                prefix_chars = chars
                parts.extend(texts)
            else:
                last = texts
        prompt = Prompt(model=model or "", chars=chars, seed="\n".join(last))
        final = contents[-1]
        final_parts = final.get("parts") if isinstance(final, dict) else None
        prompt.last_is_tool_result = isinstance(final_parts, list) and any(
            isinstance(p, dict) and _get(p, "functionResponse", "function_response") is not None
            for p in final_parts
        )
        tools = body.get("tools")
        if isinstance(tools, list):
            defs: list[ToolDef] = []
            for tool in tools:
                decls = _get(tool, "functionDeclarations", "function_declarations") or ()
                for d in decls:
                    schema = _get(d, "parametersJsonSchema", "parameters_json_schema")
                    if schema is None:
                        schema = d.get("parameters") or {}
                    defs.append(ToolDef(d["name"], schema))
            prompt.tools = tuple(defs)
            cfg = _get(body, "toolConfig", "tool_config") or {}
            calling = _get(cfg, "functionCallingConfig", "function_calling_config") or {}
            mode = str(calling.get("mode", "AUTO")).upper()
            if mode == "NONE":
                prompt.tool_mode = "none"
            elif mode == "ANY":
                prompt.tool_mode = "required"
                allowed = _get(calling, "allowedFunctionNames", "allowed_function_names")
                if isinstance(allowed, list) and allowed:
                    prompt.forced_tool = allowed[0]
        gen = _get(body, "generationConfig", "generation_config")
        if isinstance(gen, dict):
            limit = _get(gen, "maxOutputTokens", "max_output_tokens")
            if isinstance(limit, int):
                prompt.max_tokens = limit
            schema = _get(gen, "responseJsonSchema", "response_json_schema")
            if schema is None:
                schema = _get(gen, "responseSchema", "response_schema")
            if schema is not None:
                prompt.json_schema = schema
            elif _get(gen, "responseMimeType", "response_mime_type") == "application/json":
                prompt.json_mode = True
            thinking = _get(gen, "thinkingConfig", "thinking_config")
            if isinstance(thinking, dict):
                level = _get(thinking, "thinkingLevel", "thinking_level")
                if isinstance(level, str):
                    prompt.reasoning = EFFORT_TOKENS.get(level.lower(), 0)
                else:
                    prompt.reasoning = budget_tokens(
                        _get(thinking, "thinkingBudget", "thinking_budget")
                    )
        if self.cache and prefix_chars:
            prompt.prefix_chars = prefix_chars
            prompt.prefix_key = hashlib.blake2b("\x1f".join(parts).encode()).hexdigest()
        return prompt

    def _usage(self, r: Reply) -> dict[str, Any]:
        # proto3 JSON omits zero-valued counters, as the real API does.
        usage: dict[str, Any] = {"promptTokenCount": r.input_tokens}
        if r.visible_tokens:
            usage["candidatesTokenCount"] = r.visible_tokens
        usage["totalTokenCount"] = r.input_tokens + r.output_tokens
        if r.cache_read_tokens:
            usage["cachedContentTokenCount"] = r.cache_read_tokens
        usage["promptTokensDetails"] = [{"modality": "TEXT", "tokenCount": r.input_tokens}]
        if r.cache_read_tokens:
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": r.cache_read_tokens}]
        if r.reasoning_tokens:
            usage["thoughtsTokenCount"] = r.reasoning_tokens
        return usage

    def _parts(self, r: Reply) -> list[dict[str, Any]]:
        if r.kind == "tool":
            return [{"functionCall": {"name": r.tool_name, "args": r.tool_args}}]
        return [{"text": r.text}]

    def render(self, p: Prompt, r: Reply) -> bytes:
        candidate = {
            "content": {"parts": self._parts(r), "role": "model"},
            "finishReason": _FINISH[r.finish],
            "index": 0,
        }
        return encode(
            {
                "candidates": [candidate],
                "usageMetadata": self._usage(r),
                "modelVersion": p.model,
                "responseId": new_id("emu"),
            }
        )

    def stream(self, p: Prompt, r: Reply) -> StreamPlan:
        rid = encode(new_id("emu"))
        model = encode(p.model)
        tail = b',"modelVersion":' + model + b',"responseId":' + rid + b"}" + _SEP
        final = (
            b',"finishReason":'
            + encode(_FINISH[r.finish])
            + b',"index":0}],"usageMetadata":'
            + encode(self._usage(r))
            + tail
        )
        if r.kind == "tool" or not r.pieces:
            parts = encode(self._parts(r))
            head = b'data: {"candidates":[{"content":{"parts":' + parts + b',"role":"model"}'
            return StreamPlan(frames=[head + final], first_content=0, n_term=1)
        partial = encode(
            {
                "promptTokenCount": r.input_tokens,
                "totalTokenCount": r.input_tokens,
                "promptTokensDetails": [{"modality": "TEXT", "tokenCount": r.input_tokens}],
            }
        )
        head = b'data: {"candidates":[{"content":{"parts":[{"text":'
        middle = b',"index":0}],"usageMetadata":' + partial + tail
        frames = [head + encode(piece) + b'}],"role":"model"}' + middle for piece in r.pieces]
        frames[-1] = head + encode(r.pieces[-1]) + b'}],"role":"model"}' + final
        return StreamPlan(frames=frames, first_content=0, n_term=1)

    def status_for(self, kind: str) -> int:
        return _STATUS.get(kind, 500)

    def _error(self, kind: str, status: int, info: ErrorInfo) -> dict[str, Any]:
        message = info.message or _MESSAGES.get(kind, "Internal error encountered.")
        details: list[dict[str, Any]] = []
        if kind == "not_found":
            message = (
                f"models/{info.model} is not found for API version v1beta, or is not supported "
                "for generateContent. Call ListModels to see the list of available models and "
                "their supported methods."
            )
        elif kind == "context_length":
            message = (
                f"The input token count ({info.tokens}) exceeds the maximum number of tokens "
                f"allowed ({info.limit})."
            )
        elif kind == "invalid_key":
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"},
                }
            )
        elif kind == "rate_limit":
            st = info.limits
            if st is not None:
                tokens = st.exceeded == "tokens"
                details.append(
                    {
                        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                        "violations": [
                            {
                                "quotaMetric": "generativelanguage.googleapis.com/"
                                + (
                                    "generate_content_input_token_count"
                                    if tokens
                                    else "generate_content_requests"
                                ),
                                "quotaId": "GenerateContentInputTokensPerModelPerMinute"
                                if tokens
                                else "GenerateRequestsPerMinutePerProjectPerModel",
                                "quotaDimensions": {"location": "global", "model": info.model},
                                "quotaValue": str(st.tpm if tokens else st.rpm),
                            }
                        ],
                    }
                )
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.Help",
                    "links": [
                        {
                            "description": "Learn more about Gemini API quotas",
                            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                        }
                    ],
                }
            )
            if info.retry_after is not None:
                details.append(
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{math.ceil(info.retry_after)}s",
                    }
                )
        error: dict[str, Any] = {
            "code": status,
            "message": message,
            "status": _CODES.get(status, "UNAVAILABLE" if status >= 500 else "UNKNOWN"),
        }
        if details:
            error["details"] = details
        return {"error": error}

    def error(self, kind: str, status: int, info: ErrorInfo) -> tuple[bytes, Headers]:
        return encode(self._error(kind, status, info)), []

    def stream_error(self, kind: str, status: int, info: ErrorInfo) -> bytes:
        # The real API ends a failing stream with a data event holding an
        # "error" object; google-genai raises APIError (ServerError) on it.
        return b"data: " + encode(self._error(kind, status, info)) + _SEP

    def models(self, configured: tuple[str, ...] | None) -> bytes:
        models = [
            {
                "name": "models/" + m,
                "version": "001",
                "displayName": m,
                "inputTokenLimit": 1048576,
                "outputTokenLimit": 65536,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for m in configured or self.default_models
        ]
        return encode({"models": models})
