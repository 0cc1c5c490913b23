"""Handoff: a non-streaming attempt served in its owner's task while its provider actor is idle.

The fast path must keep every promise of the worker path: the concurrency limit, failover
when the actor dies under the attempt, a provider bug crashing the actor (not the caller),
cancellation and deadlines reaching the upstream call, and exactly one outcome per request.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from functools import partial

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import BackoffConfig, OneShot, ProviderSpec, RetryConfig, SupervisorConfig
from protocols import (
    ErrorEvent,
    Finish,
    LLMProvider,
    Request,
    Response,
    StreamEvent,
    SwitchyardError,
    TextDelta,
    Timeout,
    Usage,
)
from runtime import RouterConfig, RuntimeConfig, open_runtime
from runtime.testing import MockProvider, Outcome

HI = [{"role": "user", "content": "hello handoff"}]
NO_RETRY = RuntimeConfig(seed=7, retry=RetryConfig(backoff=BackoffConfig(max_retries=0)))


class Tracked(LLMProvider):
    """Wraps a ``MockProvider``: records which task runs each call and how many are in flight."""

    def __init__(self, inner: MockProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.model = inner.model
        self.kind = inner.kind
        self.in_flight = 0
        self.peak = 0
        self.complete_tasks: list[trio.lowlevel.Task] = []
        self.stream_tasks: list[trio.lowlevel.Task] = []
        self.started: list[str] = []  # the prompt of every upstream call, in order
        # (start, end) of every upstream call, on the trio clock.
        self.spans: list[tuple[str, float, float]] = []

    def _enter(self, request: Request) -> float:
        self.started.append(request.messages[-1].text)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        return trio.current_time()

    def _exit(self, kind: str, started: float) -> None:
        self.in_flight -= 1
        self.spans.append((kind, started, trio.current_time()))

    async def complete(self, request: Request) -> Response:
        self.complete_tasks.append(trio.lowlevel.current_task())
        started = self._enter(request)
        try:
            return await self.inner.complete(request)
        finally:
            self._exit("complete", started)

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent | str]:
        self.stream_tasks.append(trio.lowlevel.current_task())
        started = self._enter(request)
        try:
            async with contextlib.aclosing(self.inner.stream(request)) as events:  # type: ignore[type-var]
                async for event in events:
                    yield event
        finally:
            self._exit("stream", started)


def answer(provider: str) -> Response:
    return Response(content=(), finish_reason="stop", usage=Usage(), provider=provider, model="m")


@contextlib.contextmanager
def scheduler_seeded(seed: int) -> Iterator[None]:
    """Seed trio's choice among runnable tasks (as tests/test_chaos.py does), and restore it
    afterwards so later tests keep their own ordering."""
    rng = trio._core._run._r  # type: ignore[attr-defined]
    state = rng.getstate()
    rng.seed(seed)
    try:
        yield
    finally:
        rng.setstate(state)


def tracked(name: str, **options: object) -> Tracked:
    return Tracked(MockProvider(name=name, **options))  # type: ignore[arg-type]


async def drain(rt, **options: object) -> list[StreamEvent]:
    async with rt.stream(HI, **options) as events:
        return [event async for event in events]


# --- where the work runs --------------------------------------------------------------------


async def test_complete_on_an_idle_runtime_runs_in_the_callers_task(autojump_clock):
    a = tracked("a")
    async with open_runtime([a], config=NO_RETRY) as rt:
        me = trio.lowlevel.current_task()
        response = await rt.complete(HI)
        assert response.provider == "a"
        assert response.attempts == 1
        assert a.complete_tasks == [me]
        # The handoff is accounted like a worker's job.
        health = rt.health().actor("a")
        assert health.successes == 1
        assert health.in_flight == 0


async def test_a_handed_off_complete_is_a_checkpoint_even_if_the_provider_never_waits():
    # MockProvider without latency answers without yielding; the runtime call must still be
    # a schedule point and a cancel point, as every trio call is.
    a = tracked("a")
    async with open_runtime([a], config=NO_RETRY) as rt:
        with trio.testing.assert_checkpoints():
            await rt.complete(HI)
        assert a.complete_tasks[-1] is trio.lowlevel.current_task()  # it was handed off


async def test_a_handed_off_complete_over_real_waits_adds_no_extra_trip(autojump_clock):
    # A provider that waited already gave the scheduler its turn: no further trip after it.
    a = tracked("a", latency=0.01)
    async with open_runtime([a], config=NO_RETRY) as rt:
        await rt.complete(HI)
        task = trio.lowlevel.current_task()
        before = task._schedule_points
        await rt.complete(HI)
        assert task._schedule_points - before == 1  # the provider's own sleep, nothing more


async def test_stream_always_runs_in_a_worker_task(autojump_clock):
    a = tracked("a")
    async with open_runtime([a], config=NO_RETRY) as rt:
        me = trio.lowlevel.current_task()
        events = await drain(rt)
        assert isinstance(events[-1], Finish)
        assert len(a.stream_tasks) == 1
        assert a.stream_tasks[0] is not me
        # And a complete() right after is handed off again.
        await rt.complete(HI)
        assert a.complete_tasks == [me]


async def test_with_handoff_off_a_complete_runs_in_a_worker(autojump_clock):
    a = tracked("a")
    config = RuntimeConfig(seed=7, router=RouterConfig(handoff=False), retry=NO_RETRY.retry)
    async with open_runtime([a], config=config) as rt:
        response = await rt.complete(HI)
        assert response.provider == "a"
        assert len(a.complete_tasks) == 1
        assert a.complete_tasks[0] is not trio.lowlevel.current_task()


# --- the concurrency limit ------------------------------------------------------------------


async def test_concurrency_limit_holds_when_handoffs_and_workers_mix(autojump_clock):
    a = tracked("a", latency=0.05, chunk_delay=0.01)
    spec = ProviderSpec(provider=a, max_concurrency=2, mailbox_capacity=8)
    outcomes: dict[int, str] = {}
    callers: set[trio.lowlevel.Task] = set()
    health_peak = 0

    async def one(index: int, stream: bool) -> None:
        if stream:
            events = await drain(rt, timeout=120)
            outcomes[index] = type(events[-1]).__name__
        else:
            callers.add(trio.lowlevel.current_task())
            outcomes[index] = type(await rt.complete(HI, timeout=120)).__name__

    async def watch() -> None:
        nonlocal health_peak
        while True:
            health_peak = max(health_peak, rt.health().actor("a").in_flight)
            await trio.sleep(0.001)

    expected: dict[int, str] = {}
    async with open_runtime([spec], config=NO_RETRY) as rt:
        async with trio.open_nursery() as watcher:
            watcher.start_soon(watch)
            for wave in range(6):
                async with trio.open_nursery() as nursery:
                    # An idle actor: this one is handed off and holds a slot...
                    index = 10 * wave
                    nursery.start_soon(one, index, False)
                    expected[index] = "Response"
                    await trio.testing.wait_all_tasks_blocked()
                    # ...while streams and completes pile up for the one slot left.
                    for index in range(10 * wave + 1, 10 * wave + 8):
                        stream = index % 2 == 1
                        nursery.start_soon(one, index, stream)
                        expected[index] = "Finish" if stream else "Response"
                        if index % 3 == 0:
                            await trio.sleep(0.02)
            watcher.cancel_scope.cancel()
        assert rt.health().actor("a").in_flight == 0

    assert outcomes == expected
    assert a.peak == 2  # the limit was reached, and never passed
    assert 0 < health_peak <= 2
    # Both paths were taken: some completes ran in their callers' tasks, some in workers.
    handed_off = sum(task in callers for task in a.complete_tasks)
    assert len(a.complete_tasks) == 24
    assert 6 <= handed_off < 24


async def test_a_saturated_actor_queues_a_complete_instead_of_handing_it_off(autojump_clock):
    a = tracked("a", chunks=["x"] * 10, chunk_delay=1.0)
    spec = ProviderSpec(provider=a, max_concurrency=1)
    async with open_runtime([spec], config=NO_RETRY) as rt:
        stream_done = trio.Event()

        async def long_stream() -> None:
            events = await drain(rt)
            assert isinstance(events[-1], Finish)
            stream_done.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(long_stream)
            await trio.sleep(0.5)  # the stream holds the only slot
            assert rt.health().actor("a").in_flight == 1
            start = trio.current_time()
            response = await rt.complete(HI)
            # It waited for the stream (9 s of chunks) instead of running beside it.
            assert stream_done.is_set()
            assert trio.current_time() - start == pytest.approx(8.5)
        assert response.provider == "a"
    assert a.peak == 1
    # Served by the worker once the stream let go, not in this task.
    assert a.complete_tasks and a.complete_tasks[0] is not trio.lowlevel.current_task()
    (stream_span,) = [s for s in a.spans if s[0] == "stream"]
    (complete_span,) = [s for s in a.spans if s[0] == "complete"]
    assert complete_span[1] >= stream_span[2]


async def test_a_saturated_actor_without_a_queue_lets_a_complete_fail_over(autojump_clock):
    a = tracked("a", chunks=["x"] * 10, chunk_delay=1.0)
    b = tracked("b")
    specs = [
        ProviderSpec(provider=a, max_concurrency=1, mailbox_capacity=0),
        ProviderSpec(provider=b),
    ]
    async with open_runtime(specs, config=NO_RETRY) as rt:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain, rt)
            await trio.sleep(0.5)
            assert rt.health().actor("a").in_flight == 1
            start = trio.current_time()
            response = await rt.complete(HI)
            assert trio.current_time() == start  # no waiting for "a"
            assert response.provider == "b"
            assert response.attempts == 1
            assert b.complete_tasks == [trio.lowlevel.current_task()]
    assert a.peak == 1
    assert a.complete_tasks == []


async def test_a_handoff_never_overtakes_a_job_waiting_for_the_actor(autojump_clock):
    a = tracked("a", latency=1.0, chunks=["x"])
    spec = ProviderSpec(provider=a, max_concurrency=1, mailbox_capacity=4)

    def say(text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": text}]

    async with open_runtime([spec], config=NO_RETRY) as rt:

        async def first_then_third() -> None:
            await rt.complete(say("first"))  # handed off: holds the only slot for 1 s
            await rt.complete(say("third"))  # asks the moment the slot is free again

        async def stream() -> None:
            async with rt.stream(say("stream")) as events:
                assert isinstance([e async for e in events][-1], Finish)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first_then_third)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(stream)  # a worker takes it and waits for the slot
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(rt.complete, say("second"))  # queued behind the stream
            await trio.testing.wait_all_tasks_blocked()
            assert a.started == ["first"]
    assert a.started == ["first", "stream", "second", "third"]
    assert a.peak == 1


class ByPrompt(LLMProvider):
    """Answers after a delay chosen by the prompt; records the prompts in the order served."""

    def __init__(self, name: str, delays: dict[str, float]) -> None:
        self.name = name
        self.delays = delays
        self.started: list[str] = []
        self.in_flight = 0
        self.peak = 0

    async def _wait(self, request: Request) -> None:
        text = request.messages[-1].text
        self.started.append(text)
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await trio.sleep(self.delays.get(text, 0.0))
        finally:
            self.in_flight -= 1

    async def complete(self, request: Request) -> Response:
        await self._wait(request)
        return answer(self.name)

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent | str]:
        await self._wait(request)
        yield TextDelta("done")
        yield Finish("stop")


async def test_a_handoff_never_overtakes_a_worker_waiting_for_a_slot(autojump_clock):
    a = ByPrompt("a", {"first": 1.0, "second": 3.0, "stream": 1.0})
    spec = ProviderSpec(provider=a, max_concurrency=2, mailbox_capacity=4)

    def say(text: str) -> list[dict[str, str]]:
        return [{"role": "user", "content": text}]

    async with open_runtime([spec], config=NO_RETRY) as rt:

        async def first_then_third() -> None:
            await rt.complete(say("first"))
            await rt.complete(say("third"))  # asks the moment "first" frees its slot

        async def stream() -> None:
            async with rt.stream(say("stream")) as events:
                assert isinstance([e async for e in events][-1], Finish)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first_then_third)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(rt.complete, say("second"))
            await trio.testing.wait_all_tasks_blocked()
            # Both slots are held by handoffs: each worker takes a stream and waits.
            nursery.start_soon(stream)
            nursery.start_soon(stream)
            await trio.testing.wait_all_tasks_blocked()
            assert a.started == ["first", "second"]
            assert rt.health().actor("a").in_flight == 2
    # At 1 s "first" hands its slot to the worker that has waited longest; "third" must
    # neither take it nor overtake the other waiting worker: freed slots go in turn.
    assert a.started == ["first", "second", "stream", "stream", "third"]
    assert a.peak == 2


# --- the actor still owns a handed-off job --------------------------------------------------


async def test_killing_the_actor_under_a_handed_off_request_fails_over(autojump_clock):
    a = tracked("a", script=["hang"])
    b = tracked("b")
    async with open_runtime([a, b], config=NO_RETRY) as rt:
        async with trio.open_nursery() as nursery:
            result: list[Response] = []

            async def request() -> None:
                result.append(await rt.complete(HI))

            nursery.start_soon(request)
            await trio.sleep(1.0)
            assert rt.health().actor("a").in_flight == 1
            assert rt.kill("a")
            killed_at = trio.current_time()
        assert trio.current_time() == killed_at  # failed over at once, not at a timeout
        (response,) = result
        assert response.provider == "b"
        assert response.attempts == 2
        # The request's own task ran both attempts.
        assert a.complete_tasks[0] is b.complete_tasks[0]
        assert a.inner.cancelled == 1  # the upstream call of the killed attempt was cancelled
        await trio.sleep(1.0)
        health = rt.health().actor("a")
        assert health.restarts == 1
        assert health.state == "running"
        assert health.in_flight == 0
        # The restarted actor serves again (and hands off again).
        assert (await rt.complete(HI)).provider == "a"


class WrongType(LLMProvider):
    """A buggy provider: ``complete`` returns something that is not a ``Response``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.tasks: list[trio.lowlevel.Task] = []

    async def complete(self, request: Request) -> Response:
        self.calls += 1
        self.tasks.append(trio.lowlevel.current_task())
        await trio.sleep(0.1)
        if self.calls == 1:
            return {"text": "not a response"}  # type: ignore[return-value]
        return answer(self.name)

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent | str]:
        yield TextDelta("unused")


