"""A chaos run: random failures at every provider while a monkey kills actors.

Every request still ends in exactly one outcome. Run: python examples/chaos.py [seed]
"""

import logging
import sys
from collections import Counter

import structlog
import trio

from actors import RetryBudgetConfig, RetryConfig, SupervisorConfig
from protocols import SwitchyardError
from runtime import RuntimeConfig, open_runtime
from runtime.testing import ChaosMonkey, MockProvider


async def main(seed: int) -> None:
    providers = [
        MockProvider(name=name, failure_rate=0.2, seed=seed + i, latency=(0.002, 0.01))
        for i, name in enumerate(["openai", "anthropic", "gemini"])
    ]
    # Every provider fails 20% of the time, which is the default retry budget (20% of
    # requests): give retries more room, and allow a third pass over the providers.
    config = RuntimeConfig(
        seed=seed,
        supervision=SupervisorConfig(max_restarts=1000, period_s=1.0, backoff_base_s=0.005),
        retry=RetryConfig(budget=RetryBudgetConfig(ratio=0.5), max_rounds=3),
    )
    outcomes: Counter[str] = Counter()
    async with open_runtime(providers, config=config, policy="round_robin") as rt:
        monkey = ChaosMonkey(rt, seed=seed, min_interval_s=0.01, max_interval_s=0.05)
        async with trio.open_nursery() as chaos:
            await chaos.start(monkey.run)
            async with trio.open_nursery() as clients:
                for i in range(300):
                    clients.start_soon(one, rt, i, outcomes)
                    await trio.sleep(0.002)
            chaos.cancel_scope.cancel()
        restarts = {a.name: a.restarts for a in rt.health().actors}
    faults = sum(p.calls - p.completed - p.cancelled for p in providers)
    print(f"seed {seed}: 300 requests, {len(monkey.kills)} kills, {faults} injected faults")
    print(f"outcomes: {dict(outcomes)}")
    print(f"restarts: {restarts}")


async def one(rt, i: int, outcomes: Counter[str]) -> None:
    try:
        await rt.complete([{"role": "user", "content": f"request {i}"}], timeout=10)
        outcomes["response"] += 1
    except SwitchyardError as error:
        outcomes[type(error).__name__] += 1


if __name__ == "__main__":
    # Each kill logs a warning; keep the output to the summary.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 1)
