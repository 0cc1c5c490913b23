"""Switchyard's actors and their policies: provider actors, the router, the supervisor, and
the pure cores they are built from (token buckets, circuit breaker, back-off, retry budget,
routing policies)."""

from ._accounting import Accounting
from ._backoff import (
    Backoff,
    BackoffConfig,
    RetryBudget,
    RetryBudgetConfig,
    RetryBudgetSnapshot,
)
from ._breaker import BreakerConfig, BreakerSnapshot, BreakerState, CircuitBreaker
from ._budget import BudgetConfig, BudgetExceeded, BudgetGuard, BudgetStatus, Reservation
from ._classifier import TASK_TYPES, RuleClassifier, TaskClassifier, TaskType
from ._health import ActorHealth, LatencySnapshot, RuntimeHealth, SupervisorHealth
from ._ledger import CostLedger, CostTotals, LedgerSnapshot
from ._limiter import LimiterSnapshot, RateLimiter, TokenBucket
from ._mail import AttemptFailed, Dispatch, NoRoute, OneShot, Reply, ReplyTo, Ticket
from ._policies import (
    Candidate,
    CostPolicy,
    LatencyPolicy,
    LeastBusyPolicy,
    PolicyName,
    PriorityPolicy,
    QualityPolicy,
    RoundRobinPolicy,
    RoutingPolicy,
    SpeedPolicy,
    WeightedPolicy,
    make_policy,
)
from ._pricing import ModelPrice, PriceBook, PriceTier
from ._provider import ProviderActor, ProviderSlot, ProviderSpec
from ._quality import DEFAULT_QUALITY
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
    "DEFAULT_QUALITY",
    "TASK_TYPES",
    "Accounting",
    "ActorFailed",
    "ActorHealth",
    "ActorState",
    "AttemptFailed",
    "Backoff",
    "BackoffConfig",
    "BreakerConfig",
    "BreakerSnapshot",
    "BreakerState",
    "BudgetConfig",
    "BudgetExceeded",
    "BudgetGuard",
    "BudgetStatus",
    "Candidate",
    "ChildSpec",
    "ChildStatus",
    "CircuitBreaker",
    "CostLedger",
    "CostPolicy",
    "CostTotals",
    "Dispatch",
    "Ewma",
    "FailOver",
    "GiveUp",
    "LatencyPolicy",
    "LatencySnapshot",
    "LatencyWindow",
    "LeastBusyPolicy",
    "LedgerSnapshot",
    "LimiterSnapshot",
    "ModelPrice",
    "NoRoute",
    "OneShot",
    "PolicyName",
    "PriceBook",
    "PriceTier",
    "PriorityPolicy",
    "ProviderActor",
    "ProviderSlot",
    "ProviderSpec",
    "QualityPolicy",
    "RateLimiter",
    "Reply",
    "ReplyTo",
    "Reservation",
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
    "RuleClassifier",
    "RuntimeHealth",
    "SpeedPolicy",
    "Supervisor",
    "SupervisorConfig",
    "SupervisorHealth",
    "TaskClassifier",
    "TaskType",
    "Ticket",
    "TokenBucket",
    "WeightedPolicy",
    "make_policy",
]
