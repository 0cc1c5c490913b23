"""Routing policies: pure functions from the providers' current state to a preference order.

The router walks the order and sends the request to the first provider that is eligible
(running, breaker not open, limit not exhausted, mailbox not full). Failover later walks the
same order. Policies never see a request's history; the router and the owner handle that.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from decimal import Decimal
from typing import Protocol, TypeAlias, TypeVar, final

from protocols import Request, RoutingPolicyName

__all__ = [
    "Candidate",
    "CostPolicy",
    "LatencyPolicy",
    "LeastBusyPolicy",
    "PolicyName",
    "PriorityPolicy",
    "QualityPolicy",
    "RoundRobinPolicy",
    "RoutingPolicy",
    "SpeedPolicy",
    "WeightedPolicy",
    "make_policy",
]

PolicyName: TypeAlias = RoutingPolicyName


class Candidate(Protocol):
    """What a policy may read about a provider."""

    @property
    def name(self) -> str: ...
    @property
    def priority(self) -> int: ...
    @property
    def weight(self) -> float: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def max_concurrency(self) -> int: ...
    @property
    def latency_estimate(self) -> float | None: ...
    @property
    def ttft_estimate(self) -> float | None: ...
    @property
    def measured_at(self) -> float | None: ...
    @property
    def quality(self) -> float | None: ...
    def max_cost(self, request: Request) -> Decimal | None: ...


C = TypeVar("C", bound=Candidate)


class RoutingPolicy(Protocol):
    name: PolicyName

    def order(self, candidates: Sequence[C], request: Request | None = None) -> Sequence[C]:
        """The candidates, most preferred first. May return the input when it is in order."""
        ...


@final
class PriorityPolicy:
    """Failover order: lowest ``priority`` first, ties in declaration order."""

    name: PolicyName = "priority"

    def __init__(self) -> None:
        self._cache: tuple[object, list[object]] | None = None

    def order(self, candidates: Sequence[C], request: Request | None = None) -> Sequence[C]:
        # The order only changes with the provider list, so it is sorted once.
        cache = self._cache
        if cache is not None and cache[0] is candidates:
            return cache[1]  # type: ignore[return-value]
        ordered = sorted(candidates, key=lambda c: c.priority)
        self._cache = (candidates, ordered)  # type: ignore[assignment]
        return ordered


@final
class RoundRobinPolicy:
    """Each request starts one provider further along; failover continues in turn."""

    name: PolicyName = "round_robin"

    def __init__(self) -> None:
        self._next = 0

    def order(self, candidates: Sequence[C], request: Request | None = None) -> Sequence[C]:
        n = len(candidates)
        if n == 0:
            return candidates
        start = self._next % n
        self._next = start + 1
        return [*candidates[start:], *candidates[:start]]


@final
class WeightedPolicy:
    """A random order in which each provider comes first with probability weight / total.

    Efraimidis-Spirakis sampling: sort by ``u ** (1 / weight)``, ``u`` uniform in (0, 1).
    """

    name: PolicyName = "weighted"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def order(self, candidates: Sequence[C], request: Request | None = None) -> Sequence[C]:
        rng = self._rng.random
        keyed = [(rng() ** (1.0 / c.weight), i) for i, c in enumerate(candidates)]
        keyed.sort(reverse=True)
        return [candidates[i] for _, i in keyed]


@final
class LeastBusyPolicy:
    """Fewest requests in flight relative to capacity first; ties broken at random."""

    name: PolicyName = "least_busy"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def order(self, candidates: Sequence[C], request: Request | None = None) -> Sequence[C]:
        rng = self._rng.random
        return sorted(candidates, key=lambda c: (c.in_flight / c.max_concurrency, rng()))


@final
class LatencyPolicy:
    """Lowest latency (EWMA of successful attempts) first.

    Providers with no measurement yet go first, so each gets measured. With probability
    ``explore`` a random provider is moved to the front, so that a provider which was slow
    once gets measured again after it recovers.
    """

    name: PolicyName = "latency"

    def __init__(self, rng: random.Random, *, explore: float = 0.05) -> None:
        if not 0.0 <= explore <= 1.0:
            raise ValueError(f"explore: expected a probability in [0, 1], got {explore}")
        self._rng = rng
        self._explore = explore

    def order(self, candidates: Sequence[C], request: Request | None = None) -> Sequence[C]:
        ordered = sorted(candidates, key=_latency_key)
        if len(ordered) > 1 and self._rng.random() < self._explore:
            pick = ordered.pop(self._rng.randrange(len(ordered)))
            ordered.insert(0, pick)
        return ordered


def _load(c: Candidate) -> float:
    return c.in_flight / c.max_concurrency


@final
class CostPolicy:
    """Cheapest first: the most this request may cost at each provider (its token estimate
    at the provider's prices). Unpriced providers go last; equals are spread by load."""

    name: PolicyName = "cost"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def order(self, candidates: Sequence[C], request: Request | None = None) -> Sequence[C]:
        if request is None:
            return candidates
        rng = self._rng.random

        def key(c: C) -> tuple[float, float, float]:
            cost = c.max_cost(request)
            return (math.inf if cost is None else float(cost), _load(c), rng())

        return sorted(candidates, key=key)


@final
class QualityPolicy:
    """Highest quality score first (see ``actors._quality``); unscored last; equals are
    spread by load."""

    name: PolicyName = "quality"

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def order(self, candidates: Sequence[C], request: Request | None = None) -> Sequence[C]:
        rng = self._rng.random

        def key(c: C) -> tuple[float, float, float]:
            quality = c.quality
            return (math.inf if quality is None else -quality, _load(c), rng())

        return sorted(candidates, key=key)


@final
class SpeedPolicy:
    """Fastest first, measured from live traffic: time to first token for streams, whole
    latency otherwise (EWMAs). Unmeasured providers go first so they get measured.

    Exploration: one request in every ``1 / explore`` goes first to the provider measured
    longest ago, so a provider that was slow and has recovered is noticed again within a
    bounded number of requests (not left to chance).
    """

    name: PolicyName = "speed"

    def __init__(self, rng: random.Random, *, explore: float = 0.05) -> None:
        if not 0.0 <= explore <= 1.0:
            raise ValueError(f"explore: expected a probability in [0, 1], got {explore}")
        self._every = round(1 / explore) if explore > 0 else 0
        self._count = 0

    def order(self, candidates: Sequence[C], request: Request | None = None) -> Sequence[C]:
        stream = request is not None and request.stream

        def key(c: C) -> float:
            estimate = c.ttft_estimate if stream else c.latency_estimate
            return -1.0 if estimate is None else estimate

        ordered = sorted(candidates, key=key)
        self._count += 1
        if self._every and self._count % self._every == 0 and len(ordered) > 1:
            stalest = min(ordered[1:], key=lambda c: c.measured_at or -math.inf)
            ordered.remove(stalest)
            ordered.insert(0, stalest)
        return ordered


def _latency_key(c: Candidate) -> float:
    estimate = c.latency_estimate
    return -1.0 if estimate is None else estimate


def make_policy(name: PolicyName, rng: random.Random, *, explore: float = 0.05) -> RoutingPolicy:
    """The policy called ``name``; randomised ones draw from ``rng`` (seed it to replay)."""
    match name:
        case "priority":
            return PriorityPolicy()
        case "round_robin":
            return RoundRobinPolicy()
        case "weighted":
            return WeightedPolicy(rng)
        case "least_busy":
            return LeastBusyPolicy(rng)
        case "latency":
            return LatencyPolicy(rng, explore=explore)
        case "cost":
            return CostPolicy(rng)
        case "quality":
            return QualityPolicy(rng)
        case "speed":
            return SpeedPolicy(rng, explore=explore)
    raise ValueError(
        "router.policy: expected one of priority, round_robin, weighted, least_busy, "
        f"latency, cost, quality, speed; got {name!r}"
    )
