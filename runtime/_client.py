"""``UnifiedLLMClient``: the original sketch's interface, as a thin facade over the runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from types import TracebackType
from typing import Any, final

from actors import PolicyName, ProviderSpec, RuntimeHealth
from protocols import LLMProvider, Response

from ._config import RuntimeConfig
from ._runtime import MessagesIn, Runtime, open_runtime, text_chunks

__all__ = ["UnifiedLLMClient"]


@final
class UnifiedLLMClient:
    """One client over several providers, with failover between them::

        async with UnifiedLLMClient([primary, backup]) as client:
            response = await client.complete([{"role": "user", "content": "hi"}])
            async for chunk in client.stream(messages):
                print(chunk, end="")

    Each provider runs as a supervised actor of a runtime owned by the ``async with`` block;
    ``client.runtime`` is that runtime's full handle.
    """

    def __init__(
        self,
        providers: Sequence[LLMProvider | ProviderSpec],
        *,
        config: RuntimeConfig | None = None,
        policy: PolicyName | None = None,
    ) -> None:
        self.providers = list(providers)
        self._config = config
        self._policy = policy
        self._context: AbstractAsyncContextManager[Runtime] | None = None
        self._runtime: Runtime | None = None

    async def __aenter__(self) -> UnifiedLLMClient:
        if self._context is not None:
            raise RuntimeError("this client is already open")
        context = open_runtime(self.providers, config=self._config, policy=self._policy)
        self._runtime = await context.__aenter__()
        self._context = context
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        context, self._context, self._runtime = self._context, None, None
        assert context is not None
        return await context.__aexit__(exc_type, exc, tb)

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            raise RuntimeError("use `async with UnifiedLLMClient(...) as client` first")
        return self._runtime

    async def complete(self, messages: MessagesIn, **options: Any) -> Response:
        """See ``Runtime.complete``."""
        return await self.runtime.complete(messages, **options)

    async def stream(self, messages: MessagesIn, **options: Any) -> AsyncIterator[str]:
        """Text chunks as they arrive; a failure raises its typed error.

        Breaking out of the loop early cancels the upstream request (when the generator is
        closed; wrap it in ``contextlib.aclosing`` to make that immediate).
        """
        async with self.runtime.stream(messages, **options) as events:
            async for chunk in text_chunks(events):
                yield chunk

    def health(self) -> RuntimeHealth:
        return self.runtime.health()

    def kill(self, name: str, reason: str = "killed on purpose") -> bool:
        return self.runtime.kill(name, reason)
