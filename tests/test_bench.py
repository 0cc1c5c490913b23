"""The benchmark harness runs in quick mode and reports every key (no speed assertions).

Without LiteLLM installed (it is in the ``bench`` extra, not ``dev``) the harness runs with
``--no-litellm`` and the LiteLLM fields must be null; everything else must be a number.
"""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CALLER_FIELDS = (
    "switchyard_rps",
    "switchyard_unfrozen_rps",
    "raw_rps",
    "raw_transport_rps",
    "openai_sdk_rps",
    "litellm_rps",
    "switchyard_p99_ms",
    "switchyard_unfrozen_p99_ms",
    "raw_p99_ms",
    "litellm_p99_ms",
)
LITELLM_FIELDS = {"litellm_rps", "litellm_p99_ms"}
REQUIRED = {
    "machine": ("cpus", "python"),
    "inprocess": ("overhead_us_p50", "rps", "mailboxes_overhead_us_p50"),
    "gateway.c64": ("rps", "direct_rps", "p99_ms"),
    "stream": ("ttft_overhead_us_p50", "chunk_overhead_us"),
    "memory": ("rss_mb_10k_streams", "rss_growth_mb_200k"),
    **{f"http.{c}": CALLER_FIELDS for c in ("c1", "c64", "c256")},
}


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_quick_benchmark_reports_every_key(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    with_litellm = importlib.util.find_spec("litellm") is not None
    command = [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(out)]
    if not with_litellm:
        command.append("--no-litellm")
    result = subprocess.run(command, capture_output=True, text=True, timeout=150, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "targets:" in result.stdout
    data = json.loads(out.read_text())
    assert isinstance(data["machine"]["python"], str)
    for section, keys in REQUIRED.items():
        node = data
        for part in section.split("."):
            node = node[part]
        for key in keys:
            if section == "machine" and key == "python":
                continue
            value = node[key]
            if key in LITELLM_FIELDS and not with_litellm:
                assert value is None, f"{section}.{key} should be null without LiteLLM"
            else:
                assert _is_number(value), f"{section}.{key} = {value!r}"


def _bench_common() -> Any:
    spec = importlib.util.spec_from_file_location("bench_common", ROOT / "bench" / "_common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_full_gc_pause_is_charged_to_the_requests_in_flight_during_it() -> None:
    common = _bench_common()
    watch = common.GcWatch()
    watch.full_pauses.append((10.0, 10.05))
    starts = [9.0, 9.99, 10.02, 10.06]
    latencies = [0.5, 0.02, 0.01, 0.01]  # the first ends before the pause, the last starts after
    assert watch.hit(starts, latencies) == [1, 2]
    log = common.CallLog()
    log.starts, log.latencies = starts, latencies
    run = common.summarize(log, 1.0, 0.1, gc_watch=watch)
    merged = common.merge([run])
    assert merged["gc_full_collections"] == 1
    assert merged["full_gc_hit_share"] == 0.5
    assert merged["p99_ms_outside_full_gc"] == 500.0  # of the first and the last only


@pytest.mark.parametrize("kind", ["runtime", "mailboxes", "direct", "scope", "checkpoint"])
def test_each_kind_of_the_instruction_count_runs_without_valgrind(kind: str) -> None:
    # The counted side of bench/instructions.py; valgrind itself is not in CI.
    script = ROOT / "bench" / "instructions.py"
    command = [sys.executable, str(script), "--count", kind, "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-4000:]


def test_an_unknown_kind_of_instruction_count_is_refused_by_name() -> None:
    script = ROOT / "bench" / "instructions.py"
    command = [sys.executable, str(script), "--count", "nonsense", "3"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode != 0
    assert "unknown kind 'nonsense'" in result.stderr
