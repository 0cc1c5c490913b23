from __future__ import annotations

import math

import pytest
import trio
import trio.testing
from hypothesis import example, given, settings
from hypothesis import strategies as st

from actors._limiter import LimiterSnapshot, RateLimiter, TokenBucket


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


# --- TokenBucket ------------------------------------------------------------------------


def test_bucket_starts_full_and_capacity_defaults_to_rate() -> None:
    clock = FakeClock()
    b = TokenBucket(120, clock=clock)
    assert b.capacity == 120.0
    assert b.level() == 120.0
    assert b.try_take(120)
    assert not b.try_take(1)


def test_burst_sets_capacity() -> None:
    clock = FakeClock()
    b = TokenBucket(600, clock=clock, burst=5)
    assert b.capacity == 5.0
    assert sum(b.try_take() for _ in range(10)) == 5


def test_refills_continuously_at_rate_per_second_up_to_capacity() -> None:
    clock = FakeClock()
    b = TokenBucket(60, clock=clock, burst=10)  # 1 token/s
    assert b.try_take(10)
    clock.advance(2.5)
    assert b.level() == pytest.approx(2.5)
    assert b.try_take(2)
    assert not b.try_take(1)
    clock.advance(1000)
    assert b.level() == 10.0  # capped


def test_wait_time_reports_deficit_over_rate() -> None:
    clock = FakeClock()
    b = TokenBucket(60, clock=clock, burst=10)  # 1 token/s
    assert b.wait_time(3) == 0.0
    assert b.try_take(10)
    assert b.wait_time(3) == pytest.approx(3.0)
    clock.advance(1)
    assert b.wait_time(3) == pytest.approx(2.0)


def test_wait_time_infinite_when_amount_exceeds_capacity() -> None:
    b = TokenBucket(60, clock=FakeClock(), burst=10)
    assert b.wait_time(10.5) == math.inf
    assert not b.try_take(10.5)
    assert b.level() == 10.0  # a refused take takes nothing


def test_negative_or_nan_amount_rejected() -> None:
    b = TokenBucket(60, clock=FakeClock())
    with pytest.raises(ValueError, match="amount"):
        b.try_take(-1)
    with pytest.raises(ValueError, match="amount"):
        b.wait_time(math.nan)


@pytest.mark.parametrize(("rpm", "burst"), [(0, None), (-1, None), (math.inf, None), (60, 0)])
def test_invalid_construction(rpm: float, burst: float | None) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rpm, clock=FakeClock(), burst=burst)


def test_adjust_allows_debt_but_never_exceeds_capacity() -> None:
    clock = FakeClock()
    b = TokenBucket(60, clock=clock, burst=10)  # 1 token/s
    b.adjust(+5)
    assert b.level() == 10.0
    b.adjust(-25)
    assert b.level() == -15.0
    # Debt must be repaid before anything is admitted, even a zero-size take.
    assert not b.try_take(0)
    assert b.wait_time(1) == pytest.approx(16.0)
    clock.advance(15.5)
    assert not b.try_take(1)
    clock.advance(0.5)
    assert b.try_take(1)


def test_pause_blocks_admission_and_never_shortens() -> None:
    clock = FakeClock(0.0)
    b = TokenBucket(60, clock=clock, burst=10)
    b.pause_until(5.0)
    b.pause_until(2.0)  # earlier: ignored
    b.pause_until(math.nan)  # ignored
    assert b.pause_remaining() == 5.0
    assert b.wait_time(1) == 5.0
    assert not b.try_take(1)
    clock.advance(4.999)
    assert not b.try_take(1)
    clock.advance(0.001)
    assert b.try_take(1)
    assert b.pause_remaining() == 0.0


def test_wait_time_accounts_for_both_pause_and_deficit() -> None:
    clock = FakeClock(0.0)
    b = TokenBucket(60, clock=clock, burst=10)
    assert b.try_take(10)
    b.pause_until(2.0)
    assert b.wait_time(5) == pytest.approx(5.0)  # tokens are the binding constraint
    assert b.wait_time(1) == pytest.approx(2.0)  # pause is the binding constraint