@pytest.mark.parametrize("bug", ["crash", "wrong_type"])
async def test_provider_bug_in_a_handed_off_request_crashes_the_actor_not_the_caller(
    autojump_clock, bug
):
    a: LLMProvider = tracked("a", script=["crash"]) if bug == "crash" else WrongType("a")
    b = tracked("b")
    async with open_runtime([a, b], config=NO_RETRY) as rt:
        me = trio.lowlevel.current_task()
        response = await rt.complete(HI)
        assert response.provider == "b"
        assert response.attempts == 2
        tasks = a.complete_tasks if isinstance(a, Tracked) else a.tasks
        assert tasks == [me]  # the buggy attempt was handed off
        await trio.sleep(1.0)
        health = rt.health().actor("a")
        assert health.restarts == 1
        assert health.state == "running"
        assert health.last_crash is not None
        assert ("MockCrash" if bug == "crash" else "TypeError") in health.last_crash
        assert rt.health().actor("b").restarts == 0
        assert rt.health().actor("router").restarts == 0


async def test_provider_bug_with_one_provider_is_served_after_the_restart(autojump_clock):
    a = tracked("a", script=["crash"])
    async with open_runtime([a], config=NO_RETRY) as rt:
        me = trio.lowlevel.current_task()
        response = await rt.complete(HI, timeout=10)
        assert response.provider == "a"
        assert response.attempts >= 2
        # The crash was handed off; the answer came from a second upstream call (on a worker
        # of the crashing incarnation, or handed off again once it has restarted).
        assert a.complete_tasks[0] is me
        assert a.inner.calls == 2
        assert a.inner.completed == 1
        await trio.sleep(1.0)
        health = rt.health().actor("a")
        assert health.restarts == 1
        assert health.state == "running"


