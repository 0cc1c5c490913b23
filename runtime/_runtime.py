"""The runtime: a supervision tree inside a nursery, and the handle users talk to."""

from __future__ import annotations

import gc
import itertools
import random
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal, final

import msgspec
import trio

from actors import (
    Accounting,
    ActorHealth,
    BudgetStatus,
    ChildSpec,
    Dispatch,
    LedgerSnapshot,
    PolicyName,
    PriceBook,
    ProviderActor,
    ProviderSlot,
    ProviderSpec,
    RetryPolicy,
    RouterActor,
    RoutingPolicy,
    RuleClassifier,
    RuntimeHealth,
    Supervisor,
    SupervisorHealth,
    TaskClassifier,
    make_policy,
)
from protocols import (
    ErrorEvent,
    InvalidRequest,
    LLMProvider,
    Message,
    Request,
    Response,
    RuntimeClosed,
    TextDelta,
    build_request,
)

from ._config import RuntimeConfig
from ._owner import EventStream, _Owner, complete

__all__ = ["ROUTER", "Runtime", "open_runtime"]

ROUTER = "router"
"""The router actor's name, for ``Runtime.kill`` and health."""


MessagesIn = Iterable[Message | Mapping[str, Any]]


@asynccontextmanager
async def open_runtime(
    providers: Sequence[LLMProvider | ProviderSpec],
    *,
    config: RuntimeConfig | None = None,
    policy: PolicyName | None = None,
    classifier: TaskClassifier | None = None,
) -> AsyncIterator[Runtime]:
    """Start a runtime for ``providers`` and yield its handle.

    Every actor runs in a nursery owned by this block. Leaving the block shuts down
    gracefully: new requests get ``RuntimeClosed``, requests in flight get
    ``config.grace_period_s`` to finish, then everything left is cancelled and each
    provider's ``aclose()`` is awaited. No task outlives the block.

    ``policy`` is a shortcut for ``config.router.policy``. ``classifier`` maps requests to
    task types for ``config.task_routes`` (default: ``RuleClassifier``).
    """
    config = config or RuntimeConfig()
    if policy is not None:
        config = _with_policy(config, policy)
    runtime = Runtime(_TOKEN, providers, config, classifier)
    try:
        await runtime._load_prices()
        async with trio.open_nursery() as nursery:
            await nursery.start(runtime._supervisor.run)
            if config.freeze_heap:
                _freeze_startup_heap()
            runtime._state = "running"
            try:
                yield runtime
            finally:
                runtime._state = "closing"
                try:
                    with trio.move_on_after(config.grace_period_s):
                        await runtime._wait_idle()
                finally:
                    runtime._router_inbox.close()
                    nursery.cancel_scope.cancel()
    finally:
        runtime._state = "closed"
        runtime._drop_undelivered()
        with trio.CancelScope(shield=True):
            for slot in runtime._slots:
                await slot.spec.provider.aclose()


def _freeze_startup_heap() -> None:
    """``RuntimeConfig.freeze_heap``. Not over a freeze already made (the program's own, or
    an earlier runtime's): so once per process. The collection first, so that no garbage
    alive now is frozen with the rest."""
    if gc.get_freeze_count() > 0:
        return
    gc.collect()
    gc.freeze()


def _with_policy(config: RuntimeConfig, policy: PolicyName) -> RuntimeConfig:
    router = msgspec.structs.replace(config.router, policy=policy)
    return msgspec.structs.replace(config, router=router)


_TOKEN = object()


