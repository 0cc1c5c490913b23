from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors._stats import Ewma, LatencyWindow, WindowedCounter

# --- LatencyWindow ----------------------------------------------------------------------


def test_empty_window_has_no_percentile() -> None:
    w = LatencyWindow(4)
    assert w.count == 0
    assert w.percentile(50) is None


@pytest.mark.parametrize(
    ("p", "expected"),
    [(0, 1.0), (10, 1.0), (10.01, 2.0), (50, 5.0), (90, 9.0), (95, 10.0), (100, 10.0)],
)
def test_nearest_rank(p: float, expected: float) -> None:
    w = LatencyWindow(16)
    for x in [7, 3, 10, 1, 5, 9, 2, 8, 4, 6]:  # insertion order must not matter
        w.add(float(x))
    assert w.count == 10
    assert w.percentile(p) == expected


def test_ring_buffer_keeps_only_most_recent() -> None:
    w = LatencyWindow(3)
    for x in [100.0, 1.0, 2.0, 3.0]:
        w.add(x)
    assert w.count == 3
    assert w.percentile(100) == 3.0  # 100.0 was evicted
    assert w.percentile(0) == 1.0
    w.add(0.5)  # evicts 1.0
    assert (w.percentile(0), w.percentile(50), w.percentile(100)) == (0.5, 2.0, 3.0)


def test_latency_window_validation() -> None:
    with pytest.raises(ValueError, match="size"):
        LatencyWindow(0)
    w = LatencyWindow(2)
    with pytest.raises(ValueError, match="p:"):
        w.percentile(101)
    with pytest.raises(ValueError, match="p:"):
        w.percentile(-1)
    with pytest.raises(ValueError, match="x:"):
        w.add(math.nan)
    assert w.count == 0


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(min_value=1, max_value=20),
    xs=st.lists(st.floats(min_value=0.0, max_value=1e6), max_size=80),
    p=st.floats(min_value=0.0, max_value=100.0),
)
def test_percentile_matches_reference(size: int, xs: list[float], p: float) -> None:
    w = LatencyWindow(size)
    for x in xs:
        w.add(x)
    recent = sorted(xs[-size:]) if xs else []
    assert w.count == len(recent)
    got = w.percentile(p)
    if not recent:
        assert got is None
        return
    # Reference nearest rank: the smallest sample with at least p% of samples <= it.
    n = len(recent)
    expected = next(v for v in recent if sum(1 for u in recent if u <= v) >= p / 100 * n)
    assert got == expected


# --- Ewma -------------------------------------------------------------------------------


def test_ewma_first_sample_then_weighted() -> None:
    e = Ewma(0.25)
    assert e.value is None
    e.update(8.0)
    assert e.value == 8.0
    e.update(0.0)
    assert e.value == 6.0
    e.update(6.0)
    assert e.value == 6.0


def test_ewma_converges_to_a_constant_signal() -> None:
    e = Ewma(0.2)
    e.update(100.0)
    for _ in range(200):
        e.update(1.0)
    assert e.value == pytest.approx(1.0)


def test_ewma_alpha_one_tracks_last() -> None:
    e = Ewma(1.0)
    for x in [3.0, 9.0, 4.0]:
        e.update(x)
    assert e.value == 4.0


@pytest.mark.parametrize("alpha", [0.0, -0.1, 1.5, math.nan])
def test_ewma_alpha_validation(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        Ewma(alpha)


@given(
    alpha=st.floats(min_value=0.01, max_value=1.0),
    xs=st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=1, max_size=50),
)
def test_ewma_stays_within_sample_range(alpha: float, xs: list[float]) -> None:
    e = Ewma(alpha)
    for x in xs:
        e.update(x)
    assert e.value is not None
    assert min(xs) - 1e-6 <= e.value <= max(xs) + 1e-6


# --- WindowedCounter --------------------------------------------------------------------


def test_windowed_counter_expiry_by_bucket() -> None:
    c = WindowedCounter(10.0, now=0.0, buckets=10)
    assert c.bucket_width_s == 1.0
    c.add(0.5)
    c.add(3.2, n=2)
    assert c.total(9.99) == 3
    assert c.total(10.0) == 2  # bucket [0, 1) expired
    assert c.total(12.99) == 2
    assert c.total(13.0) == 0
    c.add(100.0)  # gap longer than the window: everything cleared first
    assert c.total(100.0) == 1


def test_windowed_counter_backwards_clock_does_not_lose_events() -> None:
    c = WindowedCounter(10.0, now=5.0)
    c.add(5.0)
    c.add(4.0)  # clock stepped back: counted in the current bucket
    assert c.total(5.0) == 2


def test_windowed_counter_clear() -> None:
    c = WindowedCounter(1.0, now=0.0)
    c.add(0.0, n=5)
    c.clear()
    assert c.total(0.0) == 0
    c.add(0.05)
    assert c.total(0.05) == 1


@settings(max_examples=200, deadline=None)
@given(
    buckets=st.integers(min_value=1, max_value=12),
    steps=st.lists(st.integers(min_value=0, max_value=30), max_size=100),
)
def test_windowed_counter_matches_bucket_semantics(buckets: int, steps: list[int]) -> None:
    # Integer times with 1 s buckets: an event at bucket e is counted at time t iff
    # floor(t) - buckets < e <= floor(t).
    c = WindowedCounter(float(buckets), now=0.0, buckets=buckets)
    t = 0
    events: list[int] = []
    for dt in steps:
        t += dt
        c.add(float(t))
        events.append(t)
        assert c.total(float(t)) == sum(1 for e in events if t - buckets < e <= t)