@pytest.mark.parametrize("seed", range(10))
def test_a_bug_in_the_only_provider_is_answered_after_its_restart(seed):
    # The retry must wait for the restart, not race the crashed actor going down: neither
    # fail for want of a provider nor count an attempt that never reached one.
    a = MockProvider(name="a", script=["crash"])
    retry = RetryConfig(backoff=BackoffConfig(max_retries=0), max_rounds=1)

    async def main() -> None:
        async with open_runtime([a], config=RuntimeConfig(seed=1, retry=retry)) as rt:
            response = await rt.complete(HI, timeout=10)
            assert response.provider == "a"
            assert response.attempts == 2

    with scheduler_seeded(seed):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


@pytest.mark.parametrize("seed", range(8))
def test_a_crash_during_shutdown_does_not_escape_open_runtime(seed):
    # Each provider crashes in a handed-off request just as the grace period runs out, so
    # its actor's crash races the cancellation of shutdown, and in some scheduling orders
    # comes out of the actor grouped with it. Either way it is a crash, for the supervisor.
    providers = [tracked(f"p{i}", script=["crash"], latency=1.0) for i in range(6)]
    outcomes: list[str] = []
    owners: set[trio.lowlevel.Task] = set()

    async def request(rt, name: str) -> None:
        owners.add(trio.lowlevel.current_task())
        try:
            await rt.complete(HI, providers=[name], timeout=30)
            outcomes.append("response")
        except SwitchyardError as error:
            outcomes.append(type(error).__name__)

    async def main() -> None:
        async with trio.open_nursery() as outer:
            async with open_runtime(providers, config=RuntimeConfig(grace_period_s=1.0)) as rt:
                for p in providers:
                    outer.start_soon(request, rt, p.name)
                await trio.testing.wait_all_tasks_blocked()
                assert all(p.in_flight == 1 for p in providers)
                assert all(p.complete_tasks[0] in owners for p in providers)  # handed off

    with scheduler_seeded(seed):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(outcomes) == len(providers)
    assert all(p.in_flight == 0 for p in providers)


