"""Test doubles and chaos tools: a scriptable in-process provider and an actor-killing monkey.

``MockProvider`` behaves like a provider with configurable latency, failures and streams, all
deterministic for a given ``seed``. ``ChaosMonkey`` kills random actors of a runtime at
random, seeded intervals. Both work under ``trio.testing.MockClock``.
"""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Sequence
from typing import Literal, final

import trio

from protocols import (
    Finish,
    LLMProvider,
    Request,
    Response,
    ServerError,
    StreamEvent,
    SwitchyardError,
    TextDelta,
    TextPart,
    Usage,
    UsageEvent,
)

from ._runtime import Runtime

__all__ = ["ChaosMonkey", "MockCrash", "MockProvider", "Outcome"]

Outcome = Literal["ok", "fail", "crash", "hang", "cut", "fail_mid_stream"]
"""What one call does. ``fail`` raises the provider's error; ``crash`` raises a non-typed
exception (which crashes the actor); ``hang`` never answers; ``cut`` ends a stream without its
finish marker; ``fail_mid_stream`` sends half the chunks, then raises the error."""


class MockCrash(RuntimeError):
    """Raised by a ``MockProvider`` told to crash: a bug, from the runtime's point of view."""


@final
class MockProvider(LLMProvider):
    """A scriptable provider.

    * ``always_fail``: every call raises ``error`` (default: a ``ServerError``).
    * ``failure_rate`` with ``seed``: that share of calls fail, reproducibly.
    * ``script``: outcomes for the first calls, in order (then the defaults apply).
    * ``latency``: seconds before a complete answer or the first chunk, or a ``(low, high)``
      range drawn from the seeded generator; ``chunk_delay``: seconds between chunks.
    * ``chunks``: the streamed text pieces; default: the reply split after each word.
    * ``text``: the reply; default: derived from the last message, so it is deterministic.
    * ``model`` and ``kind`` ("openai", "anthropic", "gemini"...) name what it pretends to be,
      for price lookup.
    """

    def __init__(
        self,
        name: str = "mock",
        *,
        always_fail: bool = False,
        error: SwitchyardError | None = None,
        failure_rate: float = 0.0,
        seed: int | None = None,
        script: Sequence[Outcome] = (),
        latency: float | tuple[float, float] = 0.0,
        chunk_delay: float = 0.0,
        chunks: Sequence[str] | None = None,
        text: str | None = None,
        model: str = "mock-1",
        kind: str = "custom",
    ) -> None:
        if not name:
            raise ValueError("name: expected a non-empty string")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate: expected a probability in [0, 1], got {failure_rate}")
        self.name = name
        self.model = model
        self.kind = kind
        self.always_fail = always_fail
        self.error = error
        self.failure_rate = failure_rate
        self.script: list[Outcome] = list(script)
        self.latency = latency
        self.chunk_delay = chunk_delay
        self.chunks = list(chunks) if chunks is not None else None
        self.text = text
        self._rng = random.Random(seed)
        self.calls = 0
        self.completed = 0
        self.cancelled = 0
        self.last_request: Request | None = None

    # --- behaviour ---------------------------------------------------------------------------

    def _next_outcome(self) -> Outcome:
        self.calls += 1
        if self.script:
            return self.script.pop(0)
        if self.always_fail:
            return "fail"
        if self.failure_rate and self._rng.random() < self.failure_rate:
            return "fail"
        return "ok"

    def _make_error(self) -> SwitchyardError:
        if self.error is not None:
            # A fresh instance per failure: errors carry per-attempt state.
            error = type(self.error).__new__(type(self.error))
            error.__dict__.update(self.error.__dict__)
            error.args = self.error.args
            return error
        return ServerError(f"{self.name} failed (mock)", provider=self.name, status=500)

    def _delay(self) -> float:
        if isinstance(self.latency, tuple):
            low, high = self.latency
            return self._rng.uniform(low, high)
        return self.latency

    def reply_text(self, request: Request) -> str:
        if self.text is not None:
            return self.text
        prompt = request.messages[-1].text
        return f"{self.name} answers: {prompt[:60]}"

    def _pieces(self, request: Request) -> list[str]:
        if self.chunks is not None:
            return list(self.chunks)
        words = self.reply_text(request).split(" ")
        return [w + " " for w in words[:-1]] + [words[-1]]

    def _usage(self, request: Request, output_tokens: int) -> Usage:
        prompt_chars = sum(len(m.text) for m in request.messages)
        return Usage(input_tokens=math.ceil(prompt_chars / 4), output_tokens=output_tokens)

    async def _misbehave(self, outcome: Outcome) -> None:
        if outcome == "fail":
            raise self._make_error()
        if outcome == "crash":
            raise MockCrash(f"{self.name} crashed (mock)")
        if outcome == "hang":
            await trio.sleep_forever()

    # --- the provider interface --------------------------------------------------------------

    async def complete(self, request: Request) -> Response:
        self.last_request = request
        outcome = self._next_outcome()
        try:
            delay = self._delay()
            if delay:
                await trio.sleep(delay)
            await self._misbehave(outcome)
        except trio.Cancelled:
            self.cancelled += 1
            raise
        pieces = self._pieces(request)
        self.completed += 1
        return Response(
            content=(TextPart("".join(pieces)),),
            finish_reason="stop",
            usage=self._usage(request, len(pieces)),
            provider=self.name,
            model=request.options.model or self.model,
        )

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent | str]:
        self.last_request = request
        outcome = self._next_outcome()
        pieces = self._pieces(request)
        try:
            delay = self._delay()
            if delay:
                await trio.sleep(delay)
            if outcome != "fail_mid_stream":
                await self._misbehave(outcome)
            half = len(pieces) // 2 if outcome == "fail_mid_stream" else len(pieces)
            for i, piece in enumerate(pieces[:half]):
                if i and self.chunk_delay:
                    await trio.sleep(self.chunk_delay)
                yield TextDelta(piece)
            if outcome == "fail_mid_stream":
                raise self._make_error()
        except trio.Cancelled:
            self.cancelled += 1
            raise
        if outcome == "cut":
            return
        yield UsageEvent(self._usage(request, len(pieces)))
        self.completed += 1
        yield Finish("stop", model=request.options.model or self.model)


@final
class ChaosMonkey:
    """Kills random running actors of ``runtime`` at random intervals, reproducibly.

    ``await nursery.start(monkey.run)``; cancel the nursery to stop it. ``kills`` records
    ``(time, actor)`` for every kill, so a failing seed can be replayed and inspected.
    ``targets`` limits the actors it may kill (default: all, router included).
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        seed: int,
        min_interval_s: float = 0.001,
        max_interval_s: float = 0.01,
        targets: Sequence[str] | None = None,
    ) -> None:
        if not 0 <= min_interval_s <= max_interval_s:
            raise ValueError("expected 0 <= min_interval_s <= max_interval_s")
        unknown = set(targets or ()) - set(runtime.actor_names)
        if unknown:
            raise ValueError(f"targets: no actor named {sorted(unknown)[0]!r}")
        self.runtime = runtime
        self.seed = seed
        self.min_interval_s = min_interval_s
        self.max_interval_s = max_interval_s
        self.targets = tuple(targets) if targets else runtime.actor_names
        self.kills: list[tuple[float, str]] = []
        self._rng = random.Random(seed)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            await trio.sleep(self._rng.uniform(self.min_interval_s, self.max_interval_s))
            victim = self._rng.choice(self.targets)
            if self.runtime.kill(victim, reason=f"chaos monkey (seed {self.seed})"):
                self.kills.append((trio.current_time(), victim))
