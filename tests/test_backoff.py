from __future__ import annotations

import math
import random

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from actors._backoff import (
    Backoff,
    BackoffConfig,
    RetryBudget,
    RetryBudgetConfig,
    RetryBudgetSnapshot,
)


class FakeClock:
    def __init__(self, t: float = 0.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, dt: float) -> None:
        self.t += dt


class FixedRandom(random.Random):
    """random() always returns ``u``, so delays can be checked exactly."""

    def __init__(self, u: float) -> None:
        super().__init__(0)
        self.u = u

    def random(self) -> float:
        return self.u


# --- BackoffConfig / Backoff ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"base_s": 0.0}, "base_s: expected a finite number > 0, got 0.0"),
        ({"base_s": float("inf")}, "base_s:"),
        ({"base_s": 1.0, "cap_s": 0.5}, "cap_s: expected a finite number >= base_s (1.0)"),
        ({"max_retries": -1}, "max_retries: expected an integer >= 0, got -1"),
        ({"max_retries": 1.0}, "max_retries: expected an integer >= 0, got 1.0"),
    ],
)
def test_backoff_config_validation(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as exc:
        BackoffConfig(**kw)  # type: ignore[arg-type]
    assert str(exc.value).startswith(message)


@pytest.mark.parametrize(
    ("n", "ceiling"),
    [(0, 0.1), (1, 0.2), (2, 0.4), (5, 3.2), (6, 5.0), (7, 5.0), (10_000, 5.0)],
)
def test_delay_is_jitter_times_capped_exponential(n: int, ceiling: float) -> None:
    b = Backoff(BackoffConfig(base_s=0.1, cap_s=5.0), rng=FixedRandom(0.5))
    assert b.delay(n) == pytest.approx(0.5 * ceiling)
    top = Backoff(BackoffConfig(base_s=0.1, cap_s=5.0), rng=FixedRandom(math.nextafter(1.0, 0)))
    assert top.delay(n) < ceiling
    assert top.delay(n) == pytest.approx(ceiling)
    assert Backoff(BackoffConfig(), rng=FixedRandom(0.0)).delay(n) == 0.0


def test_delay_full_jitter_spreads_over_the_range() -> None:
    b = Backoff(BackoffConfig(base_s=0.1, cap_s=5.0), rng=random.Random(1234))
    samples = [b.delay(3) for _ in range(4000)]
    assert all(0.0 <= s < 0.8 for s in samples)
    assert sum(samples) / len(samples) == pytest.approx(0.4, rel=0.05)
    # Full jitter (not "equal jitter"): values near 0 occur too.
    assert min(samples) < 0.01
    assert max(samples) > 0.79


def test_delay_is_deterministic_for_a_seed() -> None:
    a = Backoff(BackoffConfig(), rng=random.Random(7))
    b = Backoff(BackoffConfig(), rng=random.Random(7))
    assert [a.delay(i % 5) for i in range(50)] == [b.delay(i % 5) for i in range(50)]


def test_retry_after_is_a_floor_not_capped() -> None:
    b = Backoff(BackoffConfig(base_s=0.1, cap_s=5.0), rng=FixedRandom(0.5))
    assert b.delay(0, retry_after=3.0) == 3.0
    assert b.delay(0, retry_after=30.0) == 30.0  # beyond cap_s: still honoured
    assert b.delay(6, retry_after=1.0) == 2.5  # jitter above the floor wins
    assert b.delay(0, retry_after=-1.0) == 0.05
    assert b.delay(0, retry_after=math.nan) == 0.05


def test_negative_retry_number_rejected() -> None:
    with pytest.raises(ValueError, match="retry_number"):
        Backoff(BackoffConfig(), rng=random.Random(0)).delay(-1)


def test_tiny_base_huge_cap_does_not_overflow() -> None:
    b = Backoff(BackoffConfig(base_s=5e-324, cap_s=1e300), rng=FixedRandom(0.5))
    assert b.delay(5000) == 0.5e300
    assert b.delay(10**9) == 0.5e300
    assert b.delay(3) == 0.5 * (5e-324 * 8)


# --- RetryBudget ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"ratio": -0.1}, "ratio: expected a finite number >= 0, got -0.1"),
        ({"window_s": 0}, "window_s: expected a finite number > 0, got 0"),
        ({"min_retries": -1}, "min_retries: expected an integer >= 0, got -1"),
    ],
)
def test_retry_budget_config_validation(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as exc:
        RetryBudgetConfig(**kw)  # type: ignore[arg-type]
    assert str(exc.value).startswith(message)


def test_min_retries_allowed_without_traffic() -> None:
    rb = RetryBudget(RetryBudgetConfig(ratio=0.2, min_retries=3), clock=FakeClock())
    assert [rb.try_spend() for _ in range(5)] == [True, True, True, False, False]
    assert rb.snapshot() == RetryBudgetSnapshot(
        requests_in_window=0, retries_in_window=3, ratio=0.2
    )


def test_ratio_of_requests_allowed() -> None:
    rb = RetryBudget(RetryBudgetConfig(ratio=0.2, min_retries=3), clock=FakeClock())
    for _ in range(100):
        rb.record_request()
    assert sum(rb.try_spend() for _ in range(50)) == 20
    rb.record_request()  # 101 * 0.2 = 20.2: still no room for a 21st
    assert not rb.try_spend()
    for _ in range(4):
        rb.record_request()  # 105 * 0.2 = 21
    assert rb.try_spend()
    assert not rb.try_spend()


def test_zero_ratio_allows_only_min_retries() -> None:
    rb = RetryBudget(RetryBudgetConfig(ratio=0.0, min_retries=1), clock=FakeClock())
    for _ in range(1000):
        rb.record_request()
    assert [rb.try_spend(), rb.try_spend()] == [True, False]


async def test_budget_refills_as_window_slides_on_trio_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rb = RetryBudget(
        RetryBudgetConfig(ratio=0.5, window_s=10.0, min_retries=0), clock=trio.current_time
    )
    for _ in range(10):
        rb.record_request()
    assert sum(rb.try_spend() for _ in range(10)) == 5
    await trio.sleep(5.0)
    assert not rb.try_spend()  # still inside the window
    await trio.sleep(5.0)
    snap = rb.snapshot()
    assert (snap.requests_in_window, snap.retries_in_window) == (0, 0)
    assert not rb.try_spend()  # no traffic and min_retries=0
    rb.record_request()
    rb.record_request()
    assert rb.try_spend()


_events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=12),  # time advance in quarter seconds
        st.sampled_from(["request", "request", "retry"]),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.25, 0.5, 1.0, 1.5]),
    min_retries=st.integers(min_value=0, max_value=4),
    events=_events,
)
def test_retries_never_exceed_budget_in_any_window(
    ratio: float, min_retries: int, events: list[tuple[int, str]]
) -> None:
    # window_s=10 in 10 buckets: bucket width b=1 s; quarter-second times keep every
    # bucket boundary exact. The documented guarantee, for each retry allowed at time t:
    #   retries in (t - 10 + b, t]  <=  max(min_retries, ratio * requests in [t - 10, t]).
    # The b-second slack is bucket granularity: the window spans between 9 and 10 s.
    window, width = 10.0, 1.0
    clock = FakeClock(0.0)
    rb = RetryBudget(
        RetryBudgetConfig(ratio=ratio, window_s=window, min_retries=min_retries), clock=clock
    )
    requests: list[float] = []
    retries: list[float] = []
    for quarters, kind in events:
        clock.advance(quarters / 4)
        t = clock()
        if kind == "request":
            rb.record_request()
            requests.append(t)
            continue
        allowed = rb.try_spend()
        if allowed:
            retries.append(t)
            spent = sum(1 for r in retries if t - window + width < r <= t)
            seen = sum(1 for q in requests if t - window <= q <= t)
            assert spent <= max(min_retries, ratio * seen)
        else:
            # Refusals are justified too: even over the longest span the window can
            # cover, the retry would exceed the budget of the shortest span.
            spent = sum(1 for r in retries if t - window <= r <= t)
            seen = sum(1 for q in requests if t - window + width < q <= t)
            assert spent + 1 > max(min_retries, ratio * seen)