# --- cancellation and deadlines -------------------------------------------------------------


async def test_caller_cancellation_cancels_the_handed_off_call_at_once(autojump_clock):
    a = tracked("a", script=["hang"])
    async with open_runtime([ProviderSpec(provider=a, max_concurrency=1)], config=NO_RETRY) as rt:
        me = trio.lowlevel.current_task()
        start = trio.current_time()
        with trio.move_on_after(1.0) as scope:
            await rt.complete(HI)
        assert scope.cancelled_caught
        assert trio.current_time() - start == pytest.approx(1.0)
        assert a.complete_tasks == [me]
        # In this very task, so no scheduling is needed for the cancellation to land.
        assert a.inner.cancelled == 1
        assert a.in_flight == 0
        assert rt.health().actor("a").in_flight == 0
        # The single slot is free again, and the next request is served.
        response = await rt.complete(HI)
        assert response.provider == "a"
        assert response.attempts == 1
        assert rt.health().actor("a").restarts == 0


async def test_deadline_of_a_handed_off_request_is_exact(autojump_clock):
    a = tracked("a", script=["hang"])
    async with open_runtime([a], config=NO_RETRY) as rt:
        start = trio.current_time()
        with pytest.raises(Timeout) as info:
            await rt.complete(HI, timeout=0.5)
        assert trio.current_time() == pytest.approx(start + 0.5, abs=1e-9)
        assert "passed its deadline" in str(info.value)
        assert a.complete_tasks == [trio.lowlevel.current_task()]
        assert a.inner.cancelled == 1
        assert rt.health().actor("a").in_flight == 0


