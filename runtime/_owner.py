"""Request owners: the caller-side logic that gives every request exactly one outcome.

The owner runs in the caller's own task. It holds the request's deadline and reads each
attempt's reply channel; actors do the work and may die. Whatever happens to them, the owner
sees a terminal message or the end of the channel, decides (retry, fail over, give up) and
ends with exactly one outcome: a ``Response`` returned, a typed error raised, or for streams
exactly one ``Finish`` or ``ErrorEvent``. When the caller cancels or the deadline passes, the
owner cancels the upstream attempt through its ticket.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, final

import msgspec
import structlog
import trio

from actors import (
    AttemptFailed,
    Dispatch,
    FailOver,
    GiveUp,
    NoRoute,
    OneShot,
    Reply,
    ReplyTo,
    RetrySame,
    Ticket,
)
from protocols import (
    AllProvidersFailed,
    Attempt,
    ErrorEvent,
    Finish,
    ProviderUnavailable,
    Request,
    Response,
    RuntimeClosed,
    StreamEvent,
    StreamInterrupted,
    SwitchyardError,
    TextDelta,
    TextPart,
    Timeout,
    ToolCallDelta,
    ToolCallPart,
    TransportError,
    Usage,
    UsageEvent,
)

if TYPE_CHECKING:
    from protocols import ContentPart

    from ._runtime import Runtime

__all__ = ["EventStream", "complete"]

_log = structlog.get_logger("switchyard.request")


@final
class _Owner:
    """Attempt bookkeeping shared by the complete and stream paths."""

    __slots__ = (
        "attempts",
        "avoid",
        "delay",
        "exclude",
        "prefer",
        "request",
        "round",
        "rt",
        "tries",
    )

    def __init__(self, rt: Runtime, request: Request) -> None:
        self.rt = rt
        self.request = request
        self.attempts: list[Attempt] = []
        self.tries: dict[str, int] = {}
        self.exclude = _initial_exclusions(rt, request)
        self.avoid: frozenset[str] = frozenset()
        self.prefer: str | None = None
        self.delay = 0.0
        self.round = 1

    async def open_attempt(self, reply: ReplyTo) -> tuple[Dispatch, float]:
        """Route the next attempt, to be answered on ``reply``; returns its dispatch and
        the time it started.

        While the router is running with an empty mailbox, the owner routes in its own task
        (routing never waits, so this is what the router would do, a scheduler trip
        sooner); otherwise the dispatch waits its turn in the router's mailbox. Either way
        ``dispatch.handoff`` may come back set: the owner is to serve the attempt itself.
        """
        deadline = self.request.deadline
        if self.delay > 0:
            await trio.sleep_until(min(trio.current_time() + self.delay, deadline))
            self.delay = 0.0
            if trio.current_time() >= deadline:
                raise self.timeout()
        dispatch = Dispatch(self.request, reply, Ticket(), self.exclude, self.prefer, self.avoid)
        rt = self.rt
        router = rt._router
        if rt._handoff and rt._router_status.state == "running" and not router.queued:
            router.route(dispatch, handoff=True)
            return dispatch, rt._now()
        inbox = rt._router_inbox
        try:
            # Most of the time the router's mailbox has room: skip the scheduler round trip
            # of an awaited send (the caller checkpoints on the reply anyway).
            try:
                inbox.send_nowait(dispatch)
            except trio.WouldBlock:
                with trio.move_on_at(deadline):
                    await inbox.send(dispatch)  # backpressure
                    router.queued += 1
                    return dispatch, rt._now()
                reply.close()
                raise self.timeout() from None
            router.queued += 1
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            reply.close()
            raise RuntimeClosed("the runtime is shutting down") from None
        return dispatch, rt._now()

    def failed(
        self, error: SwitchyardError, provider: str | None, started: float, *, died: bool = False
    ) -> None:
        """Record a failed attempt and set up the next one, or raise the terminal error.

        ``died``: the provider's actor went down under the attempt (a soft exclusion).
        """
        now = trio.current_time()
        name = provider or error.provider or "?"
        self.attempts.append(Attempt(name, error, now - started))
        if self.rt._log_requests:
            _log.debug(
                "attempt_failed",
                request_id=self.request.id,
                actor=name,
                attempt=len(self.attempts),
                outcome=error.kind,
                latency_s=now - started,
            )
        tries = self.tries[name] = self.tries.get(name, 0) + 1
        decision = self.rt._retry.decide(
            error, tries_here=tries, now=now, deadline=self.request.deadline
        )
        match decision:
            case RetrySame(delay=delay):
                self.prefer = name
                self.delay = delay
            case FailOver():
                if died:
                    self.avoid = self.avoid | {name}
                else:
                    self.exclude = self.exclude | {name}
                self.prefer = None
            case GiveUp():
                raise error

    def no_route(self, message: NoRoute) -> None:
        """The router had nowhere to send the attempt: wait, start a new round, or give up."""
        now = trio.current_time()
        deadline = self.request.deadline
        wait = message.retry_after
        # A long wait (everyone rate limited for a minute) is an answer, not a plan.
        if (
            wait is not None
            and now + wait < deadline
            and wait <= self.rt._retry.config.max_retry_after_s
        ):
            self.delay = wait
            return
        if message.retry_after is None and self.attempts:
            delay = self.rt._retry.next_round(round_number=self.round, now=now, deadline=deadline)
            if delay is not None:
                self.round += 1
                self.exclude = _initial_exclusions(self.rt, self.request)
                self.avoid = frozenset()
                self.prefer = None
                self.delay = delay
                return
        if message.error is not None and not self.attempts:
            raise message.error
        raise AllProvidersFailed(self.attempts, reason=message.reason)

    def timeout(self) -> Timeout:
        tried = len(self.attempts)
        return Timeout(
            f"request {self.request.id} passed its deadline after {tried} failed attempts"
        )

    def succeeded(self, provider: str, started: float, now: float) -> None:
        if self.rt._log_requests:
            _log.debug(
                "attempt_ok",
                request_id=self.request.id,
                actor=provider,
                attempt=len(self.attempts) + 1,
                outcome="ok",
                latency_s=now - started,
            )


def _initial_exclusions(rt: Runtime, request: Request) -> frozenset[str]:
    # A request limited to some providers starts with the others excluded.
    allowed = request.options.providers
    if not allowed:
        return frozenset()
    return frozenset(rt.provider_names) - frozenset(allowed)


async def complete(rt: Runtime, request: Request) -> Response:
    """The owner of a non-streaming request.

    Every wait is bounded by the request's deadline: a handed-off attempt by its own cancel
    scope (whose deadline is never later), the others by one here. Not one scope around it
    all: nested cancel scopes cost more than the rest of a handoff.
    """
    owner = _Owner(rt, request)
    deadline = request.deadline
    while True:
        reply = OneShot()
        dispatch, started = await owner.open_attempt(reply)
        ticket = dispatch.ticket
        message: Reply | None = None
        try:
            actor = dispatch.handoff
            if actor is None:
                with trio.move_on_at(deadline):
                    message = await reply.receive()
            else:
                # trio counts a task's trips through the scheduler (privately, for
                # trio.testing.assert_checkpoints); without the count, assume none.
                task = trio.lowlevel.current_task()
                yields = getattr(task, "_schedule_points", None)
                await actor.serve_handoff(dispatch)
                if yields is None or getattr(task, "_schedule_points", None) == yields:
                    # Every call into the runtime is a schedule point, as trio's own are,
                    # even when the provider never waited (an in-memory one). Only then:
                    # after real I/O an extra trip through the scheduler only costs (with
                    # httpx, idle pooled connections are probed on each request).
                    await trio.lowlevel.checkpoint()
                message = reply.take()
        except BaseException:
            # The caller went away: stop upstream.
            reply.discard()
            ticket.cancel()
            raise
        now = rt._now()
        if now >= deadline:
            reply.discard()
            ticket.cancel()
            raise owner.timeout()
        match message:
            case Response():
                owner.succeeded(message.provider, started, now)
                return msgspec.structs.replace(
                    message,
                    latency=now - started,
                    attempts=len(owner.attempts) + 1,
                    request_id=request.id,
                )
            case AttemptFailed(error=error):
                owner.failed(error, ticket.provider, started)
            case NoRoute():
                owner.no_route(message)
            case None:
                owner.failed(_went_down(ticket), ticket.provider, started, died=True)
            case _:
                error = TransportError(f"unexpected {type(message).__name__} in a reply")
                owner.failed(error, ticket.provider, started)


def _went_down(ticket: Ticket) -> ProviderUnavailable:
    return ProviderUnavailable(
        "the provider's actor went down mid-request", provider=ticket.provider
    )


@final
class _ToolCallBuffer:
    __slots__ = ("arguments", "id", "name")

    def __init__(self) -> None:
        self.id = ""
        self.name = ""
        self.arguments: list[str] = []


@final
class EventStream:
    """The events of one streaming request; iterate with ``async for``.

    Events are ``TextDelta``, ``ToolCallDelta``, ``UsageEvent``, then exactly one terminal
    event: ``Finish`` (its ``response`` holds the assembled answer) or ``ErrorEvent``.
    Failover before the first content event is invisible; after it, a failure is an
    ``ErrorEvent`` whose error is ``StreamInterrupted`` carrying the delivered text.

    Users get one from ``Runtime.stream``; the context manager that gives it closes it,
    which cancels the upstream request if it is still running.
    """

    def __init__(self, owner: _Owner, *, buffer: int) -> None:
        self._owner = owner
        self._buffer = buffer
        self._deadline = owner.request.deadline
        self._now = owner.rt._now
        self._receive: trio.MemoryReceiveChannel[Reply] | None = None
        self._ticket: Ticket | None = None
        self._started = 0.0
        self._first_content: float | None = None
        self._ready: deque[StreamEvent] = deque()
        self._held: list[StreamEvent] = []
        self._text: list[str] = []
        self._tools: dict[int, _ToolCallBuffer] = {}
        self._usage: Usage | None = None
        self._done = False
        self.response: Response | None = None
        """The assembled answer, once the stream has finished well."""

    @property
    def request_id(self) -> str:
        return self._owner.request.id

    @property
    def provider(self) -> str | None:
        """The provider of the current (or last) attempt."""
        return None if self._ticket is None else self._ticket.provider

    @property
    def delivered_text(self) -> str:
        return "".join(self._text)

    def __aiter__(self) -> AsyncIterator[StreamEvent]:
        return self

    async def __anext__(self) -> StreamEvent:
        if self._ready:
            return self._ready.popleft()
        if self._done:
            raise StopAsyncIteration
        deadline = self._deadline
        receive = self._receive
        if receive is not None and self._now() < deadline:
            # Fast path: an event is already buffered, so no cancel scope is needed. The
            # cancellation check comes first, so a cancelled caller never drops an event.
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                message: Reply | None = receive.receive_nowait()
            except trio.WouldBlock:
                pass
            except trio.EndOfChannel:
                if (event := self._handle(None)) is not None:
                    return event
            else:
                if (event := self._handle(message)) is not None:
                    return event
        with trio.move_on_at(deadline):
            return await self._pump()
        self._end_attempt(cancel=True)
        return self._terminal(self._owner.timeout())

    def close(self) -> None:
        """Stop now; cancels the upstream request if one is running. Idempotent."""
        self._done = True
        self._end_attempt(cancel=True)

    async def _pump(self) -> StreamEvent:
        owner = self._owner
        while True:
            receive = self._receive
            if receive is None:
                send, receive = trio.open_memory_channel[Reply](self._buffer)
                try:
                    dispatch, self._started = await owner.open_attempt(send)
                except SwitchyardError as closed:
                    receive.close()
                    return self._terminal(closed)
                self._receive = receive
                self._ticket = dispatch.ticket
            try:
                message: Reply | None = await receive.receive()
            except trio.EndOfChannel:
                message = None
            except BaseException:
                self._end_attempt(cancel=True)
                raise
            if (event := self._handle(message)) is not None:
                return event

    def _handle(self, message: Reply | None) -> StreamEvent | None:
        """Take one reply: the event for the caller, or None to keep reading."""
        match message:
            case TextDelta(text=text):
                self._text.append(text)
                return self._content(message)
            case ToolCallDelta():
                self._tool_delta(message)
                return self._content(message)
            case UsageEvent(usage=usage):
                self._usage = usage
                if self._first_content is not None:
                    return message
                self._held.append(message)  # delivered only if this attempt succeeds
                return None
            case Finish():
                return self._finish(message)
            case AttemptFailed(error=error):
                return self._attempt_failed(error)
            case None:
                assert self._ticket is not None
                return self._attempt_failed(_went_down(self._ticket), died=True)
            case NoRoute():
                self._end_attempt(cancel=False)
                try:
                    self._owner.no_route(message)
                except SwitchyardError as final_error:
                    return self._terminal(final_error)
                return None
            case _:
                odd = TransportError(f"unexpected {type(message).__name__} in a stream")
                return self._attempt_failed(odd)

    def _content(self, event: StreamEvent) -> StreamEvent:
        if self._first_content is None:
            self._first_content = trio.current_time()
            return self._after_held(event)
        return event

    def _after_held(self, event: StreamEvent) -> StreamEvent:
        """Deliver the events held back before the first content, then ``event``."""
        if not self._held:
            return event
        self._ready.extend(self._held[1:])
        self._ready.append(event)
        first = self._held[0]
        self._held.clear()
        return first

    def _tool_delta(self, delta: ToolCallDelta) -> None:
        buffer = self._tools.get(delta.index)
        if buffer is None:
            buffer = self._tools[delta.index] = _ToolCallBuffer()
        if delta.id:
            buffer.id = delta.id
        if delta.name:
            buffer.name = delta.name
        if delta.arguments_delta:
            buffer.arguments.append(delta.arguments_delta)

    def _attempt_failed(self, error: SwitchyardError, *, died: bool = False) -> StreamEvent | None:
        ticket = self._ticket
        provider = ticket.provider if ticket is not None else None
        self._end_attempt(cancel=False)
        if self._first_content is not None:
            return self._terminal(StreamInterrupted(error, delivered_text=self.delivered_text))
        self._held.clear()
        self._usage = None
        try:
            self._owner.failed(error, provider, self._started, died=died)
        except SwitchyardError as terminal:
            return self._terminal(terminal)
        return None

    def _finish(self, finish: Finish) -> StreamEvent:
        ticket = self._ticket
        provider = ticket.provider if ticket is not None and ticket.provider else "?"
        self._end_attempt(cancel=False)
        try:
            content = self._assemble()
        except SwitchyardError as error:
            return self._terminal(StreamInterrupted(error, delivered_text=self.delivered_text))
        now = self._now()
        self._owner.succeeded(provider, self._started, now)
        response = Response(
            content=content,
            finish_reason=finish.reason,
            usage=self._usage or Usage(),
            provider=provider,
            model=finish.model or "",
            latency=now - self._started,
            ttft=None if self._first_content is None else self._first_content - self._started,
            attempts=len(self._owner.attempts) + 1,
            request_id=self._owner.request.id,
            cost_usd=finish.cost_usd,
        )
        self.response = response
        self._done = True
        final = Finish(
            finish.reason, model=response.model, response=response, cost_usd=finish.cost_usd
        )
        return self._after_held(final)  # usage may have come before any content

    def _assemble(self) -> tuple[ContentPart, ...]:
        parts: list[ContentPart] = []
        if self._text:
            parts.append(TextPart("".join(self._text)))
        for index in sorted(self._tools):
            buffer = self._tools[index]
            raw = "".join(buffer.arguments) or "{}"
            try:
                arguments = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                raise TransportError(
                    f"tool call {buffer.name!r} arguments are not valid JSON"
                ) from None
            if not isinstance(arguments, dict):
                raise TransportError(f"tool call {buffer.name!r} arguments are not an object")
            parts.append(ToolCallPart(id=buffer.id, name=buffer.name, arguments=arguments))
        return tuple(parts)

    def _terminal(self, error: SwitchyardError) -> StreamEvent:
        self._done = True
        return ErrorEvent(error, delivered_text=self.delivered_text)

    def _end_attempt(self, *, cancel: bool) -> None:
        if cancel and self._ticket is not None:
            self._ticket.cancel()
        if self._receive is not None:
            self._receive.close()
            self._receive = None