async def test_waiting_wait_time_on_trio_clock_is_enough(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Odd rates and amounts so float rounding would bite if wait_time undershot.
    b = TokenBucket(7.3, clock=trio.current_time, burst=3.7)
    start = trio.current_time()
    admitted = 0.0
    for amount in [0.37, 1.1, 2.9, 0.01, 3.7, 1.3] * 5:
        assert b.wait_time(amount) >= 0.0
        await trio.sleep(b.wait_time(amount))
        assert b.try_take(amount), amount
        admitted += amount
    elapsed = trio.current_time() - start
    # Waiting exactly wait_time each time wastes nothing: the whole run takes as long as
    # the rate forces, (admitted - initial burst) / rate, to float precision.
    assert elapsed == pytest.approx((admitted - 3.7) / (7.3 / 60), rel=1e-9)


async def test_wait_time_honours_pause_on_trio_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    b = TokenBucket(60, clock=trio.current_time)
    until = trio.current_time() + 1 / 3  # not exactly representable as a sum
    b.pause_until(until)
    assert not b.try_take()
    await trio.sleep(b.wait_time())
    assert trio.current_time() >= until
    assert b.try_take()


# --- properties -------------------------------------------------------------------------

_ops = st.lists(
    st.tuples(
        st.sampled_from(["take", "take", "take", "pause", "charge"]),
        st.floats(min_value=0.0, max_value=5.0),  # time advance before the op
        st.floats(min_value=0.0, max_value=12.0),  # amount / pause length / charge
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    rpm=st.floats(min_value=0.5, max_value=600.0),
    burst=st.none() | st.floats(min_value=0.5, max_value=20.0),
    ops=_ops,
)
def test_bucket_never_exceeds_token_bucket_bound_and_respects_pauses(
    rpm: float, burst: float | None, ops: list[tuple[str, float, float]]
) -> None:
    clock = FakeClock(0.0)
    b = TokenBucket(rpm, clock=clock, burst=burst)
    rate = rpm / 60.0
    paused_until = -math.inf
    admitted: list[tuple[float, float]] = []
    for kind, dt, x in ops:
        clock.advance(dt)
        now = clock()
        if kind == "pause":
            b.pause_until(now + x)
            paused_until = max(paused_until, now + x)
        elif kind == "charge":
            b.adjust(-x)
        else:
            ready = b.wait_time(x) == 0.0
            took = b.try_take(x)
            assert took == ready  # wait_time and try_take agree exactly
            if took:
                assert now >= paused_until
                admitted.append((now, x))
    # Every window [t_i, t_j] between admissions holds at most capacity + rate * w.
    prefix = [0.0]
    for _, amount in admitted:
        prefix.append(prefix[-1] + amount)
    for i in range(len(admitted)):
        for j in range(i, len(admitted)):
            total = prefix[j + 1] - prefix[i]
            bound = b.capacity + rate * (admitted[j][0] - admitted[i][0])
            assert total <= bound + 1e-9 * max(1.0, bound)


@settings(max_examples=200, deadline=None)
@given(
    rpm=st.floats(min_value=0.5, max_value=600.0),
    burst=st.floats(min_value=0.5, max_value=20.0),
    dts=st.lists(st.floats(min_value=0.0, max_value=3.0), min_size=1, max_size=60),
)
def test_greedy_taker_gets_exactly_the_refill(rpm: float, burst: float, dts: list[float]) -> None:
    # The bound is tight, not just safe: a taker that drains the bucket at every step gets
    # the initial burst plus each step's refill (capped at capacity), no more, no less.
    clock = FakeClock(0.0)
    b = TokenBucket(rpm, clock=clock, burst=burst)
    rate = rpm / 60.0
    taken = 0.0
    for dt in dts:
        clock.advance(dt)
        level = b.level()
        assert b.try_take(level)
        assert not b.try_take(1e-6)  # drained
        taken += level
    expected = burst + sum(min(dt * rate, burst) for dt in dts[1:])  # starts full
    assert taken == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert taken <= burst + rate * sum(dts) + 1e-9


@settings(max_examples=300, deadline=None)
@given(
    start=st.floats(min_value=0.0, max_value=1e6),
    until=st.floats(min_value=0.0, max_value=2e6),
    debt=st.floats(min_value=0.0, max_value=1e4),
    rpm=st.floats(min_value=0.5, max_value=1e6),
    amount=st.floats(min_value=0.0, max_value=1.0),
)
# A pause end for which until - start rounds down: start + (until - start) < until.
@example(start=0.2579690924717717, until=34.164417796853165, debt=0.0, rpm=60.0, amount=1.0)
def test_sleeping_wait_time_always_suffices(
    start: float, until: float, debt: float, rpm: float, amount: float
) -> None:
    # Float rounding must never leave a caller short after sleeping wait_time: that would
    # make it spin on ever tinier waits (or forever, once they vanish next to the clock).
    clock = FakeClock(start)
    b = TokenBucket(rpm, clock=clock, burst=1.0)
    b.pause_until(until)
    b.adjust(-debt)
    wait = b.wait_time(amount)
    if wait > 0.0:
        assert not b.try_take(amount)
    clock.advance(wait)
    assert b.try_take(amount)


# --- RateLimiter ------------------------------------------------------------------------


def test_limiter_unlimited_always_admits() -> None:
    lim = RateLimiter(rpm=None, tpm=None, clock=FakeClock())
    assert all(lim.try_acquire(10**9) for _ in range(1000))
    assert lim.wait_time(10**9) == 0.0
    assert lim.snapshot() == LimiterSnapshot(
        rpm=None, tpm=None, requests_available=None, tokens_available=None, paused_for_s=0.0
    )


def test_limiter_wait_time_is_max_of_both_limits() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=60, tpm=600, clock=clock)  # 1 req/s, 10 tok/s
    assert lim.try_acquire(600)
    # requests: 59 left; tokens: 0 left -> tokens bind.
    assert lim.wait_time(50) == pytest.approx(5.0)
    lim2 = RateLimiter(rpm=2, tpm=6000, clock=clock)  # 1 req / 30 s
    assert lim2.try_acquire(1)
    assert lim2.try_acquire(1)
    assert lim2.wait_time(1) == pytest.approx(30.0)  # requests bind


def test_limiter_try_acquire_is_all_or_nothing() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=60, tpm=100, clock=clock)
    assert lim.try_acquire(90)
    before = lim.snapshot()
    assert not lim.try_acquire(20)  # request available, tokens not
    after = lim.snapshot()
    assert after.requests_available == before.requests_available == 59.0
    assert after.tokens_available == before.tokens_available == 10.0

    lim2 = RateLimiter(rpm=1, tpm=1000, clock=clock)
    assert lim2.try_acquire(10)
    assert not lim2.try_acquire(10)  # tokens available, request not
    assert lim2.snapshot().tokens_available == 990.0


