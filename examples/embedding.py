"""Embed Switchyard in a trio application: two providers, failover, and a health check.

Run: python examples/embedding.py
"""

import trio

from protocols import encode_json
from runtime import ProviderSpec, open_runtime
from runtime.testing import MockProvider


async def main() -> None:
    primary = MockProvider(name="primary", failure_rate=0.3, seed=7, latency=0.01)
    backup = MockProvider(name="backup", latency=0.02)
    providers = [
        ProviderSpec(provider=primary, priority=0, rpm=600),
        ProviderSpec(provider=backup, priority=1),
    ]
    async with open_runtime(providers) as rt:
        async with trio.open_nursery() as nursery:
            for i in range(20):
                nursery.start_soon(ask, rt, i)
        health = rt.health()
        for actor in health.actors:
            print(f"{actor.name:8} {actor.state:10} ok={actor.successes} errors={actor.errors}")
        print(encode_json(health.actor("primary").breaker).decode())


async def ask(rt, i: int) -> None:
    response = await rt.complete([{"role": "user", "content": f"question {i}"}])
    print(f"{i:2} answered by {response.provider} after {response.attempts} attempt(s)")


if __name__ == "__main__":
    trio.run(main)
