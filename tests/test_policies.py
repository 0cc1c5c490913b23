from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors import (
    LatencyPolicy,
    LeastBusyPolicy,
    PriorityPolicy,
    RoundRobinPolicy,
    WeightedPolicy,
    make_policy,
)


@dataclass(frozen=True)
class Cand:
    name: str
    priority: int = 0
    weight: float = 1.0
    in_flight: int = 0
    max_concurrency: int = 1
    latency_estimate: float | None = None


def names(seq: object) -> list[str]:
    return [c.name for c in seq]  # type: ignore[attr-defined]


# --- priority ----------------------------------------------------------------------------------


def test_priority_orders_by_priority() -> None:
    cands = (Cand("a", priority=3), Cand("b", priority=1), Cand("c", priority=2))
    assert names(PriorityPolicy().order(cands)) == ["b", "c", "a"]


def test_priority_ties_keep_declaration_order() -> None:
    cands = (
        Cand("x", priority=1),
        Cand("y", priority=0),
        Cand("z", priority=1),
        Cand("w", priority=0),
    )
    assert names(PriorityPolicy().order(cands)) == ["y", "w", "x", "z"]


def test_priority_follows_a_new_candidate_list() -> None:
    policy = PriorityPolicy()
    first = (Cand("a", priority=1), Cand("b", priority=2))
    second = (Cand("a", priority=2), Cand("b", priority=1))
    assert names(policy.order(first)) == ["a", "b"]
    assert names(policy.order(first)) == ["a", "b"]
    assert names(policy.order(second)) == ["b", "a"]
    assert names(policy.order(first)) == ["a", "b"]


def test_priority_does_not_mutate_input() -> None:
    cands = [Cand("a", priority=2), Cand("b", priority=1)]
    PriorityPolicy().order(cands)
    assert names(cands) == ["a", "b"]


@given(st.lists(st.integers(-5, 5), max_size=8))
def test_priority_is_a_stable_sort(priorities: list[int]) -> None:
    cands = tuple(Cand(f"p{i}", priority=p) for i, p in enumerate(priorities))
    ordered = PriorityPolicy().order(cands)
    assert list(ordered) == sorted(cands, key=lambda c: (c.priority, int(c.name[1:])))


# --- round robin -------------------------------------------------------------------------------


def test_round_robin_rotates() -> None:
    cands = (Cand("a"), Cand("b"), Cand("c"))
    policy = RoundRobinPolicy()
    got = [names(policy.order(cands)) for _ in range(4)]
    assert got == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]


@pytest.mark.parametrize(("n", "k"), [(1, 5), (2, 7), (4, 25), (5, 3)])
def test_round_robin_each_first_equally_often(n: int, k: int) -> None:
    cands = tuple(Cand(f"p{i}") for i in range(n))
    policy = RoundRobinPolicy()
    firsts = Counter(policy.order(cands)[0].name for _ in range(n * k))
    assert firsts == {c.name: k for c in cands}


def test_round_robin_empty_and_changing_size() -> None:
    policy = RoundRobinPolicy()
    assert list(policy.order(())) == []
    three = (Cand("a"), Cand("b"), Cand("c"))
    two = (Cand("a"), Cand("b"))
    assert names(policy.order(three)) == ["a", "b", "c"]
    assert names(policy.order(three)) == ["b", "c", "a"]
    ordered = policy.order(two)
    assert sorted(names(ordered)) == ["a", "b"]


# --- weighted ----------------------------------------------------------------------------------


def test_weighted_first_share_matches_weights() -> None:
    cands = (Cand("a", weight=1.0), Cand("b", weight=2.0), Cand("c", weight=7.0))
    policy = WeightedPolicy(random.Random(1234))
    draws = 20_000
    firsts = Counter(policy.order(cands)[0].name for _ in range(draws))
    total = sum(c.weight for c in cands)
    for c in cands:
        assert firsts[c.name] / draws == pytest.approx(c.weight / total, abs=0.015), c.name


def test_weighted_equal_weights_are_uniform() -> None:
    cands = tuple(Cand(f"p{i}", weight=0.5) for i in range(4))
    policy = WeightedPolicy(random.Random(99))
    draws = 20_000
    firsts = Counter(policy.order(cands)[0].name for _ in range(draws))
    for c in cands:
        assert firsts[c.name] / draws == pytest.approx(0.25, abs=0.015)


def test_weighted_is_deterministic_with_the_same_seed() -> None:
    cands = (Cand("a", weight=1.0), Cand("b", weight=3.0), Cand("c", weight=0.5))
    p1 = WeightedPolicy(random.Random(7))
    p2 = WeightedPolicy(random.Random(7))
    s1 = [names(p1.order(cands)) for _ in range(200)]
    s2 = [names(p2.order(cands)) for _ in range(200)]
    assert s1 == s2
    assert len({tuple(s) for s in s1}) > 1  # it is actually random
    p3 = WeightedPolicy(random.Random(8))
    assert [names(p3.order(cands)) for _ in range(200)] != s1


@settings(max_examples=50)
@given(st.lists(st.floats(0.01, 100.0), min_size=1, max_size=6), st.integers(0, 2**32))
def test_weighted_returns_a_permutation(weights: list[float], seed: int) -> None:
    cands = tuple(Cand(f"p{i}", weight=w) for i, w in enumerate(weights))
    ordered = WeightedPolicy(random.Random(seed)).order(cands)
    assert sorted(names(ordered)) == sorted(names(cands))


# --- least busy --------------------------------------------------------------------------------


