"""``RuntimeConfig.freeze_heap``: the first runtime a process opens freezes the heap alive
at that moment, so that full garbage collections (which pause every request in flight) no
longer walk modules, classes and price data. Each case runs in a fresh interpreter: the
freeze is process-wide and happens once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_PRELUDE = """
import gc, sys, weakref, trio
from runtime import RuntimeConfig, open_runtime
from runtime.testing import MockProvider

def echo():
    return MockProvider("echo", kind="openai", model="gpt-4o-mini", text="hi")

class Node:
    pass

def cycle():
    node = Node()
    node.me = node  # unreachable once returned: only the cyclic collector frees it
    return weakref.ref(node)

def frozen(obj):
    # The collector lists every object it tracks except the frozen ones.
    return gc.is_tracked(obj) and not any(o is obj for o in gc.get_objects())

async def answered(config):
    async with open_runtime([echo()], config=config) as rt:
        response = await rt.complete([{"role": "user", "content": "hello"}])
        return response.text
"""

_DEFAULT_THEN_AGAIN = """
async def main():
    gc.disable()  # no automatic collection may free the cycle before the runtime does
    witness = Node()
    text = await answered(RuntimeConfig(freeze_heap=False))
    print("off", frozen(witness), text)
    dead = cycle()
    text = await answered(RuntimeConfig())
    print("first", frozen(witness), dead() is None, text)
    later = Node()
    text = await answered(RuntimeConfig())
    print("second", frozen(later), text)

trio.run(main)
"""

_RESTARTS_AFTER_THE_FREEZE = """
from actors import SupervisorConfig

async def main():
    quick = SupervisorConfig(max_restarts=100, backoff_base_s=0.001, backoff_max_s=0.001)
    config = RuntimeConfig(supervision=quick)
    async with open_runtime([echo()], config=config) as rt:
        for _ in range(10):
            rt.kill("echo")
            rt.kill("router")
            await trio.sleep(0.05)  # both restarted
            response = await rt.complete([{"role": "user", "content": "hello"}])
        restarts = [actor.restarts for actor in rt.health().actors]
    gc.collect()
    gc.unfreeze()
    # What the freeze held that has become unreachable cycles: leaked, had it stayed frozen.
    print(restarts, gc.collect(), response.text)

trio.run(main)
"""

_PROGRAM_FROZE_FIRST = """
async def main():
    gc.freeze()
    later = Node()
    text = await answered(RuntimeConfig())
    print(frozen(later), text)

trio.run(main)
"""


def _run(script: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", _PRELUDE + script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_the_first_open_collects_then_freezes_once_and_off_leaves_the_collector_alone() -> None:
    off, first, second = _run(_DEFAULT_THEN_AGAIN)
    assert off == "off False hi"
    # The garbage alive at the freeze was collected first (not frozen, so not leaked), and
    # the runtime answers as usual afterwards.
    assert first == "first True True hi"
    # A second runtime in the process freezes nothing more.
    assert second == "second False hi"


def test_actors_restarting_after_the_freeze_leave_no_frozen_garbage() -> None:
    # A gateway runs for weeks and its actors crash and restart: what they held when the
    # heap was frozen must be freed by reference counting, not left in unreachable cycles.
    restarts, leaked, text = _run(_RESTARTS_AFTER_THE_FREEZE)[-1].rsplit(" ", 2)
    assert (restarts, leaked, text) == ("[10, 10]", "0", "hi")


def test_a_program_that_froze_its_heap_itself_keeps_its_own_freeze() -> None:
    assert _run(_PROGRAM_FROZE_FIRST) == ["False hi"]