def test_limiter_fractional_rpm_still_admits_single_requests() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=0.5, tpm=None, clock=clock)
    assert lim.try_acquire(0)
    assert not lim.try_acquire(0)
    assert lim.wait_time(0) == pytest.approx(120.0)
    clock.advance(120.0)
    assert lim.try_acquire(0)


def test_limiter_too_many_tokens_is_never() -> None:
    lim = RateLimiter(rpm=None, tpm=1000, clock=FakeClock())
    assert lim.wait_time(1001) == math.inf
    assert not lim.try_acquire(1001)


def test_reconcile_underestimate_is_debt_and_overestimate_refunded() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=None, tpm=600, clock=clock)  # 10 tok/s
    assert lim.try_acquire(500)
    lim.reconcile(estimated=500, actual=300)
    assert lim.snapshot().tokens_available == 300.0
    lim.reconcile(estimated=100, actual=1000)
    assert lim.snapshot().tokens_available == -600.0
    assert not lim.try_acquire(0)
    assert lim.wait_time(1) == pytest.approx(60.1)
    lim.reconcile(estimated=10_000, actual=0)  # refund cannot overfill
    assert lim.snapshot().tokens_available == 600.0


def test_reconcile_without_token_limit_is_noop() -> None:
    lim = RateLimiter(rpm=10, tpm=None, clock=FakeClock())
    lim.reconcile(estimated=0, actual=10**6)
    assert lim.try_acquire(10**6)


