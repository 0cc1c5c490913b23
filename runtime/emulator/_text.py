"""Deterministic reply text, token counts and schema-driven JSON.

Every function here is pure and stable across runs, processes and Python
versions (SHAKE-256 based, never ``hash()``), so tests can recompute what the
emulator will answer.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any, Final

import msgspec

VOCAB: Final[tuple[str, ...]] = (
    "amber",
    "anchor",
    "arrow",
    "aspen",
    "beacon",
    "birch",
    "cobalt",
    "comet",
    "copper",
    "coral",
    "crystal",
    "delta",
    "ember",
    "falcon",
    "fern",
    "field",
    "forest",
    "galaxy",
    "garnet",
    "glacier",
    "granite",
    "harbor",
    "hazel",
    "horizon",
    "indigo",
    "island",
    "ivory",
    "jade",
    "juniper",
    "lagoon",
    "lantern",
    "lotus",
    "maple",
    "meadow",
    "meteor",
    "mist",
    "nebula",
    "north",
    "oak",
    "ocean",
    "onyx",
    "orbit",
    "pearl",
    "pine",
    "prairie",
    "quartz",
    "raven",
    "reef",
    "river",
    "saffron",
    "sierra",
    "silver",
    "spruce",
    "summit",
    "thunder",
    "tide",
    "timber",
    "tundra",
    "valley",
    "velvet",
    "willow",
    "zephyr",
    "cedar",
    "dune",
)
"""The 64 words replies are built from."""

MIN_WORDS: Final = 24
WORD_SPAN: Final = 25
JSON_FRAGMENT_CHARS: Final = 4

_encoder = msgspec.json.Encoder()


def _stream(seed: str, n: int) -> bytes:
    return hashlib.shake_256(seed.encode("utf-8", "surrogatepass")).digest(n)


@lru_cache(maxsize=4096)
def reply_words(seed_text: str) -> tuple[str, ...]:
    """The reply for ``seed_text``: 24-48 words from :data:`VOCAB`.

    ``d = shake_256(seed_text).digest(49)``; word count ``24 + d[0] % 25``;
    word *i* is ``VOCAB[d[1 + i] % 64]``; the first word is capitalised and
    the last ends with ``"."``.
    """
    d = _stream(seed_text, 1 + MIN_WORDS + WORD_SPAN)
    n = MIN_WORDS + d[0] % WORD_SPAN
    words = [VOCAB[b % len(VOCAB)] for b in d[1 : n + 1]]
    words[0] = words[0].capitalize()
    words[-1] += "."
    return tuple(words)


def reply_text(seed_text: str) -> str:
    """The full (untruncated) reply text: :func:`reply_words` joined by spaces."""
    return " ".join(reply_words(seed_text))


def thinking_words(seed_text: str, n: int) -> tuple[str, ...]:
    """``n`` reasoning words: ``VOCAB[b % 64]`` for ``shake_256("thinking:" + seed)``."""
    return tuple(VOCAB[b % len(VOCAB)] for b in _stream("thinking:" + seed_text, n))


def input_tokens(chars: int) -> int:
    """Input tokens for ``chars`` characters of prompt text: ``max(1, ceil(chars / 4))``."""
    return max(1, -(-chars // 4))


def json_tokens(text: str) -> int:
    """Output tokens for emitted JSON text: ``ceil(len(text) / 4)``."""
    return -(-len(text) // JSON_FRAGMENT_CHARS)


def json_fragments(text: str) -> list[str]:
    """JSON text split into the 4-character pieces it is streamed (and counted) in."""
    step = JSON_FRAGMENT_CHARS
    return [text[i : i + step] for i in range(0, len(text), step)]


def word_pieces(words: tuple[str, ...] | list[str]) -> list[str]:
    """Stream pieces for words: the first bare, every other with a leading space."""
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def encode_json(value: object) -> str:
    """Compact JSON text (msgspec encoding, insertion-ordered keys, no spaces)."""
    return _encoder.encode(value).decode()


def stable_id(seed: str, n: int = 24) -> str:
    """A deterministic lowercase alphanumeric id derived from ``seed``."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return "".join(alphabet[b % 36] for b in _stream("id:" + seed, n))


def sample_json(schema: object, seed: str) -> Any:
    """A deterministic value that conforms to the (JSON or OpenAPI) ``schema``.

    Objects get every declared property; arrays get ``max(1, minItems)``
    items; the first ``enum``/``const``/non-null ``anyOf`` branch is used;
    strings are a vocabulary word (or a fixed value for common formats);
    integers (and numbers, as floats) are ``0..99`` clamped to ``minimum``/``maximum``.
    """
    defs: dict[str, Any] = {}
    if isinstance(schema, dict):
        for key in ("$defs", "definitions"):
            found = schema.get(key)
            if isinstance(found, dict):
                defs.update(found)
    return _sample(schema, seed, defs, 0)


_FORMATS: Final = {
    "date-time": "2024-01-01T00:00:00Z",
    "date": "2024-01-01",
    "time": "00:00:00",
    "email": "user@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def _pick(seed: str) -> int:
    return int.from_bytes(_stream(seed, 4), "big")


def _sample(schema: object, seed: str, defs: dict[str, Any], depth: int) -> Any:
    if not isinstance(schema, dict) or depth > 12:
        return VOCAB[_pick(seed) % len(VOCAB)]
    ref = schema.get("$ref")
    if isinstance(ref, str):
        return _sample(defs.get(ref.rsplit("/", 1)[-1], {}), seed, defs, depth + 1)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            for branch in branches:
                if not (isinstance(branch, dict) and _type_of(branch) == "null"):
                    return _sample(branch, seed, defs, depth + 1)
            return None
    kind = _type_of(schema)
    if kind == "object" or (kind is None and "properties" in schema):
        props = schema.get("properties")
        if not isinstance(props, dict):
            return {}
        return {
            name: _sample(sub, f"{seed}/{name}", defs, depth + 1) for name, sub in props.items()
        }
    if kind == "array":
        count = schema.get("minItems", 1)
        count = count if isinstance(count, int) and count > 0 else 1
        items = schema.get("items", {})
        return [_sample(items, f"{seed}/{i}", defs, depth + 1) for i in range(count)]
    if kind == "integer":
        return _clamp(_pick(seed) % 100, schema)
    if kind == "number":
        return float(_clamp(_pick(seed) % 100, schema))
    if kind == "boolean":
        return _pick(seed) % 2 == 0
    if kind == "null":
        return None
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMATS:
        return _FORMATS[fmt]
    return VOCAB[_pick(seed) % len(VOCAB)]


def _type_of(schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "null")
    if isinstance(kind, str):
        return kind.lower()
    return None


def _clamp(value: int, schema: dict[str, Any]) -> int:
    low = schema.get("minimum")
    high = schema.get("maximum")
    if isinstance(low, int | float) and value < low:
        value = int(-(-low // 1))
    if isinstance(high, int | float) and value > high:
        value = int(high // 1)
    return value