def test_least_busy_orders_by_utilisation() -> None:
    cands = (
        Cand("half", in_flight=5, max_concurrency=10),
        Cand("quarter", in_flight=1, max_concurrency=4),
        Cand("most", in_flight=9, max_concurrency=10),
        Cand("idle", in_flight=0, max_concurrency=1),
    )
    policy = LeastBusyPolicy(random.Random(0))
    for _ in range(20):
        assert names(policy.order(cands)) == ["idle", "quarter", "half", "most"]


def test_least_busy_uses_ratio_not_absolute_count() -> None:
    # 'big' has more requests in flight but far more capacity.
    cands = (
        Cand("small", in_flight=2, max_concurrency=4),
        Cand("big", in_flight=10, max_concurrency=100),
    )
    assert names(LeastBusyPolicy(random.Random(0)).order(cands)) == ["big", "small"]


def test_least_busy_breaks_ties_at_random() -> None:
    cands = (
        Cand("a", in_flight=1, max_concurrency=2),
        Cand("b", in_flight=2, max_concurrency=4),
        Cand("c", in_flight=3, max_concurrency=4),
    )
    policy = LeastBusyPolicy(random.Random(5))
    orders = Counter(tuple(names(policy.order(cands))) for _ in range(400))
    assert set(orders) == {("a", "b", "c"), ("b", "a", "c")}
    assert min(orders.values()) > 100


# --- latency -----------------------------------------------------------------------------------


def test_latency_unmeasured_first_then_ascending() -> None:
    cands = (
        Cand("slow", latency_estimate=2.0),
        Cand("new1"),
        Cand("fast", latency_estimate=0.1),
        Cand("mid", latency_estimate=0.5),
        Cand("new2"),
    )
    policy = LatencyPolicy(random.Random(0), explore=0.0)
    assert names(policy.order(cands)) == ["new1", "new2", "fast", "mid", "slow"]


def test_latency_explore_zero_never_reorders() -> None:
    cands = (
        Cand("c", latency_estimate=3.0),
        Cand("a", latency_estimate=1.0),
        Cand("b", latency_estimate=2.0),
    )
    policy = LatencyPolicy(random.Random(3), explore=0.0)
    for _ in range(2000):
        assert names(policy.order(cands)) == ["a", "b", "c"]


def test_latency_explore_one_puts_a_random_one_first() -> None:
    cands = tuple(Cand(f"p{i}", latency_estimate=float(i + 1)) for i in range(4))
    policy = LatencyPolicy(random.Random(11), explore=1.0)
    draws = 4000
    firsts = Counter(policy.order(cands)[0].name for _ in range(draws))
    for c in cands:
        assert firsts[c.name] / draws == pytest.approx(0.25, abs=0.04)
    # The rest keep their latency order.
    for _ in range(100):
        ordered = names(policy.order(cands))
        rest = ordered[1:]
        assert rest == sorted(rest, key=lambda n: int(n[1:]))


def test_latency_default_explore_is_rare() -> None:
    cands = (Cand("a", latency_estimate=1.0), Cand("b", latency_estimate=2.0))
    policy = LatencyPolicy(random.Random(2))
    draws = 4000
    firsts = Counter(policy.order(cands)[0].name for _ in range(draws))
    # explore=0.05 and half of the explorations pick 'a' anyway: 'b' first ~2.5%.
    assert 0.005 < firsts["b"] / draws < 0.06


def test_latency_single_candidate() -> None:
    policy = LatencyPolicy(random.Random(0), explore=1.0)
    assert names(policy.order((Cand("only", latency_estimate=1.0),))) == ["only"]


@pytest.mark.parametrize("explore", [-0.01, 1.01, 2.0, math.nan])
def test_latency_explore_out_of_range(explore: float) -> None:
    with pytest.raises(ValueError, match="explore"):
        LatencyPolicy(random.Random(0), explore=explore)


# --- make_policy -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("priority", PriorityPolicy),
        ("round_robin", RoundRobinPolicy),
        ("weighted", WeightedPolicy),
        ("least_busy", LeastBusyPolicy),
        ("latency", LatencyPolicy),
    ],
)
def test_make_policy_each_name(name: str, cls: type) -> None:
    policy = make_policy(name, random.Random(0))  # type: ignore[arg-type]
    assert isinstance(policy, cls)
    assert policy.name == name


def test_make_policy_passes_explore() -> None:
    cands = (Cand("a", latency_estimate=1.0), Cand("b", latency_estimate=2.0))
    never = make_policy("latency", random.Random(0), explore=0.0)
    assert all(never.order(cands)[0].name == "a" for _ in range(500))
    always = make_policy("latency", random.Random(0), explore=1.0)
    assert any(always.order(cands)[0].name == "b" for _ in range(500))
    with pytest.raises(ValueError, match="explore"):
        make_policy("latency", random.Random(0), explore=1.5)


def test_make_policy_uses_the_given_rng() -> None:
    cands = tuple(Cand(f"p{i}", weight=float(i + 1)) for i in range(5))
    p1 = make_policy("weighted", random.Random(42))
    p2 = make_policy("weighted", random.Random(42))
    assert [names(p1.order(cands)) for _ in range(50)] == [
        names(p2.order(cands)) for _ in range(50)
    ]


@pytest.mark.parametrize("bad", ["random", "", "Priority", "least-busy"])
def test_make_policy_bad_name(bad: str) -> None:
    with pytest.raises(ValueError, match=r"router\.policy") as info:
        make_policy(bad, random.Random(0))  # type: ignore[arg-type]
    assert repr(bad) in str(info.value)
