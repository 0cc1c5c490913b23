"""Default quality scores per model, for the ``quality`` routing policy.

Scores are relative (higher is better), on the scale of the LMArena text leaderboard
(https://lmarena.ai/leaderboard, "Text" arena scores). The values are approximate, rounded
to the nearest 10, as recorded in 2025; they were not re-checked against the live board
(this project builds offline), so check them before relying on fine distinctions. They are
a starting point, not a verdict: override or
extend them in the configuration (``[quality]`` table, model name = score) with your own
evaluations, and add the models you serve. A model missing from the table has no score:
the quality policy ranks it last and ``min_quality`` skips it.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DEFAULT_QUALITY"]

DEFAULT_QUALITY: Final[dict[str, float]] = {
    # OpenAI
    "gpt-4.1": 1360,
    "gpt-4.1-mini": 1320,
    "gpt-4o": 1340,
    "gpt-4o-mini": 1270,
    "o3": 1410,
    "o4-mini": 1350,
    # Anthropic
    "claude-opus-4-1": 1420,
    "claude-sonnet-4-5": 1420,
    "claude-sonnet-4-0": 1380,
    "claude-3-5-haiku-latest": 1290,
    # Google
    "gemini-2.5-pro": 1450,
    "gemini-2.5-flash": 1400,
    "gemini-2.0-flash": 1360,
}
