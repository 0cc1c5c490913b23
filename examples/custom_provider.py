"""Plug your own provider into the runtime by subclassing LLMProvider.

Run: python examples/custom_provider.py
"""

from collections.abc import AsyncIterator

import trio

from protocols import (
    Finish,
    LLMProvider,
    Request,
    Response,
    ServerError,
    StreamEvent,
    TextDelta,
    TextPart,
    Usage,
    UsageEvent,
)
from runtime import UnifiedLLMClient


class ShoutingProvider(LLMProvider):
    """Answers in capitals. Fails every third call, to show failover."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.model = "shout-1"
        self.calls = 0

    def _answer(self, request: Request) -> str:
        self.calls += 1
        if self.calls % 3 == 0:
            raise ServerError("every third call fails", provider=self.name, status=503)
        return request.messages[-1].text.upper() + "!"

    async def complete(self, request: Request) -> Response:
        await trio.sleep(0.01)  # a network round trip
        text = self._answer(request)
        return Response(
            content=(TextPart(text),),
            finish_reason="stop",
            usage=Usage(input_tokens=len(text) // 4, output_tokens=len(text.split())),
            provider=self.name,
            model=self.model,
        )

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent | str]:
        text = self._answer(request)
        for word in text.split(" "):
            await trio.sleep(0.005)
            yield TextDelta(word + " ")
        yield UsageEvent(Usage(input_tokens=len(text) // 4, output_tokens=len(text.split())))
        yield Finish("stop", model=self.model)


async def main() -> None:
    async with UnifiedLLMClient([ShoutingProvider("loud"), ShoutingProvider("louder")]) as client:
        for question in ["hello there", "how are you", "what is trio", "bye now"]:
            response = await client.complete([{"role": "user", "content": question}])
            print(f"{response.provider:6} -> {response.text}")
        chunks = [c async for c in client.stream([{"role": "user", "content": "stream this"}])]
        print("stream:", "".join(chunks))


if __name__ == "__main__":
    trio.run(main)