async def test_attempt_timeout_of_a_handed_off_attempt_fails_over(autojump_clock):
    a = tracked("a", script=["hang"])
    b = tracked("b")
    specs = [ProviderSpec(provider=a, attempt_timeout_s=0.2), ProviderSpec(provider=b)]
    async with open_runtime(specs, config=NO_RETRY) as rt:
        me = trio.lowlevel.current_task()
        start = trio.current_time()
        response = await rt.complete(HI, timeout=30)
        assert trio.current_time() - start == pytest.approx(0.2, abs=1e-9)
        assert response.provider == "b"
        assert response.attempts == 2
        assert a.complete_tasks == [me]
        assert b.complete_tasks == [me]
        assert a.inner.cancelled == 1
        assert rt.health().actor("a").errors.get("timeout") == 1
        assert rt.health().actor("a").restarts == 0


# --- OneShot --------------------------------------------------------------------------------


def test_oneshot_holds_one_message():
    reply = OneShot()
    first = answer("a")
    reply.send_nowait(first)
    with pytest.raises(trio.WouldBlock):
        reply.send_nowait(answer("b"))
    assert reply.take() is first


def test_oneshot_after_discard_is_broken():
    reply = OneShot()
    reply.discard()
    with pytest.raises(trio.BrokenResourceError):
        reply.send_nowait(answer("a"))
    assert reply.take() is None


