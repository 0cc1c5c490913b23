"""Provider-neutral request/reply model and the deterministic reply planner."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from ._text import (
    encode_json,
    input_tokens,
    json_fragments,
    reply_words,
    sample_json,
    stable_id,
    thinking_words,
    word_pieces,
)

ToolMode = Literal["auto", "none", "required"]
Finish = Literal["stop", "length", "tool"]

EFFORT_TOKENS: dict[str, int] = {
    "none": 0,
    "minimal": 0,
    "low": 16,
    "medium": 64,
    "high": 256,
    "xhigh": 512,
    "max": 512,
}
"""Reasoning tokens for a named effort / thinking level."""

BUDGET_CAP = 64
"""Reasoning tokens for a token budget B are ``min(B, 64)``; dynamic (-1) is 64."""


class ApiError(Exception):
    """A request the provider would reject; rendered in the provider's error shape."""

    def __init__(self, kind: str, message: str | None = None, *, param: str | None = None) -> None:
        super().__init__(message or kind)
        self.kind = kind
        self.message = message
        self.param = param


@dataclass(slots=True, frozen=True)
class ToolDef:
    """A callable function tool: its name and JSON (or OpenAPI) parameter schema."""

    name: str
    schema: object


@dataclass(slots=True)
class Prompt:
    """What the emulator needs from a request, whatever the provider."""

    model: str
    chars: int
    seed: str
    stream: bool = False
    last_is_tool_result: bool = False
    tools: tuple[ToolDef, ...] = ()
    tool_mode: ToolMode = "auto"
    forced_tool: str | None = None
    json_mode: bool = False
    json_schema: object | None = None
    max_tokens: int | None = None
    include_usage: bool = False
    reasoning: int = 0
    prefix_chars: int = 0
    prefix_key: str | None = None


@dataclass(slots=True)
class Reply:
    """The deterministic answer to a Prompt, before provider formatting."""

    kind: Literal["text", "tool", "json"]
    pieces: list[str]
    text: str
    finish: Finish
    input_tokens: int
    output_tokens: int
    reasoning_tokens: int = 0
    thinking: tuple[str, ...] = ()
    tool_name: str | None = None
    tool_args: Any = None
    tool_seed: str = ""
    cache_read_tokens: int = 0
    cache_creation_tokens: int = 0

    @property
    def visible_tokens(self) -> int:
        return self.output_tokens - self.reasoning_tokens

    @property
    def total_cost(self) -> int:
        """Tokens charged against a TPM limit: input + output."""
        return self.input_tokens + self.output_tokens


def choose_tool(p: Prompt) -> ToolDef | None:
    """Which tool (if any) the emulated model calls. See the package docstring."""
    if not p.tools or p.tool_mode == "none":
        return None
    if p.forced_tool is not None:
        return next((t for t in p.tools if t.name == p.forced_tool), p.tools[0])
    lowered = p.seed.lower()
    named = next((t for t in p.tools if t.name.lower() in lowered), None)
    if p.tool_mode == "required":
        return named or p.tools[0]
    if p.last_is_tool_result:
        return None
    if named is not None:
        return named
    return p.tools[0] if "tool" in lowered else None


def plan_reply(p: Prompt) -> Reply:
    """Build the reply for ``p`` (text, tool call or JSON), truncated by max_tokens."""
    reasoning = p.reasoning
    visible: int | None = None
    if p.max_tokens is not None:
        reasoning = min(reasoning, max(p.max_tokens, 0))
        visible = max(p.max_tokens, 0) - reasoning
    thinking = thinking_words(p.seed, reasoning) if reasoning else ()
    n_in = input_tokens(p.chars)
    tool = choose_tool(p)
    if tool is not None:
        tool_seed = p.seed + "\x00" + tool.name
        args = sample_json(tool.schema, tool_seed)
        if not isinstance(args, dict):
            args = {}
        text = encode_json(args)
        pieces = json_fragments(text)
        if visible is None or len(pieces) <= visible:
            return Reply(
                kind="tool",
                pieces=pieces,
                text=text,
                finish="tool",
                input_tokens=n_in,
                output_tokens=len(pieces) + reasoning,
                reasoning_tokens=reasoning,
                thinking=thinking,
                tool_name=tool.name,
                tool_args=args,
                tool_seed=tool_seed,
            )
    if p.json_mode or p.json_schema is not None:
        if p.json_schema is not None:
            value = sample_json(p.json_schema, p.seed)
        else:
            value = {"answer": " ".join(reply_words(p.seed))}
        pieces = json_fragments(encode_json(value))
        kind: Literal["text", "json"] = "json"
    else:
        pieces = word_pieces(reply_words(p.seed))
        kind = "text"
    finish: Finish = "stop"
    if visible is not None and len(pieces) > visible:
        pieces = pieces[:visible]
        finish = "length"
    return Reply(
        kind=kind,
        pieces=pieces,
        text="".join(pieces),
        finish=finish,
        input_tokens=n_in,
        output_tokens=len(pieces) + reasoning,
        reasoning_tokens=reasoning,
        thinking=thinking,
    )


def tool_call_id(prefix: str, seed: str) -> str:
    """A deterministic tool-call id (``call_...``, ``toolu_...``)."""
    return prefix + stable_id(seed, 24)


def budget_tokens(budget: object) -> int:
    """Reasoning tokens for a thinking budget: ``min(B, 64)``; ``-1`` (dynamic) is 64."""
    if isinstance(budget, bool) or not isinstance(budget, int):
        return 0
    if budget < 0:
        return BUDGET_CAP
    return min(budget, BUDGET_CAP)
