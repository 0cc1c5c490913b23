"""The provider actor: one provider's transport behind a mailbox, a limiter and a breaker.

An incarnation of the actor is a mailbox plus ``max_concurrency`` worker tasks that take jobs
from it, so no task is spawned per request. The mailbox is bounded and belongs to the
incarnation: when the actor dies, the jobs still queued in it are dropped with their reply
channels closed, and their owners fail over at once instead of waiting for a restart.

Handoff: when the actor is idle enough (a free concurrency slot, nothing queued), a
non-streaming job may instead be served in its owner's task (``serve_handoff``), the way an
actor runtime lets a caller run an idle actor's handler on its own thread. The job passes the
same breaker, limiter and budget checks and counts against the same concurrency limit; what
it saves is two trips through the trio scheduler, most of a small request's cost. The actor
still owns the job: its death cancels it (the owner sees its reply channel end and fails
over), and a provider bug raised while serving it crashes the actor, not the caller.

Everything that must survive a crash (limiter buckets, breaker, latency statistics, counters)
lives in ``ProviderSlot``, which the supervisor's child spec keeps across incarnations.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import final

import msgspec
import trio

from protocols import (
    Finish,
    LLMProvider,
    Overloaded,
    ProviderUnavailable,
    RateLimited,
    RateLimitInfo,
    Request,
    Response,
    ServerError,
    StreamEvent,
    SwitchyardError,
    TextDelta,
    Timeout,
    ToolCallDelta,
    TransportError,
    Usage,
    UsageEvent,
)

from ._accounting import Accounting
from ._breaker import BreakerConfig, CircuitBreaker
from ._budget import BudgetExceeded, Reservation
from ._health import ActorHealth, LatencySnapshot
from ._limiter import RateLimiter
from ._mail import AttemptFailed, Dispatch, Reply, ReplyTo, Ticket
from ._stats import DecayingAverage, LatencyWindow
from ._supervisor import ActorState, ChildStatus

__all__ = ["ProviderActor", "ProviderSlot", "ProviderSpec"]


@dataclass(frozen=True, kw_only=True, slots=True)
class ProviderSpec:
    """A provider and the limits the runtime enforces for it.

    ``rpm``/``tpm``: requests and tokens per minute (None: unlimited). ``max_concurrency``:
    requests in flight at once. ``mailbox_capacity``: requests waiting beyond those (None:
    as many as ``max_concurrency``). ``priority``: lower goes first under the priority
    policy. ``weight``: share under the weighted policy. ``attempt_timeout_s``: the most one
    attempt may take (a stream: until its first event). ``stream_idle_timeout_s``: the most
    a stream may go quiet between events. ``breaker``: None takes the runtime's default.
    """

    provider: LLMProvider
    rpm: float | None = None
    tpm: float | None = None
    max_concurrency: int = 64
    mailbox_capacity: int | None = None
    priority: int = 0
    weight: float = 1.0
    attempt_timeout_s: float = 60.0
    stream_idle_timeout_s: float = 30.0
    breaker: BreakerConfig | None = None

    def __post_init__(self) -> None:
        where = f"provider {getattr(self.provider, 'name', '?')!r}"
        if not isinstance(self.provider, LLMProvider):
            raise TypeError(f"{where}: expected an LLMProvider, got {type(self.provider).__name__}")
        if not getattr(self.provider, "name", None):
            raise ValueError(f"{where}: the provider needs a non-empty name")
        for field in ("rpm", "tpm"):
            value = getattr(self, field)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{where}: {field}: expected a number > 0, got {value}")
        if self.max_concurrency < 1:
            raise ValueError(f"{where}: max_concurrency: expected an integer >= 1")
        if self.mailbox_capacity is not None and self.mailbox_capacity < 0:
            raise ValueError(f"{where}: mailbox_capacity: expected an integer >= 0")
        if not (self.weight > 0 and math.isfinite(self.weight)):
            raise ValueError(f"{where}: weight: expected a number > 0, got {self.weight}")
        for field in ("attempt_timeout_s", "stream_idle_timeout_s"):
            if not getattr(self, field) > 0:
                raise ValueError(f"{where}: {field}: expected seconds > 0")

    @property
    def name(self) -> str:
        return self.provider.name


def _run_clock() -> Callable[[], float]:
    """The current trio run's clock, called directly: ``trio.current_time()`` is three calls
    deep, and the hot path reads the time a few times a request (once a stream event)."""
    try:
        return trio.lowlevel.current_clock().current_time
    except RuntimeError:  # made outside a run (a test): look the clock up on each call
        return trio.current_time


def _is_breaker_failure(error: SwitchyardError) -> bool:
    # Timeouts, broken connections and 5xx say the provider is unwell; 4xx say the request is.
    return isinstance(error, Timeout | TransportError | ServerError | Overloaded)


@final
class ProviderSlot:
    """The state of one provider that outlives its actor's incarnations.

    The router reads it to decide where to send a request; the actor's workers update it.
    """

    __slots__ = (
        "accounting",
        "actor",
        "breaker",
        "errors",
        "in_flight",
        "latency",
        "latency_ewma",
        "limiter",
        "mailbox",
        "mailbox_capacity",
        "measured_at",
        "name",
        "now",
        "queued",
        "spec",
        "status",
        "successes",
        "ttft",
        "ttft_ewma",
    )

    def __init__(
        self,
        spec: ProviderSpec,
        *,
        default_breaker: BreakerConfig,
        accounting: Accounting | None = None,
    ) -> None:
        self.now = clock = _run_clock()
        self.accounting = accounting or Accounting()
        self.spec = spec
        self.name = spec.name
        self.limiter = RateLimiter(rpm=spec.rpm, tpm=spec.tpm, clock=clock)
        spec.provider.listen_rate_limits(self._provider_reported)
        self.breaker = CircuitBreaker(spec.breaker or default_breaker, clock=clock)
        self.latency = LatencyWindow()
        self.ttft = LatencyWindow()
        # Speed estimates for routing: averages over about the last second of traffic.
        self.latency_ewma = DecayingAverage()
        self.ttft_ewma = DecayingAverage()
        self.measured_at: float | None = None
        self.mailbox_capacity = (
            spec.max_concurrency if spec.mailbox_capacity is None else spec.mailbox_capacity
        )
        self.mailbox: trio.MemorySendChannel[Dispatch] | None = None
        self.queued = 0  # jobs in the mailbox: the router counts them in, workers out
        # The running incarnation, while there is one.
        self.actor: ProviderActor | None = None
        self.in_flight = 0
        self.successes = 0
        self.errors: dict[str, int] = {}
        # The supervisor's record of this child, attached once the supervisor exists.
        self.status: ChildStatus | None = None

    @property
    def state(self) -> ActorState:
        return "starting" if self.status is None else self.status.state

    # Fields the routing policies read.
    @property
    def priority(self) -> int:
        return self.spec.priority

    @property
    def weight(self) -> float:
        return self.spec.weight

    @property
    def max_concurrency(self) -> int:
        return self.spec.max_concurrency

    @property
    def latency_estimate(self) -> float | None:
        return self.latency_ewma.value

    @property
    def ttft_estimate(self) -> float | None:
        return self.ttft_ewma.value

    @property
    def kind(self) -> str:
        return self.spec.provider.kind

    def model_for(self, request: Request) -> str:
        return request.options.model or self.spec.provider.model

    @property
    def quality(self) -> float | None:
        return self.accounting.quality(self.spec.provider.model)

    def max_cost(self, request: Request) -> Decimal | None:
        """The most ``request`` may cost here; None if the model has no known price."""
        return self.accounting.max_cost(self.kind, self.model_for(request), request)

    def record_ttft(self, seconds: float, now: float) -> None:
        self.ttft.add(seconds)
        self.ttft_ewma.update(seconds, now)

    def _provider_reported(self, info: RateLimitInfo) -> None:
        self.limiter.update_from_headers(
            remaining_requests=info.remaining_requests,
            remaining_tokens=info.remaining_tokens,
            reset_requests_s=info.reset_requests_s,
            reset_tokens_s=info.reset_tokens_s,
        )

    def record_error(self, error: SwitchyardError) -> None:
        self.errors[error.kind] = self.errors.get(error.kind, 0) + 1

    def health(self) -> ActorHealth:
        status = self.status
        mailbox = self.mailbox
        depth = mailbox.statistics().current_buffer_used if mailbox is not None else 0
        return ActorHealth(
            name=self.name,
            kind="provider",
            state=self.state,
            restarts=0 if status is None else status.restarts,
            last_crash=None if status is None else status.last_crash,
            last_crash_at=None if status is None else status.last_crash_at,
            mailbox_depth=depth,
            mailbox_capacity=self.mailbox_capacity,
            in_flight=self.in_flight,
            max_concurrency=self.spec.max_concurrency,
            breaker=self.breaker.snapshot(),
            limiter=self.limiter.snapshot(),
            latency=_latency(self.latency),
            ttft=_latency(self.ttft),
            successes=self.successes,
            errors=dict(self.errors),
        )


def _latency(window: LatencyWindow) -> LatencySnapshot:
    p50 = window.percentile(50)
    p95 = window.percentile(95)
    return LatencySnapshot(
        p50_ms=None if p50 is None else p50 * 1000,
        p95_ms=None if p95 is None else p95 * 1000,
        samples=window.count,
    )


@final
class ProviderActor:
    """Runs one provider. ``run`` is one incarnation (see the module docstring)."""

    def __init__(self, slot: ProviderSlot) -> None:
        self.slot = slot
        self.provider = slot.spec.provider
        self._begin_incarnation()

    def _begin_incarnation(self) -> None:
        # Per incarnation: jobs being served in their owners' tasks, workers waiting for a
        # concurrency slot those jobs hold, and a crash one of them ran into.
        self._handed_off: set[Ticket] = set()
        self._room = trio.lowlevel.ParkingLot()
        self._reserved = 0  # slots handed from a finished job to a parked worker
        self._crashed = trio.Event()
        self._crash: Exception | None = None

    @property
    def crashing(self) -> bool:
        """A handed-off job crashed this incarnation; it is on its way down."""
        return self._crash is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        slot = self.slot
        send, receive = trio.open_memory_channel[Dispatch](slot.mailbox_capacity)
        self._begin_incarnation()
        try:
            async with trio.open_nursery() as nursery:
                for _ in range(slot.spec.max_concurrency):
                    nursery.start_soon(self._worker, receive)
                slot.mailbox = send
                slot.actor = self
                task_status.started()
                await self._crashed.wait()
                assert self._crash is not None
                raise self._crash
        finally:
            slot.mailbox = None
            slot.actor = None
            slot.queued = 0
            for ticket in self._handed_off:
                ticket.orphan()
            send.close()
            _drop_queued(receive)

    async def _worker(self, mailbox: trio.MemoryReceiveChannel[Dispatch]) -> None:
        slot = self.slot
        limit = slot.spec.max_concurrency
        async for job in mailbox:
            slot.queued -= 1
            if slot.in_flight + self._reserved >= limit or self._room:
                # Handed-off jobs hold the slots: wait in turn for one to be handed over.
                await self._room.park()
                self._reserved -= 1
            await self._serve(job)

    def _release_slot(self) -> None:
        self.slot.in_flight -= 1
        if self._room:  # straight to the worker that has waited longest
            self._reserved += 1
            self._room.unpark()

    def takes_handoff(self) -> bool:
        """Whether a job may be served in its owner's task now: a concurrency slot is free
        and no job is waiting for one, so a handoff overtakes nobody."""
        slot = self.slot
        return (
            slot.in_flight + self._reserved < slot.spec.max_concurrency
            and not slot.queued
            and not self._room
            and self._crash is None
        )

    async def serve_handoff(self, job: Dispatch) -> None:
        """Serve a non-streaming ``job`` in the calling task (its owner's), as a worker would.

        The reply goes to ``job.reply`` as usual; it is closed on return, with no terminal
        message if this incarnation died meanwhile. An unexpected exception crashes the
        actor, as it would have from a worker, and the owner sees a closed reply channel.
        """
        ticket = job.ticket
        self._handed_off.add(ticket)
        try:
            await self._serve(job)
        except Exception as exc:  # a bug in the provider: the actor's crash, not the caller's
            if self._crash is None:
                self._crash = exc
                self._crashed.set()
        finally:
            self._handed_off.discard(ticket)

    async def _serve(self, job: Dispatch) -> None:
        slot = self.slot
        reply = job.reply
        ticket = job.ticket
        request = job.request
        try:
            if ticket.cancelled:
                return
            if not slot.breaker.try_acquire():
                _deliver(
                    reply, AttemptFailed(ProviderUnavailable("circuit open", provider=slot.name))
                )
                return
            if not slot.limiter.try_acquire(request.estimated_tokens):
                slot.breaker.release()
                wait = slot.limiter.wait_time(request.estimated_tokens)
                limited = RateLimited(
                    "local rate limit reached", retry_after=wait, provider=slot.name, status=None
                )
                _deliver(reply, AttemptFailed(limited))
                return
            progress = _Progress(slot.model_for(request))
            accounting = slot.accounting
            tenant = request.options.metadata.tenant
            try:
                reservation = (
                    None
                    if accounting.budget is None
                    else accounting.admit(
                        provider=slot.name, tenant=tenant, max_cost=slot.max_cost(request)
                    )
                )
            except BudgetExceeded as exceeded:
                slot.breaker.release()
                refusal: SwitchyardError = exceeded
                if exceeded.scope == "provider":  # another provider's budget may have room
                    refusal = ProviderUnavailable(exceeded.message, provider=slot.name)
                _deliver(reply, AttemptFailed(refusal))
                return
            slot.in_flight += 1
            started = slot.now()
            error: SwitchyardError | None = None
            verdict = False
            # One cancel scope serves the caller's ticket, the attempt's own timeout and the
            # request's deadline (a handed-off attempt's owner has no scope of its own).
            scope = trio.CancelScope(
                deadline=min(request.deadline, started + slot.spec.attempt_timeout_s)
            )
            try:
                with scope:
                    ticket.attach(scope)
                    try:
                        if request.stream:
                            await self._stream(job, started, scope, progress, reservation)
                        else:
                            await self._complete(job, started, progress, reservation)
                        verdict = True
                    except SwitchyardError as exc:
                        error = exc
                    except trio.BrokenResourceError:
                        pass  # the owner went away mid-stream: like a cancellation
                if scope.cancelled_caught and ticket.orphaned:
                    return  # the actor died under a handed-off job: the reply just closes
                if scope.cancelled_caught and not ticket.cancelled:
                    what = "the stream went quiet" if request.stream else "no answer"
                    error = Timeout(f"{what} within the attempt timeout", provider=slot.name)
                if error is not None:
                    verdict = True
                    self._failed(error)
                    # Billed before the owner hears of it, so the ledger is current by then.
                    self._bill_unfinished(request, progress, reservation, tenant)
                    # A stream's buffer may be full: wait for room rather than drop the error.
                    with contextlib.suppress(trio.BrokenResourceError):
                        await reply.send(AttemptFailed(error))
                elif verdict:
                    now = progress.finished_at
                    slot.breaker.record_success(now)
                    slot.successes += 1
                    slot.measured_at = now
                    slot.latency.add(now - started)
                    slot.latency_ewma.update(now - started, now)
                    if progress.usage is not None:
                        slot.limiter.reconcile(
                            request.estimated_tokens, progress.usage.total_tokens
                        )
            finally:
                ticket.scope = None
                self._release_slot()
                if not verdict:
                    slot.breaker.release()
                if not progress.settled:
                    self._bill_unfinished(request, progress, reservation, tenant)
        finally:
            reply.close()

    def _bill_unfinished(
        self,
        request: Request,
        progress: _Progress,
        reservation: Reservation | None,
        tenant: str | None,
    ) -> None:
        """An attempt that ended without a settled answer: billed if output was produced."""
        if progress.settled:
            return
        accounting = self.slot.accounting
        if not progress.content:
            accounting.release(reservation)
            progress.settled = True
            return
        usage = accounting.estimated_usage(request, progress.chars, progress.usage)
        accounting.settle(
            reservation,
            provider=self.slot.name,
            kind=self.slot.kind,
            model=progress.model,
            tenant=tenant,
            usage=usage,
            billed_failure=True,
        )
        progress.settled = True

    def _settle(
        self,
        request: Request,
        progress: _Progress,
        reservation: Reservation | None,
        usage: Usage,
    ) -> Decimal | None:
        progress.settled = True
        return self.slot.accounting.settle(
            reservation,
            provider=self.slot.name,
            kind=self.slot.kind,
            model=progress.model,
            tenant=request.options.metadata.tenant,
            usage=usage,
        )

    def _failed(self, error: SwitchyardError) -> None:
        slot = self.slot
        slot.record_error(error)
        if _is_breaker_failure(error):
            slot.breaker.record_failure()
        else:
            slot.breaker.record_success()
        if isinstance(error, RateLimited) and error.retry_after and error.status is not None:
            slot.limiter.pause_for(error.retry_after)  # the provider said so (a real 429)

    async def _complete(
        self, job: Dispatch, started: float, progress: _Progress, reservation: Reservation | None
    ) -> None:
        response = await self.provider.complete(job.request)
        if not isinstance(response, Response):
            raise TypeError(f"{self.slot.name}.complete returned {type(response).__name__}")
        progress.finished_at = now = self.slot.now()
        self.slot.record_ttft(now - started, now)
        progress.usage = response.usage
        progress.model = response.model or progress.model
        cost = self._settle(job.request, progress, reservation, response.usage)
        if cost is not None:
            response = msgspec.structs.replace(response, cost_usd=cost)
        _deliver(job.reply, response)

    async def _stream(
        self,
        job: Dispatch,
        started: float,
        scope: trio.CancelScope,
        progress: _Progress,
        reservation: Reservation | None,
    ) -> None:
        """Forward the provider's events; the ``Finish`` goes out with the stream's cost."""
        slot = self.slot
        idle = slot.spec.stream_idle_timeout_s
        idle_floor = 0.9 * idle
        deadline = job.request.deadline
        reply = job.reply
        clock = slot.now
        events: AsyncIterator[StreamEvent | str] = self.provider.stream(job.request)
        current = scope.deadline
        try:
            async for item in events:
                event = TextDelta(item) if isinstance(item, str) else item
                now = clock()
                # Moving a deadline costs a heap update; push it out only when it is near,
                # so a quiet gap of between 0.9 and 1 idle timeouts ends the stream.
                if not now + idle_floor <= current <= now + idle:
                    current = scope.deadline = min(deadline, now + idle)
                if isinstance(event, TextDelta):
                    progress.chars += len(event.text)
                    if not progress.content:
                        progress.content = True
                        slot.record_ttft(now - started, now)
                elif isinstance(event, ToolCallDelta):
                    progress.chars += len(event.arguments_delta)
                    if not progress.content:
                        progress.content = True
                        slot.record_ttft(now - started, now)
                elif isinstance(event, UsageEvent):
                    progress.usage = event.usage
                elif isinstance(event, Finish):
                    progress.finished_at = now
                    progress.model = event.model or progress.model
                    usage = progress.usage or Accounting.estimated_usage(
                        job.request, progress.chars, None
                    )
                    cost = self._settle(job.request, progress, reservation, usage)
                    await reply.send(msgspec.structs.replace(event, cost_usd=cost))
                    return
                try:
                    reply.send_nowait(event)  # room in the buffer: no scheduler round trip
                except trio.WouldBlock:
                    await reply.send(event)  # a slow reader slows the upstream read
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                with trio.CancelScope(shield=True):
                    await aclose()
        raise TransportError("the stream ended without its finish marker", provider=slot.name)


@final
class _Progress:
    """What one attempt has produced so far, for billing it however it ends."""

    __slots__ = ("chars", "content", "finished_at", "model", "settled", "usage")

    def __init__(self, model: str) -> None:
        self.model = model
        self.finished_at = 0.0  # when the answer was complete
        self.usage: Usage | None = None
        self.chars = 0
        self.content = False
        self.settled = False


def _deliver(reply: ReplyTo, message: Reply) -> None:
    try:
        reply.send_nowait(message)
    except trio.BrokenResourceError:
        pass  # the owner is gone; nobody is waiting for this answer


def _drop_queued(mailbox: trio.MemoryReceiveChannel[Dispatch]) -> None:
    """Close the reply channel of every job still queued, so each owner fails over now."""
    while True:
        try:
            job = mailbox.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel):
            break
        job.reply.close()
    mailbox.close()