def test_limiter_pause_applies_even_without_limits() -> None:
    clock = FakeClock(0.0)
    lim = RateLimiter(rpm=None, tpm=None, clock=clock)
    lim.pause_for(3.0)
    lim.pause_for(1.0)  # does not shorten
    assert not lim.try_acquire(1)
    assert lim.wait_time(1) == 3.0
    assert lim.snapshot().paused_for_s == 3.0
    clock.advance(3.0)
    assert lim.try_acquire(1)
    assert lim.snapshot().paused_for_s == 0.0


def test_limiter_pause_blocks_both_buckets_without_consuming() -> None:
    clock = FakeClock(0.0)
    lim = RateLimiter(rpm=60, tpm=600, clock=clock)
    lim.pause_until(2.0)
    assert not lim.try_acquire(1)
    snap = lim.snapshot()
    assert snap.requests_available == 60.0
    assert snap.tokens_available == 600.0
    assert lim.wait_time(1) == 2.0


def test_update_from_headers_lowers_but_never_raises() -> None:
    clock = FakeClock()
    lim = RateLimiter(rpm=100, tpm=10_000, clock=clock)
    lim.update_from_headers(
        remaining_requests=40, remaining_tokens=5000, reset_requests_s=9.0, reset_tokens_s=9.0
    )
    snap = lim.snapshot()
    assert snap.requests_available == 40.0
    assert snap.tokens_available == 5000.0
    assert snap.paused_for_s == 0.0  # budget not exhausted: resets are not a pause
    lim.update_from_headers(
        remaining_requests=90, remaining_tokens=None, reset_requests_s=None, reset_tokens_s=None
    )
    assert lim.snapshot().requests_available == 40.0


def test_update_from_headers_exhausted_pauses_until_reset() -> None:
    clock = FakeClock(0.0)
    lim = RateLimiter(rpm=None, tpm=100_000, clock=clock)
    lim.update_from_headers(
        remaining_requests=None, remaining_tokens=0, reset_requests_s=None, reset_tokens_s=7.5
    )
    assert lim.snapshot().tokens_available == 0.0
    # Local refill would allow 100 tokens after 0.06 s; the provider's reset is later.
    assert lim.wait_time(100) == 7.5
    clock.advance(7.0)
    assert not lim.try_acquire(100)
    clock.advance(0.5)
    assert lim.try_acquire(100)

    lim2 = RateLimiter(rpm=None, tpm=None, clock=clock)
    lim2.update_from_headers(
        remaining_requests=0, remaining_tokens=None, reset_requests_s=2.0, reset_tokens_s=None
    )
    assert not lim2.try_acquire(1)
    assert lim2.snapshot().paused_for_s == 2.0


async def test_limiter_429_pause_on_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    lim = RateLimiter(rpm=600, tpm=60_000, clock=trio.current_time)
    start = trio.current_time()
    lim.pause_for(2.5)
    assert not lim.try_acquire(100)
    await trio.sleep(lim.wait_time(100))
    assert lim.try_acquire(100)
    assert trio.current_time() - start == pytest.approx(2.5)


async def test_limiter_paces_steady_stream_on_trio_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # 60 rpm, burst 60: 120 requests need 60 s beyond the initial burst.
    lim = RateLimiter(rpm=60, tpm=None, clock=trio.current_time)
    start = trio.current_time()
    for _ in range(120):
        await trio.sleep(lim.wait_time(0))
        assert lim.try_acquire(0)
    assert trio.current_time() - start == pytest.approx(60.0)
