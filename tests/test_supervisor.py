from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from actors import ActorFailed, ChildSpec, Supervisor, SupervisorConfig


class Dummy:
    """A child actor for the tests.

    Each incarnation sleeps ``startup`` seconds, records its start time, reports started, lives
    ``life`` seconds and then raises (while it has crashed fewer than ``crashes`` times) or
    returns (``then="return"``). A crash in startup is ``startup_crashes`` incarnations raising
    before they report started.
    """

    def __init__(
        self,
        name: str,
        *,
        startup: float = 0.0,
        life: float = math.inf,
        crashes: float = math.inf,
        then: str = "crash",
        startup_crashes: int = 0,
        log: list[tuple[str, str, int]] | None = None,
    ) -> None:
        self.name = name
        self.startup = startup
        self.life = life
        self.crashes = crashes
        self.then = then
        self.startup_crashes = startup_crashes
        self.log = log if log is not None else []
        self.attempts = 0
        self.starts: list[float] = []
        self.downs = 0

    async def run(self, *, task_status: trio.TaskStatus[None]) -> None:
        self.attempts += 1
        n = self.attempts
        try:
            await trio.sleep(self.startup)
            if n <= self.startup_crashes:
                raise ValueError(f"{self.name} could not start")
            self.starts.append(trio.current_time())
            self.log.append(("up", self.name, n))
            task_status.started()
            if n - self.startup_crashes > self.crashes:
                await trio.sleep_forever()
            await trio.sleep(self.life)
            if self.then == "crash":
                raise RuntimeError(f"boom {n}")
        finally:
            self.log.append(("exit", self.name, n))

    def on_down(self) -> None:
        self.downs += 1
        self.log.append(("down", self.name, self.attempts))

    def spec(self) -> ChildSpec:
        return ChildSpec(self.name, self.run, on_down=self.on_down)


def config(**kw: object) -> SupervisorConfig:
    base: dict[str, object] = {
        "max_restarts": 5,
        "period_s": 10.0,
        "backoff_base_s": 0.5,
        "backoff_max_s": 2.0,
    }
    base.update(kw)
    return SupervisorConfig(**base)  # type: ignore[arg-type]


@asynccontextmanager
async def supervising(sup: Supervisor) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        yield nursery
        nursery.cancel_scope.cancel()


async def test_children_start_in_order_and_run_reports_after_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, str, int]] = []
    a = Dummy("a", startup=3.0, log=log)
    b = Dummy("b", startup=1.0, log=log)
    c = Dummy("c", startup=2.0, log=log)
    sup = Supervisor([a.spec(), b.spec(), c.spec()], config())
    assert [s.state for s in sup.children] == ["starting"] * 3
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        # Sequential start: b only begins its startup once a is running, and so on.
        assert trio.current_time() == pytest.approx(6.0)
        assert [e[1] for e in log if e[0] == "up"] == ["a", "b", "c"]
        assert a.starts == [pytest.approx(3.0)]
        assert b.starts == [pytest.approx(4.0)]
        assert c.starts == [pytest.approx(6.0)]
        assert [s.state for s in sup.children] == ["running"] * 3
        assert [s.spec.name for s in sup.children] == ["a", "b", "c"]
        nursery.cancel_scope.cancel()


async def test_run_not_started_while_a_child_is_still_starting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Dummy("a")
    b = Dummy("b", startup=5.0)
    sup = Supervisor([a.spec(), b.spec()], config())
    reported = False

    async def start_it() -> None:
        nonlocal reported
        async with trio.open_nursery() as inner:
            await inner.start(sup.run)
            reported = True
            await trio.sleep_forever()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(start_it)
        await trio.sleep(2.0)
        assert not reported
        assert sup.status("a").state == "running"
        assert sup.status("b").state == "starting"
        assert sup.kill("b") is False  # not running yet
        await trio.sleep(4.0)
        assert reported
        assert sup.status("b").state == "running"
        nursery.cancel_scope.cancel()


async def test_kill_crashes_a_running_child_which_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Dummy("a")
    b = Dummy("b")
    sup = Supervisor([a.spec(), b.spec()], config(backoff_base_s=0.5))
    async with supervising(sup):
        await trio.sleep(1.0)
        status = sup.status("a")
        assert status.restarts == 0
        assert status.last_crash is None
        assert sup.kill("a", "chaos monkey") is True
        await trio.sleep(0.1)
        assert status.state == "restarting"
        assert status.restarts == 1
        assert status.last_crash == "chaos monkey"
        assert status.last_crash_at == pytest.approx(1.0)
        assert sup.kill("a") is False  # it is waiting out its back-off
        await trio.sleep(1.0)
        assert status.state == "running"
        assert a.starts == [pytest.approx(0.0), pytest.approx(1.5)]
        assert a.downs == 1
        # one_for_one: the sibling was left alone.
        assert b.starts == [pytest.approx(0.0)]
        assert sup.status("b").restarts == 0
        assert sup.kill("a") is True
        await trio.sleep(5.0)
        assert status.restarts == 2
        assert status.last_crash == "killed"
        assert len(a.starts) == 3


async def test_kill_unknown_name_raises_key_error(autojump_clock: trio.testing.MockClock) -> None:
    sup = Supervisor([Dummy("a").spec()], config())
    with pytest.raises(KeyError, match="nope"):
        sup.kill("nope")