@final
class Runtime:
    """The handle to a running runtime. Get one from ``open_runtime``; do not construct it.

    All methods are safe to call from any task of the trio run that opened the runtime.
    """

    def __init__(
        self,
        token: object,
        providers: Sequence[LLMProvider | ProviderSpec],
        config: RuntimeConfig,
        classifier: TaskClassifier | None = None,
    ) -> None:
        if token is not _TOKEN:
            raise TypeError("use `async with open_runtime(...) as rt`, not Runtime(...)")
        specs = [p if isinstance(p, ProviderSpec) else ProviderSpec(provider=p) for p in providers]
        if not specs:
            raise ValueError("providers: expected at least one provider")
        names = [s.name for s in specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"providers: names must be unique, {duplicates[0]!r} repeats")
        if ROUTER in names:
            raise ValueError(f"providers: {ROUTER!r} is reserved for the router actor")
        self.config = config
        self._now = trio.lowlevel.current_clock().current_time  # see ProviderSlot.now
        self._state: Literal["starting", "running", "closing", "closed"] = "starting"
        rng = random.Random(config.seed)
        # Budget periods run on the trio clock (so tests can mock it), set to wall time.
        wall_offset = time.time() - trio.current_time()
        self.accounting = Accounting(
            prices=PriceBook(config.prices),
            budgets=config.budgets,
            quality=config.quality,
            clock=lambda: trio.current_time() + wall_offset,
        )
        self._slots = tuple(
            ProviderSlot(s, default_breaker=config.breaker, accounting=self.accounting)
            for s in specs
        )
        self._by_name = {slot.name: slot for slot in self._slots}
        self._retry = RetryPolicy(config.retry, rng=random.Random(rng.random()), clock=self._now)
        inbox_send, inbox_receive = trio.open_memory_channel[Dispatch](
            config.router.mailbox_capacity
        )
        self._router_inbox = inbox_send
        self._router_mailbox = inbox_receive
        policy_rng = random.Random(rng.random())

        def policy_named(name: PolicyName) -> RoutingPolicy:
            return make_policy(name, policy_rng, explore=config.router.latency_explore)

        self._router = RouterActor(
            self._slots,
            policy_named(config.router.policy),
            inbox_receive,
            make_policy=policy_named,
            classifier=classifier or RuleClassifier(),
            task_routes=config.task_routes,
        )
        children = [ChildSpec(ROUTER, self._router.run)]
        children += [ChildSpec(slot.name, ProviderActor(slot).run) for slot in self._slots]
        self._supervisor = Supervisor(children, config.supervision)
        for slot in self._slots:
            slot.status = self._supervisor.status(slot.name)
        self._router_status = self._supervisor.status(ROUTER)
        self._handoff = config.router.handoff
        self._ids = itertools.count(1)
        self._in_flight = 0
        self._idle: trio.Event | None = None
        self._log_requests = config.log_requests

    def __repr__(self) -> str:
        return f"<Runtime {self._state} providers={list(self._by_name)}>"

    async def _load_prices(self) -> None:
        """The providers' default models priced before the first request: the first price
        looked up in a process loads genai-prices' data, off the event loop here."""
        prices = self.accounting.prices
        pairs = [(slot.spec.provider.kind, slot.spec.provider.model) for slot in self._slots]
        if prices.loaded(kind for kind, _ in pairs):
            prices.preload(pairs)  # lookups in memory: microseconds
        else:
            await trio.to_thread.run_sync(prices.preload, pairs)

    # --- requests ----------------------------------------------------------------------------

    async def complete(self, messages: MessagesIn, **options: Any) -> Response:
        """Answer ``messages`` in one piece.

        ``options`` are ``RequestOptions`` fields (model, max_tokens, temperature, top_p, stop,
        tools, tool_choice, response_format, metadata, timeout). Raises ``InvalidRequest``
        for bad input, before any provider is called; otherwise returns a ``Response`` or
        raises one typed ``SwitchyardError`` before the deadline. Cancelling the calling task
        cancels the upstream request.
        """
        request = self._admit(messages, options, stream=False)
        try:
            return await complete(self, request)
        finally:
            self._release()

    @asynccontextmanager
    async def stream(self, messages: MessagesIn, **options: Any) -> AsyncIterator[EventStream]:
        """Stream the answer as typed events::

            async with rt.stream(messages) as events:
                async for event in events:
                    match event:
                        case TextDelta(text=t): ...
                        case Finish(response=r): ...
                        case ErrorEvent(error=e): ...

        The stream ends with exactly one ``Finish`` or ``ErrorEvent``. Leaving the block early
        cancels the upstream request. Bad input raises ``InvalidRequest`` on entry.
        """
        request = self._admit(messages, options, stream=True)

        events = EventStream(_Owner(self, request), buffer=self.config.stream_buffer)
        try:
            yield events
        finally:
            events.close()
            self._release()

    @asynccontextmanager
    async def stream_text(
        self, messages: MessagesIn, **options: Any
    ) -> AsyncIterator[AsyncIterator[str]]:
        """Stream plain text chunks. A failure raises its typed error (for a stream broken
        after some text, ``StreamInterrupted`` with ``delivered_text``)."""
        async with self.stream(messages, **options) as events:
            yield text_chunks(events)

    # --- inspection and chaos ----------------------------------------------------------------

    @property
    def provider_names(self) -> tuple[str, ...]:
        return tuple(self._by_name)

    @property
    def actor_names(self) -> tuple[str, ...]:
        return (ROUTER, *self._by_name)

    def health(self) -> RuntimeHealth:
        """A snapshot of the actor tree; ``protocols.encode_json`` turns it into JSON."""
        status = self._supervisor.status(ROUTER)
        router = ActorHealth(
            name=ROUTER,
            kind="router",
            state=status.state,
            restarts=status.restarts,
            last_crash=status.last_crash,
            last_crash_at=status.last_crash_at,
            mailbox_depth=self._router.mailbox_depth,
            mailbox_capacity=self.config.router.mailbox_capacity,
            in_flight=0,
            successes=self._router.routed,
            errors={"no_route": self._router.rejected} if self._router.rejected else {},
        )
        providers = tuple(slot.health() for slot in self._slots)
        supervision = self.config.supervision
        state: Literal["running", "closing", "closed"] = (
            "running" if self._state in ("starting", "running") else self._state  # type: ignore[assignment]
        )
        return RuntimeHealth(
            state=state,
            serving=state == "running"
            and router.state == "running"
            and any(p.can_serve for p in providers),
            requests_in_flight=self._in_flight,
            supervisor=SupervisorHealth(
                strategy=supervision.strategy,
                max_restarts=supervision.max_restarts,
                period_s=supervision.period_s,
                escalate=supervision.escalate,
            ),
            retry_budget=self._retry.budget.snapshot(),
            actors=(router, *providers),
            costs=self.costs(),
        )

    def costs(self) -> LedgerSnapshot:
        """Spending so far: totals by provider, model and tenant, unknown-cost and billed
        failed attempts counted apart. Exact ``Decimal`` amounts."""
        return self.accounting.ledger.snapshot()

    def budgets(self) -> list[BudgetStatus]:
        """Each budget's spend and in-flight reservations in its current period."""
        budget = self.accounting.budget
        return [] if budget is None else budget.status()

    def kill(self, name: str, reason: str = "killed on purpose") -> bool:
        """Crash actor ``name`` (a provider's name, or ``"router"``) as if it had raised.

        Its supervisor restarts it, subject to restart intensity. Returns False if the actor
        was not running. Requests it was serving fail over.
        """
        return self._supervisor.kill(name, reason)

    # --- internals ---------------------------------------------------------------------------

    def _admit(self, messages: MessagesIn, options: Mapping[str, Any], *, stream: bool) -> Request:
        if self._state != "running":
            raise RuntimeClosed(f"the runtime is {self._state}; it accepts no new requests")
        now = self._now()
        request = build_request(
            messages,
            options,
            request_id=f"req-{next(self._ids)}",
            now=now,
            default_timeout=self.config.default_timeout_s,
            stream=stream,
        )
        unknown = (
            request.options.providers and set(request.options.providers) - self._by_name.keys()
        )
        if unknown:
            raise InvalidRequest(
                f"no provider named {sorted(unknown)[0]!r}; providers: {', '.join(self._by_name)}",
                field="providers",
            )
        self._in_flight += 1
        self._retry.budget.record_request(now)
        return request

    def _release(self) -> None:
        self._in_flight -= 1
        if self._in_flight == 0 and self._idle is not None:
            self._idle.set()

    async def _wait_idle(self) -> None:
        if self._in_flight:
            self._idle = trio.Event()
            await self._idle.wait()

    def _drop_undelivered(self) -> None:
        """Close the reply channels of dispatches the router never read, so owners see it."""
        while True:
            try:
                dispatch = self._router_mailbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            dispatch.reply.close()
        self._router.queued = 0


async def text_chunks(events: EventStream) -> AsyncIterator[str]:
    """Text deltas as plain strings; an error event raises its error."""
    async for event in events:
        if isinstance(event, TextDelta):
            yield event.text
        elif isinstance(event, ErrorEvent):
            raise event.error
