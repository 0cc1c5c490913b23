"""Replies and token counts are pure, documented functions of the request."""

from __future__ import annotations

from typing import Any

import anthropic
import openai
import pytest
from google import genai
from hypothesis import given
from hypothesis import strategies as st

from runtime.emulator import (
    VOCAB,
    FaultError,
    FaultSpec,
    input_tokens,
    json_fragments,
    json_tokens,
    parse_fault,
    reply_text,
    reply_words,
    sample_json,
)


def test_golden_reply_is_stable_across_processes() -> None:
    # SHAKE-256 based: these words must never change between runs or versions.
    assert reply_words("hello")[:4] == ("Spruce", "comet", "ivory", "nebula")
    assert len(reply_words("hello")) == 42
    assert reply_text("hello").endswith("lantern.")


@given(st.text())
def test_reply_shape(seed: str) -> None:
    words = reply_words(seed)
    assert 24 <= len(words) <= 48
    assert words == reply_words(seed)
    assert all(w.rstrip(".").lower() in VOCAB for w in words)
    assert words[-1].endswith(".")


def test_token_functions() -> None:
    assert [input_tokens(n) for n in (0, 1, 4, 5, 8, 9)] == [1, 1, 1, 2, 2, 3]
    assert json_tokens('{"a":1}') == 2
    assert json_fragments('{"a":1}') == ['{"a"', ":1}"]
    assert VOCAB and len(set(VOCAB)) == 64


def test_sample_json_follows_schemas() -> None:
    schema = {
        "$defs": {"Tag": {"type": "string", "enum": ["x", "y"]}},
        "type": "object",
        "properties": {
            "tags": {"type": "array", "items": {"$ref": "#/$defs/Tag"}, "minItems": 2},
            "note": {"anyOf": [{"type": "null"}, {"type": "string", "format": "date"}]},
            "n": {"type": ["integer", "null"], "minimum": 500},
            "ok": {"type": "boolean"},
            "kind": {"const": "fixed"},
        },
    }
    value = sample_json(schema, "seed")
    assert value["tags"] == ["x", "x"]
    assert value["note"] == "2024-01-01"
    assert value["n"] == 500
    assert isinstance(value["ok"], bool)
    assert value["kind"] == "fixed"
    assert sample_json(schema, "seed") == value
    openapi = {"type": "OBJECT", "properties": {"count": {"type": "INTEGER"}}}
    assert isinstance(sample_json(openapi, "s")["count"], int)


def test_fault_syntax() -> None:
    spec = parse_fault("status=429, retry-after=2 ,retry_after_ms=1500;seed=7,rate=0.25,malformed")
    assert spec == FaultSpec(
        status=429, retry_after=2.0, retry_after_ms=1500, seed=7, rate=0.25, malformed=1
    )
    assert spec.error_kind == "rate_limit"
    assert parse_fault("error=overloaded").error_kind == "overloaded"
    assert parse_fault("status=502").error_kind == "server"
    assert parse_fault("latency=0.5").error_kind is None
    for bad in ("nope=1", "error=meltdown", "status=abc", "rate=2"):
        with pytest.raises(FaultError):
            parse_fault(bad)


async def test_same_request_same_answer(
    oai: openai.AsyncOpenAI, claude: anthropic.AsyncAnthropic, gemini: genai.Client
) -> None:
    messages: Any = [{"role": "user", "content": "Is this deterministic?"}]
    first, second = [
        await oai.chat.completions.create(model="gpt-4o", messages=messages) for _ in range(2)
    ]
    assert first.id != second.id
    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.usage == second.usage
    a1, a2 = [
        await claude.messages.create(model="claude-sonnet-5", max_tokens=100, messages=messages)
        for _ in range(2)
    ]
    assert a1.content == a2.content and a1.usage == a2.usage
    g1, g2 = [
        await gemini.aio.models.generate_content(
            model="gemini-2.5-flash", contents="Is this deterministic?"
        )
        for _ in range(2)
    ]
    assert g1.text == g2.text and g1.usage_metadata == g2.usage_metadata
    # The same prompt gives the same words on every provider.
    assert first.choices[0].message.content == g1.text == reply_text("Is this deterministic?")
    other = await oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "Something else"}]
    )
    assert other.choices[0].message.content != first.choices[0].message.content
