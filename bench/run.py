"""Switchyard against the floor (raw httpx2) and against LiteLLM's Router, in one run.

Run: .venv/bin/python bench/run.py [--quick] [--json PATH] [--plot PNG] [--no-litellm]
     .venv/bin/python bench/run.py --profile      (cProfile of the in-process round trip)

The provider emulator runs in its own process on loopback; every measurement runs in a
worker process of its own (``--worker NAME``), one after another, so that no two measure at
once. Ratios are against baselines measured in the same run. ``--quick`` keeps every key
with smaller counts (about 40 s on 2 cores); the full run takes a few minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the project's packages

from _common import Worker, emulator_process, gateway_process, merge, serve_worker

CONCURRENCY = (1, 64, 256)
GATEWAY_C = 64
# LiteLLM last: --no-litellm drops it.
CALLERS = ("switchyard", "switchyard_unfrozen", "raw", "raw_transport", "openai_sdk", "litellm")

QUICK = {
    "inprocess": {"calls": 2000, "throughput_requests": 4000, "rounds": 3},
    "growth": {"warmup": 3000, "requests": 9000, "samples": 3},
    "streams": {"streams": 10000, "drain": False},
    "http": {"seconds": 0.4, "rounds": 1, "streams": 60, "warm": 32},
}
FULL = {
    # Overhead rounds of "calls" each, spread over the run: this VM's speed drifts (see
    # the README), and a single burst can land wholly in a slow spell.
    "inprocess": {"calls": 10000, "throughput_requests": 100000, "rounds": 7},
    "growth": {"warmup": 50000, "requests": 200000, "samples": 5},
    "streams": {"streams": 10000, "drain": True},
    # Many short rounds, interleaved, so that drift in a shared machine's speed spreads over
    # every caller.
    "http": {"seconds": 2.0, "rounds": 6, "streams": 1000, "warm": None},
}

TARGETS = {
    "inprocess overhead p50 <= 50 us": ("inprocess.overhead_us_p50", "<=", 50.0),
    "HTTP c64 switchyard/raw rps >= 0.85": ("http.c64.switchyard_over_raw", ">=", 0.85),
    "HTTP c64 switchyard/litellm rps >= 10": ("http.c64.switchyard_over_litellm", ">=", 10.0),
    "HTTP c64 p99 <= litellm p99 / 10": ("http.c64.litellm_p99_over_switchyard_p99", ">=", 10.0),
    "stream overhead per chunk <= 20 us": ("stream.chunk_overhead_us", "<=", 20.0),
    "10,000 open streams <= 500 MB RSS": ("memory.rss_mb_10k_streams", "<=", 500.0),
    "RSS growth after warm-up <= 5 MB": ("memory.rss_growth_mb_200k", "<=", 5.0),
}


# --- workers -------------------------------------------------------------------------------


def worker_main(name: str) -> None:
    if name == "litellm":
        import _litellm

        serve_worker(_litellm.run)
    elif name == "http" or name.startswith("http-"):
        import _http

        serve_worker(_http.http)
    else:  # "overhead", "inprocess", "streams" (a process of its own, for its RSS), "profile"
        import _inprocess

        serve_worker(_inprocess.run)


# --- orchestration -------------------------------------------------------------------------


def _emulator_server() -> str:
    # uvicorn (the bench extra) costs the emulator several times less CPU per request than
    # hypercorn's trio worker, so the emulator is not what sets the pace.
    fast = all(importlib.util.find_spec(m) for m in ("uvicorn", "uvloop", "httptools"))
    return "uvicorn" if fast else "hypercorn-trio"


def measure(quick: bool, use_litellm: bool) -> dict[str, Any]:
    counts = QUICK if quick else FULL
    started = time.monotonic()
    server = _emulator_server()
    out: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
            "emulator_server": server,
            "versions": _versions(use_litellm),
        },
        "mode": "quick" if quick else "full",
    }
    with contextlib.ExitStack() as stack:
        # Quick: spawn every worker now so their imports overlap; full: one at a time, so
        # nothing else runs while one measures.
        spawned: dict[str, Worker] = {}

        def worker(name: str) -> Worker:
            if name not in spawned:
                spawned[name] = Worker(name)
                stack.callback(spawned[name].close)
            return spawned[name]

        callers = CALLERS if use_litellm else CALLERS[:-1]
        if quick:
            for name in ("overhead", "inprocess", "streams", "http", *map(_caller_worker, callers)):
                worker(name)
        emulator = stack.enter_context(emulator_process(server))
        gateway = stack.enter_context(gateway_process(emulator.url, GATEWAY_C))
        _note("emulator and gateway up", started)

        in_counts = counts["inprocess"]
        overhead_rounds: list[dict[str, Any]] = []

        def overhead_round() -> None:
            if len(overhead_rounds) < in_counts["rounds"]:
                command = {"op": "overhead", "calls": in_counts["calls"]}
                overhead_rounds.append(worker("overhead").call(command))

        overhead_round()
        throughput = worker("inprocess").call({"op": "throughput", **in_counts})
        _note("in-process overhead and throughput", started)
        growth = worker("inprocess").run({"op": "growth", **counts["growth"]})
        _note("RSS growth", started)
        overhead_round()
        streams = worker("streams").run({"op": "streams", **counts["streams"]})
        _note("10k streams", started)
        overhead_round()

        # Every round runs the four callers one after another, in a rotating order, so that
        # drift in the load of a shared machine spreads over all of them.
        http_counts = counts["http"]
        runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
        for concurrency in CONCURRENCY:
            key = f"c{concurrency}"
            runs[key] = {name: [] for name in callers}
            for r in range(http_counts["rounds"]):
                for name in callers[r % len(callers) :] + callers[: r % len(callers)]:
                    command = {
                        "op": "drive",
                        "caller": name,
                        "concurrency": concurrency,
                        "seconds": http_counts["seconds"],
                        "warm": http_counts["warm"],
                        "url": emulator.url,
                        "server_pid": emulator.pid,
                    }
                    runs[key][name].append(worker(_caller_worker(name)).call(command))
            _note(f"HTTP c{concurrency}", started)
            overhead_round()
        for name in callers:
            worker(_caller_worker(name)).close()
        gateway_stats = worker("http").call(
            {
                "op": "gateway",
                "concurrency": GATEWAY_C,
                "seconds": http_counts["seconds"],
                "warm": http_counts["warm"],
                "rounds": http_counts["rounds"],
                "url": emulator.url,
                "server_pid": emulator.pid,
                "gateway": gateway.url,
                "gateway_pid": gateway.pid,
            }
        )
        _note("gateway", started)
        stream = worker("http").call(
            {"op": "stream", "url": emulator.url, "streams": http_counts["streams"]}
        )
        _note("streaming", started)
        overhead_round()

    out["inprocess"] = {**_median_round(overhead_rounds), **throughput}
    out["http"] = _http_table(runs)
    gw, direct = gateway_stats["gateway"], gateway_stats["direct"]
    out["gateway"] = {
        f"c{GATEWAY_C}": {
            "rps": gw["rps"],
            "direct_rps": direct["rps"],
            "p99_ms": gw["p99_ms"],
            "direct_p99_ms": direct["p99_ms"],
            "p50_ms": gw["p50_ms"],
            "direct_p50_ms": direct["p50_ms"],
            "over_direct": gw["rps"] / direct["rps"],
            "client_cpu_us_per_req": gw["cpu_us_per_req"],
            "gateway_cpu_us_per_req": gw["server_cpu_us_per_req"],
            "errors": gw["errors"] + direct["errors"],
            "error_types": {**gw["error_types"], **direct["error_types"]},
        }
    }
    out["stream"] = stream
    out["memory"] = {
        "rss_mb_10k_streams": streams["rss_mb"],
        "rss_growth_mb_200k": growth["rss_growth_mb"],
        "streams": streams["streams"],
        "rss_mb_before_runtime": streams["rss_mb_before_runtime"],
        "rss_mb_idle_10k_workers": streams["rss_mb_baseline"],
        "kb_per_stream": streams["kb_per_stream"],
        "seconds_to_open_streams": streams["open_seconds"],
        "growth_requests": growth["requests"],
        "growth_warmup_requests": growth["warmup_requests"],
        "rss_mb_after_warmup": growth["rss_mb_after_warmup"],
        "rss_trace_mb": growth["rss_trace_mb"],
    }
    out["targets"] = _targets(out)
    out["seconds"] = round(time.monotonic() - started, 1)
    return out


def _median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median overhead (an odd count of rounds: the middle one, not a
    choice between two), every round's overhead and floor beside it."""
    if len(rounds) % 2 == 0:
        raise ValueError(f"expected an odd number of overhead rounds, got {len(rounds)}")
    ordered = sorted(rounds, key=lambda r: r["overhead_us_p50"])
    return {
        **ordered[len(ordered) // 2],
        "rounds": len(rounds),
        "overhead_us_p50_rounds": [round(r["overhead_us_p50"], 1) for r in rounds],
        "trio_checkpoint_floor_us_p50_rounds": [
            round(r["trio_checkpoint_floor_us_p50"], 1) for r in rounds
        ],
    }


def _caller_worker(caller: str) -> str:
    # Each caller in a process of its own, importing only what it uses (as a program using
    # it would): the size of the heap sets how long the GC's full collections pause it.
    return "litellm" if caller == "litellm" else f"http-{caller}"


def _versions(use_litellm: bool) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    names = ["trio", "httpx2", "openai", "msgspec", "hypercorn"]
    names += ["litellm"] if use_litellm else []
    found = {}
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            found[name] = version(name)
    return found


def _note(what: str, started: float) -> None:
    print(f"  [{time.monotonic() - started:5.1f}s] {what}", file=sys.stderr, flush=True)


def _http_table(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for key, by_caller in runs.items():
        row: dict[str, Any] = {}
        for name in CALLERS:
            stats = merge(by_caller[name]) if by_caller.get(name) else None
            for field in (
                "rps",
                "p50_ms",
                "p99_ms",
                "cpu_us_per_req",
                "server_cpu_us_per_req",
                "p99_ms_worst_round",
                "errors",
                "error_types",
                "rps_rounds",
                "gc_full_collections",
                "gc_full_pause_ms_max",
                "gc_pause_ms_per_s",
                "p99_ms_outside_full_gc",
                "full_gc_hit_share",
            ):
                row[f"{name}_{field}"] = None if stats is None else stats[field]
        sy, raw = row["switchyard_rps"], row["raw_rps"]
        row["switchyard_over_raw"] = sy / raw
        row["switchyard_over_raw_transport"] = sy / row["raw_transport_rps"]
        row["switchyard_over_litellm"] = _ratio(sy, row["litellm_rps"])
        row["litellm_p99_over_switchyard_p99"] = _ratio(
            row["litellm_p99_ms"], row["switchyard_p99_ms"]
        )
        row["litellm_p99_over_switchyard_unfrozen_p99"] = _ratio(
            row["litellm_p99_ms"], row["switchyard_unfrozen_p99_ms"]
        )
        table[key] = row
    return table


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _get(data: dict[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        node = node[part]
    return node


def _targets(data: dict[str, Any]) -> dict[str, Any]:
    verdicts = {}
    for label, (path, op, bound) in TARGETS.items():
        value = _get(data, path)
        met = None if value is None else (value <= bound if op == "<=" else value >= bound)
        verdicts[label] = {"value": value, "met": met}
    return verdicts


# --- output --------------------------------------------------------------------------------


def _f(value: float | None, spec: str = ".0f") -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else format(value, spec)
    )


def report(data: dict[str, Any]) -> str:
    m = data["machine"]
    lines = [
        f"Switchyard benchmark ({data['mode']}, {data['seconds']} s): {m['cpus']} CPUs, "
        f"Python {m['python']}, load average at start {m['loadavg_at_start'][0]}",
        f"Emulator ({m['emulator_server']}) in its own process on loopback; ratios are against "
        "this run's baselines.",
        "",
    ]
    ip = data["inprocess"]
    lines += [
        "in-process (handle -> router -> provider actor -> in-memory transport -> back)",
        f"  overhead p50 {_f(ip['overhead_us_p50'], '.1f')} us, the median of "
        f"{ip['rounds']} rounds spread over the run (runtime "
        f"{_f(ip['runtime_us_p50'], '.1f')} us - direct transport call "
        f"{_f(ip['direct_us_p50'], '.2f')} us; runtime p99 {_f(ip['runtime_us_p99'], '.1f')} us)",
        f"  each round: {ip['overhead_us_p50_rounds']} us; its handoff floor (below): "
        f"{ip['trio_checkpoint_floor_us_p50_rounds']} us",
        f"  through both mailboxes (router.handoff off): "
        f"{_f(ip['mailboxes_overhead_us_p50'], '.1f')} us p50; bare trio of that shape (fresh "
        f"reply channel, caller -> task -> task -> caller): "
        f"{_f(ip['trio_3hop_floor_us_p50'], '.1f')} us",
        f"  bare trio, one schedule point and one cancel scope (a handoff's minimum): "
        f"{_f(ip['trio_checkpoint_floor_us_p50'], '.1f')} us p50",
        f"  throughput {_f(ip['rps'])} req/s at c64 ({_f(ip['cpu_us_per_req_c64'], '.1f')} us "
        f"CPU/req), {_f(ip['rps_c1'])} req/s sequential",
        "",
        "HTTP against the emulator's OpenAI endpoint: req/s (p99 ms) [client CPU us/req]",
        f"  {'conc':>4}  "
        + "  ".join(f"{name:>22}" for name in CALLERS)
        + f"  {'sy/raw':>6} {'sy/raw_tr':>9} {'sy/litellm':>10} {'p99 lite/sy':>11}"
        + f" {'p99 lite/unfrozen':>17}",
    ]
    for key, row in data["http"].items():
        cells = []
        for name in CALLERS:
            cells.append(
                f"{_f(row[f'{name}_rps']):>6} ({_f(row[f'{name}_p99_ms'], '.1f'):>6}) "
                f"[{_f(row[f'{name}_cpu_us_per_req']):>5}]"
            )
        lines.append(
            f"  {key[1:]:>4}  "
            + "  ".join(f"{c:>22}" for c in cells)
            + f"  {_f(row['switchyard_over_raw'], '.2f'):>6}"
            f" {_f(row['switchyard_over_raw_transport'], '.2f'):>9}"
            f" {_f(row['switchyard_over_litellm'], '.1f'):>10}"
            f" {_f(row['litellm_p99_over_switchyard_p99'], '.1f'):>11}"
            f" {_f(row['litellm_p99_over_switchyard_unfrozen_p99'], '.1f'):>17}"
        )
    for key, row in data["http"].items():
        server = ", ".join(f"{name} {_f(row[f'{name}_server_cpu_us_per_req'])}" for name in CALLERS)
        lines.append(f"  c{key[1:]} emulator CPU us/req: {server}")
    for key, row in data["http"].items():
        pauses = ", ".join(
            f"{name} {row[f'{name}_gc_full_collections']} "
            f"({_f(row[f'{name}_gc_full_pause_ms_max'])} ms; "
            f"{_f(100 * row[f'{name}_full_gc_hit_share'], '.1f')}% caught, "
            f"p99 of the rest {_f(row[f'{name}_p99_ms_outside_full_gc'], '.1f')} ms)"
            for name in CALLERS
            if row[f"{name}_gc_full_collections"] is not None
        )
        lines.append(f"  c{key[1:]} full GCs (longest pause; requests caught in one): {pauses}")
    failures = {
        f"{key} {name}": row[f"{name}_error_types"]
        for key, row in data["http"].items()
        for name in CALLERS
        if row[f"{name}_errors"]
    }
    lines.append(f"  failed calls: {failures or 0}")
    gw = data["gateway"][f"c{GATEWAY_C}"]
    lines += [
        "",
        f"gateway (switchyard serve, openai SDK client, c{GATEWAY_C}): {_f(gw['rps'])} req/s, "
        f"p99 {_f(gw['p99_ms'], '.1f')} ms; SDK direct to the emulator {_f(gw['direct_rps'])} "
        f"req/s, p99 {_f(gw['direct_p99_ms'], '.1f')} ms; ratio {_f(gw['over_direct'], '.2f')}",
        f"  gateway process CPU {_f(gw['gateway_cpu_us_per_req'])} us/req; client CPU "
        f"{_f(gw['client_cpu_us_per_req'])} us/req; failed calls {gw['errors']}",
    ]
    st = data["stream"]
    lines += [
        "",
        f"streaming ({st['chunks']} chunks, {st['streams']} streams each, sequential):",
        f"  time to first chunk p50: switchyard {_f(st['switchyard_ttft_us_p50'])} us, raw "
        f"{_f(st['raw_ttft_us_p50'])} us -> overhead {_f(st['ttft_overhead_us_p50'])} us",
        f"  per chunk: switchyard {_f(st['switchyard_chunk_us'], '.1f')} us, raw "
        f"{_f(st['raw_chunk_us'], '.1f')} us -> overhead {_f(st['chunk_overhead_us'], '.1f')} us",
    ]
    mem = data["memory"]
    lines += [
        "",
        f"memory: {mem['streams']} open streams: RSS {_f(mem['rss_mb_10k_streams'], '.1f')} MB "
        f"(process {_f(mem['rss_mb_before_runtime'], '.1f')} MB before the runtime, "
        f"{_f(mem['rss_mb_idle_10k_workers'], '.1f')} MB with its 10k idle workers; "
        f"{_f(mem['kb_per_stream'], '.1f')} KB/stream all in)",
        f"memory: RSS growth over {mem['growth_requests']} requests after "
        f"{mem['growth_warmup_requests']} warm-up: {_f(mem['rss_growth_mb_200k'], '+.2f')} MB "
        f"(trace {mem['rss_trace_mb']})",
        "",
        "targets:",
    ]
    for label, verdict in data["targets"].items():
        mark = {True: "met", False: "MISSED", None: "n/a"}[verdict["met"]]
        lines.append(f"  {mark:>6}  {label}  ({_f(verdict['value'], '.2f')})")
    return "\n".join(lines)


def plot(data: dict[str, Any], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(data["http"])
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.13
    for i, name in enumerate(CALLERS):
        values = [data["http"][k][f"{name}_rps"] or 0 for k in keys]
        xs = [j + (i - (len(CALLERS) - 1) / 2) * width for j in range(len(keys))]
        bars = ax.bar(xs, values, width, label=name)
        ax.bar_label(bars, labels=[f"{v:.0f}" for v in values], fontsize=7)
    ax.set_xticks(range(len(keys)), [f"concurrency {k[1:]}" for k in keys])
    ax.set_ylabel("requests / s")
    m = data["machine"]
    ax.set_title(f"Against the emulator on loopback ({m['cpus']} CPUs, Python {m['python']})")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, under a minute")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON")
    parser.add_argument("--plot", metavar="PNG", help="draw requests/s by concurrency")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM (fields null)")
    parser.add_argument("--profile", action="store_true", help="profile the in-process path")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker_main(args.worker)
        return 0
    if args.profile:
        for kind, calls in (("complete", 20000), ("stream", 2000)):
            command = {"op": "profile", "calls": calls, "kind": kind, "top": 30}
            print(Worker("profile").run(command)["report"])
        return 0
    use_litellm = not args.no_litellm
    if use_litellm and importlib.util.find_spec("litellm") is None:
        parser.error("litellm is not installed: pip install -e '.[bench]', or pass --no-litellm")
    data = measure(args.quick, use_litellm)
    print(report(data))
    if args.json:
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    if args.plot:
        plot(data, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
