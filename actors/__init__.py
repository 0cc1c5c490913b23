"""Switchyard's actors and their policies: provider actors, the router, the supervisor, and
the pure cores they are built from (token buckets, circuit breaker, back-off, retry budget,
routing policies)."""

from ._backoff import (
    Backoff,
    BackoffConfig,
    RetryBudget,
    RetryBudgetConfig,
    RetryBudgetSnapshot,
)
from ._breaker import BreakerConfig, BreakerSnapshot, BreakerState, CircuitBreaker
from ._health import ActorHealth, LatencySnapshot, RuntimeHealth, SupervisorHealth
from ._limiter import LimiterSnapshot, RateLimiter, TokenBucket
from ._mail import AttemptFailed, Dispatch, NoRoute, Reply, Ticket
from ._policies import (
    Candidate,
    LatencyPolicy,
    LeastBusyPolicy,
    PolicyName,
    PriorityPolicy,
    RoundRobinPolicy,
    RoutingPolicy,
    WeightedPolicy,
    make_policy,
)
from ._provider import ProviderActor, ProviderSlot, ProviderSpec
from ._retry import FailOver, GiveUp, RetryConfig, RetryPolicy, RetrySame
from ._router import RouterActor
from ._stats import Ewma, LatencyWindow
from ._supervisor import (
    ActorFailed,
    ActorState,
    ChildSpec,
    ChildStatus,
    RestartStrategy,
    Supervisor,
    SupervisorConfig,
)

__all__ = [
    "ActorFailed",
    "ActorHealth",
    "ActorState",
    "AttemptFailed",
    "Backoff",
    "BackoffConfig",
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerState",
    "Candidate",
    "ChildSpec",
    "ChildStatus",
    "CircuitBreaker",
    "Dispatch",
    "Ewma",
    "FailOver",
    "GiveUp",
    "LatencyPolicy",
    "LatencySnapshot",
    "LatencyWindow",
    "LeastBusyPolicy",
    "LimiterSnapshot",
    "NoRoute",
    "PolicyName",
    "PriorityPolicy",
    "ProviderActor",
    "ProviderSlot",
    "ProviderSpec",
    "RateLimiter",
    "Reply",
    "RestartStrategy",
    "RetryBudget",
    "RetryBudgetConfig",
    "RetryBudgetSnapshot",
    "RetryConfig",
    "RetryPolicy",
    "RetrySame",
    "RoundRobinPolicy",
    "RouterActor",
    "RoutingPolicy",
    "RuntimeHealth",
    "Supervisor",
    "SupervisorConfig",
    "SupervisorHealth",
    "Ticket",
    "TokenBucket",
    "WeightedPolicy",
    "make_policy",
]