async def test_oneshot_after_close_is_closed():
    reply = OneShot()
    reply.close()
    with pytest.raises(trio.ClosedResourceError):
        await reply.send(answer("a"))
    with pytest.raises(trio.ClosedResourceError):
        reply.send_nowait(answer("a"))
    assert await reply.receive() is None


async def test_oneshot_receive_waits_for_a_message_from_another_task(autojump_clock):
    reply = OneShot()
    message = answer("a")
    got: list[object] = []

    async def receiver() -> None:
        got.append(await reply.receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # still waiting
        await trio.sleep(1.0)
        assert got == []
        await reply.send(message)
    assert got == [message]
    assert reply.take() is message


async def test_oneshot_receive_returns_none_when_closed_without_a_message(autojump_clock):
    reply = OneShot()
    got: list[object] = ["nothing yet"]

    async def receiver() -> None:
        got[0] = await reply.receive()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(receiver)
        await trio.testing.wait_all_tasks_blocked()
        assert got == ["nothing yet"]
        reply.close()
    assert got == [None]


async def test_oneshot_receive_returns_a_message_sent_before_close(autojump_clock):
    reply = OneShot()
    message = answer("a")
    reply.send_nowait(message)
    reply.close()
    assert await reply.receive() is message


# --- a property: exactly one outcome, never past the limit ----------------------------------


@dataclass
class Outcomes:
    seen: dict[int, list[str]] = field(default_factory=dict)
    late: list[int] = field(default_factory=list)
    deadlines: dict[int, float] = field(default_factory=dict)

    def record(self, index: int, outcome: str) -> None:
        self.seen.setdefault(index, []).append(outcome)
        if trio.current_time() > self.deadlines[index] + 1e-9:
            self.late.append(index)


async def one_request(rt, outcomes: Outcomes, index: int, *, stream: bool, seconds: float) -> None:
    outcomes.deadlines[index] = trio.current_time() + seconds
    if stream:
        async with rt.stream(HI, timeout=seconds) as events:
            terminals = [e async for e in events if isinstance(e, Finish | ErrorEvent)]
        assert len(terminals) == 1, terminals
        (terminal,) = terminals
        if isinstance(terminal, Finish):
            outcomes.record(index, "response")
        else:
            assert isinstance(terminal.error, SwitchyardError)
            outcomes.record(index, type(terminal.error).__name__)
        return
    try:
        response = await rt.complete(HI, timeout=seconds)
    except SwitchyardError as error:
        outcomes.record(index, type(error).__name__)
    else:
        assert isinstance(response, Response)
        outcomes.record(index, "response")


SCRIPTED: list[Outcome] = ["ok", "fail", "crash", "hang"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    scripts=st.lists(st.lists(st.sampled_from(SCRIPTED), max_size=8), min_size=1, max_size=3),
    limits=st.lists(st.integers(1, 3), min_size=3, max_size=3),
    mailboxes=st.lists(st.integers(0, 2), min_size=3, max_size=3),
    requests=st.lists(
        st.tuples(st.booleans(), st.floats(0, 2.0), st.floats(0.1, 10.0)),
        min_size=1,
        max_size=16,
    ),
    kills=st.lists(st.tuples(st.floats(0, 3.0), st.integers(0, 3)), max_size=5),
    seed=st.integers(0, 2**16),
)
def test_handoffs_keep_one_outcome_per_request_and_the_limit(
    scripts, limits, mailboxes, requests, kills, seed
):
    providers = [
        tracked(f"p{i}", script=script, latency=0.05, chunk_delay=0.01)
        for i, script in enumerate(scripts)
    ]
    specs = [
        ProviderSpec(
            provider=p,
            max_concurrency=limits[i],
            mailbox_capacity=mailboxes[i],
            attempt_timeout_s=1.0,
        )
        for i, p in enumerate(providers)
    ]
    config = RuntimeConfig(
        seed=seed,
        grace_period_s=1.0,
        supervision=SupervisorConfig(max_restarts=3, period_s=10.0, backoff_base_s=0.01),
        retry=RetryConfig(backoff=BackoffConfig(base_s=0.05, max_retries=1)),
    )
    outcomes = Outcomes()
    peaks: dict[str, int] = {}

    async def main() -> None:
        async with open_runtime(specs, config=config) as rt:
            names = rt.actor_names

            async def kill_at(at: float, which: int) -> None:
                await trio.sleep(at)
                rt.kill(names[which % len(names)])

            async def watch() -> None:
                while True:
                    for actor in rt.health().actors[1:]:
                        peaks[actor.name] = max(peaks.get(actor.name, 0), actor.in_flight)
                    await trio.sleep(0.005)

            async def start_at(at: float, index: int, stream: bool, seconds: float) -> None:
                await trio.sleep(at)
                await one_request(rt, outcomes, index, stream=stream, seconds=seconds)

            async with trio.open_nursery() as watcher:
                watcher.start_soon(watch)
                async with trio.open_nursery() as nursery:
                    for at, which in kills:
                        nursery.start_soon(kill_at, at, which)
                    for index, (stream, at, timeout) in enumerate(requests):
                        nursery.start_soon(partial(start_at, at, index, stream, timeout))
                watcher.cancel_scope.cancel()

    # An exception escaping the runtime (or a request's task) fails the run here.
    with scheduler_seeded(seed):
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert sorted(outcomes.seen) == list(range(len(requests)))
    assert all(len(seen) == 1 for seen in outcomes.seen.values()), outcomes.seen
    assert not outcomes.late, f"outcomes past their deadline: {outcomes.late}"
    for spec, p in zip(specs, providers, strict=True):
        assert p.peak <= spec.max_concurrency, (p.name, p.peak, spec.max_concurrency)
        assert peaks.get(p.name, 0) <= spec.max_concurrency
        assert p.in_flight == 0
