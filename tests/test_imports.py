"""What ``import runtime`` loads stays on the heap for the life of the program, and every full
garbage collection walks it (with many requests in flight, that pause is the tail latency).
Libraries only some programs need are imported at their first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

OPTIONAL = ("httpx", "httpcore", "jsonschema", "genai_prices", "openai", "anthropic", "google")


def test_import_runtime_leaves_optional_libraries_unloaded() -> None:
    code = f"import sys, runtime\nprint(' '.join(m for m in {OPTIONAL!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == []
