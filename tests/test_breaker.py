from __future__ import annotations

import pytest
import trio
import trio.testing

from actors._breaker import BreakerConfig, BreakerSnapshot, CircuitBreaker


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


def make(clock: FakeClock, **kw: float) -> CircuitBreaker:
    return CircuitBreaker(BreakerConfig(**kw), clock=clock)  # type: ignore[arg-type]


def call(b: CircuitBreaker, ok: bool) -> None:
    assert b.try_acquire()
    if ok:
        b.record_success()
    else:
        b.record_failure()


def trip(b: CircuitBreaker) -> None:
    for _ in range(b.config.min_requests):
        call(b, ok=False)
    assert b.state == "open"


# --- config -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"failure_threshold": 1.5}, "failure_threshold: expected a number in (0, 1], got 1.5"),
        ({"failure_threshold": 0.0}, "failure_threshold: expected a number in (0, 1], got 0.0"),
        ({"failure_threshold": float("nan")}, "failure_threshold:"),
        ({"min_requests": 0}, "min_requests: expected an integer >= 1, got 0"),
        ({"min_requests": 2.5}, "min_requests: expected an integer >= 1, got 2.5"),
        ({"min_requests": True}, "min_requests:"),
        ({"window_s": 0.0}, "window_s: expected a finite number > 0, got 0.0"),
        ({"window_s": float("inf")}, "window_s:"),
        ({"cooldown_s": -1.0}, "cooldown_s: expected a finite number > 0, got -1.0"),
        ({"cooldown_s": 10.0, "max_cooldown_s": 5.0}, "max_cooldown_s: expected a finite"),
        ({"half_open_probes": 0}, "half_open_probes: expected an integer >= 1, got 0"),
    ],
)
def test_config_validation_names_the_field(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as exc:
        BreakerConfig(**kw)  # type: ignore[arg-type]
    assert str(exc.value).startswith(message)


def test_config_defaults() -> None:
    c = BreakerConfig()
    assert (c.failure_threshold, c.min_requests, c.window_s) == (0.5, 10, 10.0)
    assert (c.cooldown_s, c.max_cooldown_s, c.half_open_probes) == (5.0, 60.0, 2)


# --- closed -----------------------------------------------------------------------------


def test_does_not_open_before_min_requests() -> None:
    clock = FakeClock()
    b = make(clock, min_requests=10)
    for _ in range(9):
        call(b, ok=False)
    assert b.state == "closed"
    assert b.would_allow()
    call(b, ok=False)
    assert b.state == "open"
    assert b.snapshot().opened_count == 1


def test_opens_at_threshold_not_below() -> None:
    clock = FakeClock()
    b = make(clock, failure_threshold=0.5, min_requests=10)
    for _ in range(6):
        call(b, ok=True)
    for _ in range(4):
        call(b, ok=False)
    snap = b.snapshot()
    assert (snap.requests_in_window, snap.failures_in_window) == (10, 4)
    assert snap.failure_rate == 0.4
    assert b.state == "closed"
    call(b, ok=False)  # 5 / 11 < 0.5
    assert b.state == "closed"
    call(b, ok=False)  # 6 / 12 == 0.5 -> opens (>=)
    assert b.state == "open"


def test_successes_alone_never_open() -> None:
    # Whatever the caller decides is not a failure (e.g. a 4xx) goes to record_success
    # and can only lower the failure rate.
    clock = FakeClock()
    b = make(clock, failure_threshold=0.1, min_requests=1)
    for _ in range(1000):
        call(b, ok=True)
    assert b.state == "closed"
    assert b.snapshot().total_successes == 1000
    call(b, ok=False)  # 1 / 1001 < 0.1
    assert b.state == "closed"


def test_failures_age_out_of_the_window() -> None:
    clock = FakeClock()
    b = make(clock, min_requests=10, window_s=10.0)
    for _ in range(9):
        call(b, ok=False)
    clock.advance(10.0)
    snap = b.snapshot()
    assert (snap.requests_in_window, snap.failures_in_window) == (0, 0)
    assert snap.total_failures == 9
    call(b, ok=False)
    assert b.state == "closed"


def test_window_expires_by_whole_buckets() -> None:
    # 10 buckets of 1 s: an event at t=0.5 is still counted at t=9.99 (age 9.49 s) and
    # gone at t=10.0; one at t=0.99 also goes at t=10.0 (age 9.01 s).
    clock = FakeClock(0.5)
    b = make(clock, window_s=10.0)
    call(b, ok=False)
    clock.t = 0.99
    call(b, ok=True)
    clock.t = 9.99
    assert b.snapshot().requests_in_window == 2
    clock.t = 10.0
    assert b.snapshot().requests_in_window == 0


def test_closed_always_allows_and_counts_no_rejections() -> None:
    b = make(FakeClock())
    assert all(b.try_acquire() for _ in range(100))
    assert b.snapshot().rejected_count == 0


# --- open / half-open -------------------------------------------------------------------


def test_open_rejects_and_counts_rejections() -> None:
    clock = FakeClock()
    b = make(clock, cooldown_s=5.0)
    trip(b)
    assert not b.would_allow()
    assert not b.would_allow()  # non-consuming: not counted
    assert [b.try_acquire() for _ in range(3)] == [False, False, False]
    snap = b.snapshot()
    assert snap.rejected_count == 3
    assert snap.open_until_s == 5.0
    clock.advance(2.0)
    assert b.snapshot().open_until_s == 3.0


async def test_open_to_half_open_after_cooldown_on_trio_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    b = CircuitBreaker(BreakerConfig(cooldown_s=5.0), clock=trio.current_time)
    trip(b)
    await trio.sleep(4.9)
    assert b.state == "open"
    assert not b.try_acquire()
    await trio.sleep(0.1)
    assert b.state == "half_open"
    assert b.snapshot().open_until_s is None
    assert b.try_acquire()


def test_half_open_probe_limit() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=2, cooldown_s=1.0)
    trip(b)
    clock.advance(1.0)
    assert b.would_allow()
    assert b.try_acquire()
    assert b.try_acquire()
    assert not b.would_allow()
    assert not b.try_acquire()
    assert b.snapshot().rejected_count == 1
    assert b.state == "half_open"


def test_half_open_closes_after_enough_successes_with_fresh_window() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=2, cooldown_s=1.0)
    trip(b)
    clock.advance(1.0)
    assert b.try_acquire()
    b.record_success()
    assert b.state == "half_open"  # one success is not enough
    assert b.try_acquire()  # its slot was freed
    assert b.try_acquire()
    b.record_success()
    assert b.state == "closed"
    snap = b.snapshot()
    assert (snap.requests_in_window, snap.failures_in_window) == (0, 0)
    assert snap.total_failures == 10
    # The fresh window must again see min_requests before opening.
    for _ in range(9):
        call(b, ok=False)
    assert b.state == "closed"


def test_half_open_failure_reopens_with_doubled_cooldown_capped_and_reset_on_close() -> None:
    clock = FakeClock()
    b = make(clock, cooldown_s=5.0, max_cooldown_s=12.0, half_open_probes=1)
    trip(b)
    assert b.snapshot().open_until_s == 5.0
    expected = [10.0, 12.0, 12.0]
    for cooldown in expected:
        clock.advance(b.snapshot().open_until_s or 0.0)
        assert b.try_acquire()
        b.record_failure()
        assert b.state == "open"
        assert b.snapshot().open_until_s == cooldown
    clock.advance(11.999)
    assert b.state == "open"
    clock.advance(0.001)
    assert b.try_acquire()
    b.record_success()
    assert b.state == "closed"
    trip(b)
    assert b.snapshot().open_until_s == 5.0  # cool-down reset by closing
    assert b.snapshot().opened_count == 5


async def test_doubled_cooldown_on_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    b = CircuitBreaker(
        BreakerConfig(cooldown_s=1.0, max_cooldown_s=60.0, half_open_probes=1),
        clock=trio.current_time,
    )
    trip(b)
    for cooldown in [1.0, 2.0, 4.0, 8.0]:
        await trio.sleep(cooldown - 0.01)
        assert not b.would_allow()
        await trio.sleep(0.01)
        assert b.would_allow()
        assert b.try_acquire()
        b.record_failure()


def test_any_half_open_failure_reopens_even_with_successes() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=3, cooldown_s=1.0)
    trip(b)
    clock.advance(1.0)
    assert b.try_acquire()
    assert b.try_acquire()
    b.record_success()
    b.record_failure()
    assert b.state == "open"
    assert b.snapshot().open_until_s == 2.0


def test_release_frees_a_probe_and_records_nothing() -> None:
    clock = FakeClock()
    b = make(clock, half_open_probes=1, cooldown_s=1.0)
    trip(b)
    clock.advance(1.0)
    assert b.try_acquire()
    assert not b.would_allow()
    before = b.snapshot()
    b.release()
    after = b.snapshot()
    assert b.state == "half_open"
    assert b.would_allow()
    assert (after.total_successes, after.total_failures) == (
        before.total_successes,
        before.total_failures,
    )
    assert b.try_acquire()
    b.record_success()
    assert b.state == "closed"


def test_release_in_closed_changes_nothing() -> None:
    b = make(FakeClock())
    assert b.try_acquire()
    b.release()
    snap = b.snapshot()
    assert (snap.requests_in_window, snap.total_successes, snap.total_failures) == (0, 0, 0)


def test_late_verdicts_while_open_only_update_totals() -> None:
    # Calls admitted while closed can finish after the breaker opened.
    clock = FakeClock()
    b = make(clock, cooldown_s=5.0)
    trip(b)
    b.record_success()
    b.record_failure()
    snap = b.snapshot()
    assert snap.state == "open"
    assert snap.open_until_s == 5.0  # a late failure does not extend the cool-down
    assert (snap.total_successes, snap.total_failures) == (1, 11)
    # ... or after it went half-open, with no probe in flight yet.
    clock.advance(5.0)
    b.record_failure()
    b.record_success()
    b.record_success()
    assert b.state == "half_open"
    assert b.would_allow()


def test_snapshot_fields() -> None:
    clock = FakeClock()
    b = make(clock, min_requests=4)
    call(b, ok=True)
    call(b, ok=False)
    call(b, ok=False)
    call(b, ok=False)
    assert not b.try_acquire()
    assert b.snapshot() == BreakerSnapshot(
        state="open",
        failures_in_window=3,
        requests_in_window=4,
        failure_rate=0.75,
        opened_count=1,
        rejected_count=1,
        total_successes=1,
        total_failures=3,
        open_until_s=5.0,
    )
