"""``switchyard demo``: a mixed workload through the runtime while things go wrong.

Everything runs on the embedded emulator of the three provider APIs, over real loopback
HTTP, with no API keys and no network. Midway it kills one provider's actor and starts an
outage at another; a live table shows each actor's state, breaker, limiter headroom,
latency, traffic and restarts, and the failovers as they happen. It ends with a summary.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from dataclasses import dataclass, field

import msgspec
import structlog
import trio
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from actors import ProviderSpec, RuntimeHealth
from protocols import ErrorEvent, Finish, SwitchyardError

from ._build import build_provider_specs, build_runtime_config
from ._config import RuntimeConfig
from ._embedded import EMULATED_KEYS, emulated_settings
from ._runtime import Runtime, open_runtime
from .emulator import EmulatorHandle, serve_emulator

__all__ = ["run_demo"]


@dataclass
class _Tally:
    outcomes: Counter[str] = field(default_factory=Counter)
    failovers: int = 0
    events: list[str] = field(default_factory=list)

    def note(self, line: str) -> None:
        self.events.append(line)
        del self.events[:-6]


def _table(health: RuntimeHealth, tally: _Tally, phase: str) -> Group:
    table = Table(title=f"Switchyard demo: {phase}", expand=False)
    for column in ("actor", "state", "breaker", "req/min left", "p50 ms", "p95 ms", "ok", "errors"):
        table.add_column(column)
    table.add_column("restarts", justify="right")
    for actor in health.actors:
        breaker = actor.breaker.state if actor.breaker else "-"
        limiter = actor.limiter
        headroom = (
            f"{limiter.requests_available:.0f}"
            if limiter and limiter.requests_available is not None
            else "-"
        )
        p50 = f"{actor.latency.p50_ms:.0f}" if actor.latency and actor.latency.p50_ms else "-"
        p95 = f"{actor.latency.p95_ms:.0f}" if actor.latency and actor.latency.p95_ms else "-"
        state_style = {"running": "green", "restarting": "yellow", "failed": "red"}.get(
            actor.state, ""
        )
        table.add_row(
            actor.name,
            Text(actor.state, style=state_style),
            Text(breaker, style="red" if breaker == "open" else ""),
            headroom,
            p50,
            p95,
            str(actor.successes),
            str(sum(actor.errors.values())),
            str(actor.restarts),
        )
    summary = Text(
        f"requests: {sum(tally.outcomes.values())}  outcomes: {dict(tally.outcomes)}  "
        f"failovers: {tally.failovers}"
    )
    return Group(table, summary, Text("\n".join(tally.events), style="dim"))


async def _one(rt: Runtime, index: int, tally: _Tally, rng: random.Random) -> None:
    messages = [{"role": "user", "content": f"demo request {index}: say something useful"}]
    try:
        if rng.random() < 0.4:
            async with rt.stream(messages, timeout=10) as events:
                async for event in events:
                    if isinstance(event, Finish) and event.response is not None:
                        _done(tally, index, event.response.provider, event.response.attempts)
                    elif isinstance(event, ErrorEvent):
                        tally.outcomes[type(event.error).__name__] += 1
            return
        response = await rt.complete(messages, timeout=10)
        _done(tally, index, response.provider, response.attempts)
    except SwitchyardError as error:
        tally.outcomes[type(error).__name__] += 1


def _done(tally: _Tally, index: int, provider: str, attempts: int) -> None:
    tally.outcomes["ok"] += 1
    if attempts > 1:
        tally.failovers += 1
        tally.note(f"request {index}: answered by {provider} after {attempts} attempts")


async def _run(seed: int, requests: int, console: Console) -> _Tally:
    rng = random.Random(seed)
    tally = _Tally()
    async with trio.open_nursery() as emulator_nursery:
        emulator = await emulator_nursery.start(serve_emulator)
        settings = emulated_settings(
            emulator.base_url,
            router={"policy": "round_robin"},
            supervision={"max_restarts": 10, "period_s": 5.0},
        )
        specs = build_provider_specs(settings, EMULATED_KEYS)
        config = msgspec.structs.replace(build_runtime_config(settings), seed=seed)
        await _workload(specs, config, emulator, requests, tally, rng, console)
        emulator_nursery.cancel_scope.cancel()
    return tally


async def _workload(
    specs: list[ProviderSpec],
    config: RuntimeConfig,
    emulator: EmulatorHandle,
    requests: int,
    tally: _Tally,
    rng: random.Random,
    console: Console,
) -> None:
    phase = "warming up"
    async with open_runtime(specs, config=config) as rt:
        with Live(_table(rt.health(), tally, phase), console=console, refresh_per_second=8) as live:
            async with trio.open_nursery() as nursery:

                async def refresh() -> None:
                    while True:
                        live.update(_table(rt.health(), tally, phase))
                        await trio.sleep(0.1)

                nursery.start_soon(refresh)
                async with trio.open_nursery() as clients:
                    for index in range(requests):
                        if index == requests // 3:
                            phase = "killed the openai actor"
                            rt.kill("openai", reason="demo: killed on purpose")
                            tally.note("!! killed the openai actor")
                        if index == requests // 2:
                            phase = "anthropic outage (503s)"
                            emulator.set_faults("anthropic", "status=503")
                            tally.note("!! anthropic starts answering 503 to every request")
                        if index == requests * 5 // 6:
                            phase = "anthropic recovered"
                            emulator.set_faults("anthropic", None)
                            tally.note("!! anthropic recovered")
                        clients.start_soon(_one, rt, index, tally, rng)
                        await trio.sleep(0.005)
                phase = "done"
                live.update(_table(rt.health(), tally, phase))
                nursery.cancel_scope.cancel()
        health = rt.health()
    _summary(console, requests, tally, health)


def _summary(console: Console, requests: int, tally: _Tally, health: RuntimeHealth) -> None:
    console.print()
    console.print("[bold]Summary[/bold]")
    console.print(f"  requests sent:   {requests}")
    console.print(f"  outcomes:        {dict(tally.outcomes)}")
    console.print(f"  failovers:       {tally.failovers}")
    for actor in health.actors:
        console.print(
            f"  {actor.name:10} restarts={actor.restarts} ok={actor.successes} "
            f"errors={actor.errors}"
        )


def run_demo(*, seed: int = 1, requests: int = 600) -> int:
    # Crashes are part of the show; keep the logs to errors so the table stays readable.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    console = Console()
    tally = trio.run(_run, seed, requests, console)
    lost = requests - sum(tally.outcomes.values())
    console.print(f"  lost requests:   {lost}")
    return 0 if lost == 0 else 1
