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


# A provider priced like gpt-4o-mini; records which thread reads genai-prices' data.
_OPEN_THEN_CALL = """
import sys, threading, trio
from runtime import open_runtime
from runtime.testing import MockProvider

importers = []

class Watch:
    def find_spec(self, name, path=None, target=None):
        if name == "genai_prices.data":
            importers.append(threading.current_thread() is threading.main_thread())
        return None

sys.meta_path.insert(0, Watch())

async def main():
    async with open_runtime([MockProvider(kind="openai", model="gpt-4o-mini")]) as rt:
        read_at_open = list(importers)
        response = await rt.complete([{"role": "user", "content": "hello"}])
        registered = "genai_prices.data" in sys.modules
        print(read_at_open, importers, registered, response.cost_usd is not None)

trio.run(main)
"""


def test_prices_load_in_a_thread_at_open_not_at_the_first_request() -> None:
    # Loading genai-prices' data takes a quarter of a second of imports; on the event loop,
    # at the first priced call, that would stall every task of the program. And the module
    # is read, not imported: what it builds for providers not in use is not kept.
    result = subprocess.run(
        [sys.executable, "-c", _OPEN_THEN_CALL],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["[False]", "[False]", "False", "True"]
