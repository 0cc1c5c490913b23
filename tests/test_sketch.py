"""The original sketch's two tests, changed only by the `async with` that trio needs."""

from runtime import UnifiedLLMClient
from runtime.testing import MockProvider

messages = [{"role": "user", "content": "test"}]


async def test_failover():
    # Mock provider that always fails
    failing = MockProvider(name="failing", always_fail=True)
    working = MockProvider(name="working", always_fail=False)

    async with UnifiedLLMClient([failing, working]) as client:
        response = await client.complete([{"role": "user", "content": "test"}])

    assert response.provider == "working"


async def test_streaming():
    async with UnifiedLLMClient([MockProvider(name="anthropic")]) as client:
        chunks = []
        async for chunk in client.stream(messages):
            chunks.append(chunk)

    assert len(chunks) > 0
    assert "".join(chunks) == "anthropic answers: test"