async def test_kill_returns_false_for_stopped_and_failed_children(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stops = Dummy("stops", life=1.0, then="return")
    fails = Dummy("fails", life=0.0)
    sup = Supervisor([stops.spec(), fails.spec()], config(max_restarts=0))
    async with supervising(sup):
        await trio.sleep(5.0)
        assert sup.status("stops").state == "stopped"
        assert sup.status("fails").state == "failed"
        assert sup.kill("stops") is False
        assert sup.kill("fails") is False
        assert sup.status("stops").restarts == 0
        assert sup.status("fails").restarts == 1


async def test_child_that_raises_is_restarted(autojump_clock: trio.testing.MockClock) -> None:
    a = Dummy("a", life=2.0, crashes=1)
    sup = Supervisor([a.spec()], config(backoff_base_s=0.25))
    async with supervising(sup):
        await trio.sleep(10.0)
        status = sup.status("a")
        assert status.state == "running"
        assert status.restarts == 1
        assert status.last_crash == "RuntimeError: boom 1"
        assert status.last_crash_at == pytest.approx(2.0)
        assert a.starts == [pytest.approx(0.0), pytest.approx(2.25)]


async def test_child_that_raises_before_starting_is_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Dummy("a", startup=1.0, startup_crashes=2)
    sup = Supervisor([a.spec()], config(backoff_base_s=0.5))
    async with supervising(sup):
        # run only reports started once the child is actually running.
        assert trio.current_time() == pytest.approx(1.0 + 0.5 + 1.0 + 1.0 + 1.0)
        status = sup.status("a")
        assert status.state == "running"
        assert status.restarts == 2
        assert status.last_crash == "ValueError: a could not start"
        assert a.attempts == 3
        assert a.downs == 2


async def test_crash_loop_fails_the_child_but_siblings_keep_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    good = Dummy("good")
    bad = Dummy("bad", life=0.0)
    after = Dummy("after")
    sup = Supervisor(
        [good.spec(), bad.spec(), after.spec()],
        config(max_restarts=3, period_s=10.0, backoff_base_s=0.1, backoff_max_s=0.1),
    )
    async with supervising(sup):
        await trio.sleep(60.0)
        status = sup.status("bad")
        assert status.state == "failed"
        assert status.restarts == 4  # the 4th crash in the window is one too many
        assert len(bad.starts) == 4
        assert status.last_crash == "RuntimeError: boom 4"
        assert sup.status("good").state == "running"
        assert sup.status("after").state == "running"
        assert len(good.starts) == 1
        assert len(after.starts) == 1
        # The supervisor itself is still alive: a surviving child can still be restarted.
        assert sup.kill("good") is True
        await trio.sleep(1.0)
        assert sup.status("good").state == "running"
        assert len(good.starts) == 2


async def test_max_restarts_zero_fails_on_first_crash(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Dummy("a", life=1.0)
    sup = Supervisor([a.spec()], config(max_restarts=0))
    async with supervising(sup):
        await trio.sleep(10.0)
        assert sup.status("a").state == "failed"
        assert len(a.starts) == 1


async def test_crashes_spaced_beyond_period_never_fail(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Dummy("a", life=11.0)
    sup = Supervisor(
        [a.spec()], config(max_restarts=1, period_s=10.0, backoff_base_s=0.1, backoff_max_s=5.0)
    )
    async with supervising(sup):
        await trio.sleep(200.0)
        status = sup.status("a")
        assert status.state != "failed"
        assert status.restarts >= 10
        # Only the latest crash is in the window, so the back-off never grows.
        gaps = [t1 - t0 for t0, t1 in zip(a.starts, a.starts[1:], strict=False)]
        assert gaps == [pytest.approx(11.1)] * len(gaps)


async def test_crashes_within_period_fail_at_the_threshold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Same spacing as above but a window that covers it: fails after max_restarts + 1 crashes.
    a = Dummy("a", life=11.0)
    sup = Supervisor(
        [a.spec()], config(max_restarts=1, period_s=12.0, backoff_base_s=0.1, backoff_max_s=5.0)
    )
    async with supervising(sup):
        await trio.sleep(200.0)
        assert sup.status("a").state == "failed"
        assert sup.status("a").restarts == 2


async def test_backoff_grows_exponentially_and_is_capped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Dummy("a", life=0.0)
    sup = Supervisor(
        [a.spec()],
        config(max_restarts=8, period_s=1000.0, backoff_base_s=1.0, backoff_max_s=5.0),
    )
    async with supervising(sup):
        await trio.sleep(100.0)
        assert sup.status("a").state == "failed"
        assert len(a.starts) == 9
        gaps = [t1 - t0 for t0, t1 in zip(a.starts, a.starts[1:], strict=False)]
        assert gaps == [pytest.approx(g) for g in (1, 2, 4, 5, 5, 5, 5, 5)]


async def test_escalate_raises_actor_failed(autojump_clock: trio.testing.MockClock) -> None:
    good = Dummy("good")
    bad = Dummy("bad", life=1.0)
    sup = Supervisor(
        [good.spec(), bad.spec()],
        config(max_restarts=2, escalate=True, backoff_base_s=0.1),
    )

    def is_bad(exc: ActorFailed) -> bool:
        return exc.name == "bad" and exc.reason == "RuntimeError: boom 3"

    with pytest.RaisesGroup(pytest.RaisesGroup(pytest.RaisesExc(ActorFailed, check=is_bad))):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await trio.sleep(100.0)
    assert sup.status("bad").state == "failed"
    assert len(bad.starts) == 3
    # The sibling was taken down with the supervisor (and its on_down ran).
    assert good.downs == 1
    assert ("exit", "good", 1) in good.log


async def test_no_escalate_does_not_raise(autojump_clock: trio.testing.MockClock) -> None:
    bad = Dummy("bad", life=1.0)
    sup = Supervisor([bad.spec()], config(max_restarts=2, escalate=False, backoff_base_s=0.1))
    async with supervising(sup):
        await trio.sleep(100.0)
        assert sup.status("bad").state == "failed"


@pytest.mark.parametrize(
    ("strategy", "victim", "restarted"),
    [
        ("one_for_one", "a", {"a"}),
        ("one_for_one", "b", {"b"}),
        ("one_for_all", "a", {"a", "b", "c"}),
        ("one_for_all", "b", {"a", "b", "c"}),
        ("one_for_all", "c", {"a", "b", "c"}),
        ("rest_for_one", "a", {"a", "b", "c"}),
        ("rest_for_one", "b", {"b", "c"}),
        ("rest_for_one", "c", {"c"}),
    ],
)
async def test_strategies_restart_the_right_children(
    autojump_clock: trio.testing.MockClock,
    strategy: str,
    victim: str,
    restarted: set[str],
) -> None:
    children = {n: Dummy(n) for n in "abc"}
    sup = Supervisor(
        [c.spec() for c in children.values()], config(strategy=strategy, backoff_base_s=0.5)
    )
    async with supervising(sup):
        await trio.sleep(1.0)
        assert sup.kill(victim) is True
        await trio.sleep(5.0)
        for name, child in children.items():
            expected = 2 if name in restarted else 1
            assert len(child.starts) == expected, name
            assert child.downs == expected - 1, name
            status = sup.status(name)
            assert status.state == "running", name
            # Only the child that crashed counts a crash.
            assert status.restarts == (1 if name == victim else 0), name
            assert status.last_crash == ("killed" if name == victim else None), name
        # Siblings restart at once; the crashed child waits its back-off.
        for name in restarted - {victim}:
            assert children[name].starts[1] == pytest.approx(1.0)
        assert children[victim].starts[1] == pytest.approx(1.5)


async def test_one_for_all_sibling_restarts_do_not_count_toward_intensity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Dummy("a")
    b = Dummy("b", life=1.0, crashes=1)
    c = Dummy("c")
    sup = Supervisor(
        [a.spec(), b.spec(), c.spec()],
        config(strategy="one_for_all", max_restarts=1, period_s=100.0, backoff_base_s=0.1),
    )
    async with supervising(sup):
        await trio.sleep(5.0)
        assert [len(x.starts) for x in (a, b, c)] == [2, 2, 2]
        assert [s.restarts for s in sup.children] == [0, 1, 0]
        # a crashes once now: if its sibling restart had counted, this would be its 2nd
        # crash in the window and, with max_restarts=1, it would fail.
        assert sup.kill("a") is True
        await trio.sleep(5.0)
        assert sup.status("a").state == "running"
        assert sup.status("a").restarts == 1
        assert [len(x.starts) for x in (a, b, c)] == [3, 3, 3]
        assert [s.state for s in sup.children] == ["running"] * 3


async def test_child_returning_normally_is_stopped_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Dummy("a", life=1.0, then="return")
    b = Dummy("b")
    sup = Supervisor([a.spec(), b.spec()], config(strategy="one_for_all"))
    async with supervising(sup):
        await trio.sleep(50.0)
        status = sup.status("a")
        assert status.state == "stopped"
        assert status.restarts == 0
        assert status.last_crash is None
        assert len(a.starts) == 1
        assert a.downs == 1
        # A clean stop is not a crash: no sibling was restarted.
        assert len(b.starts) == 1


async def test_child_returning_during_first_start_lets_run_report(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Dummy("a", life=0.0, then="return")
    b = Dummy("b", startup=1.0)
    sup = Supervisor([a.spec(), b.spec()], config())
    async with supervising(sup):
        assert sup.status("a").state == "stopped"
        assert sup.status("b").state == "running"


async def test_on_down_runs_after_every_incarnation(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[str, str, int]] = []
    a = Dummy("a", life=1.0, crashes=2, log=log)
    sup = Supervisor([a.spec()], config(backoff_base_s=0.5))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(10.0)
        assert sup.kill("a") is True
        await trio.sleep(10.0)
        nursery.cancel_scope.cancel()
    expected = []
    for n in (1, 2, 3, 4):
        expected += [("up", "a", n), ("exit", "a", n), ("down", "a", n)]
    assert log == expected
    assert a.downs == 4


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_restarts", -1),
        ("period_s", -0.5),
        ("period_s", math.nan),
        ("period_s", math.inf),
        ("backoff_base_s", -1.0),
        ("backoff_base_s", math.nan),
        ("backoff_max_s", -1.0),
        ("backoff_max_s", math.inf),
    ],
)
def test_config_validation_names_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        SupervisorConfig(**{field: value})  # type: ignore[arg-type]


def test_config_accepts_zero_values() -> None:
    cfg = SupervisorConfig(max_restarts=0, period_s=0.0, backoff_base_s=0.0, backoff_max_s=0.0)
    assert cfg.max_restarts == 0
    assert SupervisorConfig().strategy == "one_for_one"


def test_duplicate_child_names_rejected() -> None:
    a1, a2 = Dummy("a"), Dummy("a")
    with pytest.raises(ValueError, match="unique"):
        Supervisor([a1.spec(), Dummy("b").spec(), a2.spec()], SupervisorConfig())


def test_status_of_unknown_child_raises_key_error() -> None:
    sup = Supervisor([Dummy("a").spec()], SupervisorConfig())
    assert sup.status("a").spec.name == "a"
    with pytest.raises(KeyError, match="'zzz'"):
        sup.status("zzz")
