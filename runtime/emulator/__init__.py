"""HTTP emulator of the OpenAI, Anthropic and Gemini APIs, for offline tests and demos.

One ASGI app (:class:`Emulator`) serves, on one port, with the real wire formats:

* OpenAI ``POST /v1/chat/completions`` (JSON and SSE) and ``GET /v1/models``;
* Anthropic ``POST /v1/messages`` (JSON and SSE), ``POST /v1/messages/count_tokens``,
  ``GET /v1/models`` (when ``anthropic-version`` or ``x-api-key`` is sent);
* Gemini ``POST /v1beta/models/{model}:generateContent``,
  ``:streamGenerateContent?alt=sse``, ``:countTokens`` and ``GET /v1beta/models``.

Run it with ``emu = await nursery.start(serve_emulator, config)`` and point an
SDK at ``emu.base_url`` (OpenAI: ``emu.base_url + "/v1"``). The app itself is
backend-neutral (anyio): ``python -m runtime.emulator`` serves it with hypercorn's
trio worker, ``--server uvicorn`` with uvicorn, httptools and uvloop on asyncio,
several times cheaper per request, for benchmarks (the ``bench`` extra).

Auth
    Any non-empty key in the real place: OpenAI ``Authorization: Bearer``,
    Anthropic ``x-api-key`` or ``Authorization: Bearer`` (which anthropic 2.x
    sends its ``api_key`` as), Gemini
    ``x-goog-api-key`` or ``?key=``. ``ProviderConfig.valid_keys`` restricts it.
    Missing key: OpenAI 401, Anthropic 401 ``authentication_error``, Gemini 403
    ``PERMISSION_DENIED`` (what the real Gemini API answers); a wrong key: OpenAI
    401 ``invalid_api_key``, Anthropic 401, Gemini 400 ``API_KEY_INVALID``.
    Anthropic also requires the ``anthropic-version`` header (400 without).

Replies (pure functions of the request, see ``_text``)
    * seed text = the text of the *last* message: its text parts joined by
      ``"\\n"`` (tool results contribute their content; Gemini function
      responses and Anthropic structured tool results their compact JSON).
    * reply = :func:`reply_words` (seed): 24-48 words from :data:`VOCAB`.
    * input tokens = :func:`input_tokens` (chars) = ``max(1, ceil(chars / 4))``
      where ``chars`` is the total length of every text fragment of the request:
      system prompt(s), message text parts, assistant tool-call arguments (OpenAI:
      the ``arguments`` string; Anthropic/Gemini: compact JSON of the input/args)
      and tool results. Tool definitions, images and separators are not counted.
    * output tokens: plain text is one token per word (streamed one word per
      chunk, ``" " + word`` after the first); JSON output (tool arguments,
      structured output) is one token per 4-character fragment
      (:func:`json_tokens`, streamed in those fragments).
    * reasoning tokens (added to output tokens; OpenAI ``reasoning_tokens``,
      Anthropic a ``thinking`` block of that many words, Gemini
      ``thoughtsTokenCount``, not in ``candidatesTokenCount``): OpenAI
      ``reasoning_effort`` and Gemini ``thinkingLevel`` via :data:`EFFORT_TOKENS`
      (low 16, medium 64, high 256); Anthropic ``thinking.budget_tokens`` /
      Gemini ``thinkingBudget`` B gives ``min(B, 64)`` (-1 and Anthropic
      ``adaptive``: 64). Otherwise 0.
    * ``max_tokens`` (OpenAI ``max_completion_tokens``/``max_tokens``, Gemini
      ``maxOutputTokens``) M: reasoning is capped at M, the visible output at
      ``M - reasoning``; a cut gives ``length`` / ``max_tokens`` / ``MAX_TOKENS``.
      A tool call that does not fit is replaced by the (cut) text reply.
    * tool calls (one per reply) when the request has tools and: the tool
      choice forces one (OpenAI ``required``/named, Anthropic ``any``/``tool``,
      Gemini ``ANY`` [+ ``allowedFunctionNames``]), or, in auto mode, the last
      message is not a tool result and its text names a tool (case-insensitive)
      or contains ``"tool"`` (then the first tool). Arguments:
      :func:`sample_json` (schema, seed + ``"\\0"`` + tool name), compact JSON.
    * structured output (OpenAI ``response_format`` json_schema, Anthropic
      ``output_config.format``, Gemini ``responseSchema``/``responseJsonSchema``):
      the text is compact JSON of :func:`sample_json` (schema, seed); JSON mode
      without schema: ``{"answer": <reply text>}``.
    * Usage: OpenAI ``prompt_tokens`` = input, ``completion_tokens`` = output,
      ``cached_tokens``; Anthropic ``input_tokens`` excludes cache read/creation
      tokens; Gemini omits zero counters (proto3 JSON), ``totalTokenCount`` =
      prompt + candidates + thoughts.
    * Prompt caching (``EmulatorConfig.prompt_cache``, off by default): prefix =
      all but the last message (Anthropic: up to the last ``cache_control``
      block). A prefix of at least ``cache_min_tokens`` tokens seen before is
      reported as cached (OpenAI ``cached_tokens``, Anthropic
      ``cache_read_input_tokens``, Gemini ``cachedContentTokenCount``); the first
      time Anthropic reports it as ``cache_creation_input_tokens``.

Faults: ``x-emulator-fault`` header, :meth:`Emulator.set_faults`, ``POST /_emulator/faults``
    Compact syntax ``key=value,key=value`` (``-`` in keys reads as ``_``; a bare
    key means 1), e.g. ``x-emulator-fault: status=429,retry_after=2``. A header
    fault replaces the provider's standing fault for that request. Keys:

    ``status=N``  answer HTTP N with the provider's real error body for it.
    ``error=NAME`` a named error (default status per provider): ``rate_limit``,
        ``server``, ``unavailable``, ``overloaded`` (Anthropic 529
        ``overloaded_error``; OpenAI/Gemini 503), ``auth``, ``permission``,
        ``not_found``, ``bad_request``, ``context_length`` (400 with each
        provider's real context-length message), ``timeout``.
    ``retry_after=S`` ``Retry-After: S`` (Gemini: a ``RetryInfo`` detail with
        ``retryDelay`` in the body instead, as Google does);
        ``retry_after_date=S`` an HTTP-date S seconds ahead;
        ``retry_after_ms=N`` ``retry-after-ms: N``.
    ``latency=S`` delay before the response; ``first_token=S`` delay before the
        first content chunk (non-stream: added latency); ``drip=S`` delay
        between stream chunks.
    ``disconnect=N`` send N stream frames, then drop the connection with the
        chunked body unfinished (non-stream: headers and half the body).
    ``error_event=N`` after N frames an in-stream error, then end the stream:
        Anthropic ``event: error`` (default ``overloaded_error``); OpenAI and
        Gemini a ``data:`` event holding their ``{"error": {...}}`` object, which
        is what those APIs send and what their SDKs raise on. ``status``/``error``
        pick the error. Non-stream: an ordinary error response.
    ``malformed=N`` after N frames (at least up to the first content frame)
        one frame of broken JSON, then end (non-stream: a 200 body cut in half).
    ``truncate=N`` send at most N frames, never the terminator (OpenAI
        ``[DONE]``, Anthropic ``message_stop``, Gemini's final chunk holding
        ``finishReason``), and end the HTTP body cleanly.
    ``rate=P,seed=K`` apply to a fraction P of requests, drawn from
        ``random.Random(K)`` (one draw per request, deterministic sequence).
    ``times=N`` apply to the next N (drawn) requests only.

    A header fault keeps its ``rate``/``times`` state per distinct header value
    (until :meth:`Emulator.reset`), so repeating one header replays one sequence.

    Stream frames are SSE events (message_start and ping count as frames).
    Frame counts are clamped so the terminator is never sent. If several
    stream faults are set, the first of disconnect, error_event, malformed,
    truncate wins.

Rate limits (``ProviderConfig.rpm``/``tpm``, :meth:`Emulator.set_limits`)
    Sliding window (60 s by default). A request costs input + output tokens;
    past a limit the provider's real 429 (OpenAI ``rate_limit_exceeded``,
    Anthropic ``rate_limit_error``, Gemini ``RESOURCE_EXHAUSTED`` with
    ``QuotaFailure`` and ``RetryInfo``) with ``retry-after`` (not Gemini). With
    limits set, OpenAI sends ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``
    and Anthropic ``anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}``.

Config file (``python -m runtime.emulator --config FILE.json``), e.g.
    ``{"openai": {"rpm": 60, "tpm": 40000, "faults": "status=500,rate=0.1,seed=1"},
    "anthropic": {"valid_keys": ["ak-1"], "context_window": 200000},
    "prompt_cache": true}`` (see :class:`EmulatorConfig`, :class:`ProviderConfig`).

Control endpoints (no auth)
    ``POST /_emulator/faults`` ``{"provider": "openai"|"*", "fault": {...}|"k=v,..."|null}``,
    ``POST /_emulator/limits`` ``{"provider", "rpm", "tpm", "window"}``,
    ``POST /_emulator/reset``, ``POST /_emulator/clear``,
    ``GET /_emulator/requests``, ``GET /_emulator/health``.
"""

from ._app import FAULT_HEADER, Emulator
from ._cli import main
from ._config import PROVIDERS, EmulatorConfig, Provider, ProviderConfig
from ._faults import ERROR_KINDS, FaultError, FaultSpec, parse_fault
from ._limits import LimitStatus, RateWindow
from ._model import EFFORT_TOKENS
from ._record import REDACTED, RecordedRequest, key_fingerprint
from ._server import EmulatorHandle, serve_emulator
from ._text import (
    VOCAB,
    input_tokens,
    json_fragments,
    json_tokens,
    reply_text,
    reply_words,
    sample_json,
)

__all__ = [
    "EFFORT_TOKENS",
    "ERROR_KINDS",
    "FAULT_HEADER",
    "PROVIDERS",
    "REDACTED",
    "VOCAB",
    "Emulator",
    "EmulatorConfig",
    "EmulatorHandle",
    "FaultError",
    "FaultSpec",
    "LimitStatus",
    "Provider",
    "ProviderConfig",
    "RateWindow",
    "RecordedRequest",
    "input_tokens",
    "json_fragments",
    "json_tokens",
    "key_fingerprint",
    "main",
    "parse_fault",
    "reply_text",
    "reply_words",
    "sample_json",
    "serve_emulator",
]
