"""Stream typed events, and see a failover before the first chunk stay invisible.

Run: python examples/streaming.py
"""

import trio

from protocols import ErrorEvent, Finish, Overloaded, TextDelta, UsageEvent
from runtime import open_runtime
from runtime.testing import MockProvider


async def main() -> None:
    # "busy" answers 529 Overloaded before any content: the stream fails over to "calm".
    busy = MockProvider(name="busy", always_fail=True, error=Overloaded("529", provider="busy"))
    calm = MockProvider(name="calm", chunk_delay=0.02)
    async with open_runtime([busy, calm]) as rt:
        messages = [{"role": "user", "content": "tell me about actors"}]
        async with rt.stream(messages) as events:
            async for event in events:
                match event:
                    case TextDelta(text=text):
                        print(text, end="", flush=True)
                    case UsageEvent(usage=usage):
                        print(f"\n[usage: {usage.input_tokens} in, {usage.output_tokens} out]")
                    case Finish(response=response) if response is not None:
                        print(f"[done by {response.provider}, {response.attempts} attempts]")
                    case ErrorEvent(error=error, delivered_text=delivered):
                        print(f"\n[failed after {len(delivered)} chars: {error!r}]")

        # The plain-text form, for when you only want the words.
        async with rt.stream_text(messages) as chunks:
            print("".join([chunk async for chunk in chunks]))


if __name__ == "__main__":
    trio.run(main)
