"""CPU instructions per in-process round trip, counted by valgrind: a figure the VM's drift
cannot move.

Run: .venv/bin/python bench/instructions.py [--calls N] [--json PATH]   (needs valgrind)

Timings on a shared VM drift by up to 2x (see the README); the number of instructions a round
trip executes does not. Each kind runs in two processes under ``valgrind --tool=callgrind``,
one making no calls and one making ``--calls`` after the same warm-up; the difference over
``--calls`` is the cost of one call. With ``PYTHONHASHSEED`` fixed, reruns agree
to within 0.5%. The kinds:

* ``runtime``: ``Runtime.complete`` (handed off, the default), against the in-memory provider
  of ``_inprocess``;
* ``mailboxes``: the same through both actors' mailboxes (``RouterConfig(handoff=False)``);
* ``direct``: that provider's ``complete`` called directly;
* ``scope``, ``checkpoint``: trio's own floor under a handed-off round trip, an empty
  ``CancelScope`` with a deadline and one ``trio.lowlevel.checkpoint()``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project's packages

KINDS = ("runtime", "mailboxes", "direct", "scope", "checkpoint")
WARMUP = 1000
_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def count(kind: str, calls: int) -> None:
    """The counted side: ``WARMUP`` calls of ``kind``, then ``calls`` more."""
    if kind not in KINDS:
        raise SystemExit(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    import trio
    from _common import MESSAGES
    from _inprocess import MemoryProvider, _spec

    from protocols import build_request
    from runtime import RouterConfig, RuntimeConfig, open_runtime

    async def main() -> None:
        total = WARMUP + calls
        if kind in ("runtime", "mailboxes"):
            router = RouterConfig(handoff=kind == "runtime")
            config = RuntimeConfig(seed=1, router=router)
            async with open_runtime([_spec(MemoryProvider())], config=config) as rt:
                for _ in range(total):
                    await rt.complete(MESSAGES)
        elif kind == "direct":
            provider = MemoryProvider()
            request = build_request(
                MESSAGES, {}, request_id="r1", now=0.0, default_timeout=60, stream=False
            )
            for _ in range(total):
                await provider.complete(request)
        elif kind == "scope":
            for _ in range(total):
                # Entering and leaving an empty scope is the thing measured.
                with trio.CancelScope(deadline=trio.current_time() + 60):  # noqa: ASYNC100
                    pass
        else:  # "checkpoint"
            for _ in range(total):
                await trio.lowlevel.checkpoint()

    trio.run(main)


def _instructions(kind: str, calls: int) -> int:
    """Instructions of one whole process making ``calls`` calls of ``kind``."""
    command = [
        "valgrind",
        "--tool=callgrind",
        "--callgrind-out-file=/dev/null",
        sys.executable,
        __file__,
        "--count",
        kind,
        str(calls),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{kind} x{calls} under valgrind failed:\n{done.stderr[-3000:]}")
    return int(found.group(1))


def measure(calls: int) -> dict[str, Any]:
    jobs = [(kind, n) for kind in KINDS for n in (0, calls)]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        totals = dict(zip(jobs, pool.map(lambda job: _instructions(*job), jobs), strict=True))
    per_call = {kind: (totals[kind, calls] - totals[kind, 0]) / calls for kind in KINDS}
    overhead = per_call["runtime"] - per_call["direct"]
    trio_floor = per_call["scope"] + per_call["checkpoint"]
    return {
        "python": platform.python_version(),
        "calls": calls,
        "per_call": {kind: round(value) for kind, value in per_call.items()},
        "overhead": round(overhead),
        "mailboxes_overhead": round(per_call["mailboxes"] - per_call["direct"]),
        "trio_floor": round(trio_floor),
        "switchyard_share_of_overhead": round((overhead - trio_floor) / overhead, 3),
    }


def report(data: dict[str, Any]) -> str:
    per = data["per_call"]
    lines = [
        f"instructions per call (valgrind, Python {data['python']}, {data['calls']} calls "
        f"after {WARMUP} warm-up):"
    ]
    lines += [f"  {kind:<11} {per[kind]:>9,}" for kind in KINDS]
    own = data["overhead"] - data["trio_floor"]
    lines += [
        f"overhead (runtime - direct): {data['overhead']:,}: trio's scope and checkpoint "
        f"{data['trio_floor']:,}, Switchyard's own {own:,} "
        f"({data['switchyard_share_of_overhead']:.0%})",
        f"overhead through both mailboxes (handoff off): {data['mailboxes_overhead']:,}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="calls counted per kind")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--count", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.count:
        count(args.count[0], int(args.count[1]))
        return 0
    if args.calls < 1:
        parser.error(f"--calls: expected at least 1, got {args.calls}")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    data = measure(args.calls)
    print(report(data))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
