"""Prometheus metrics for the gateway: request counters and histograms, plus gauges read
from the runtime's health snapshot at each scrape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from actors import LedgerSnapshot
from protocols import Response

from ._runtime import Runtime

__all__ = ["GatewayMetrics"]

_BREAKER_VALUE = {"closed": 0.0, "half_open": 1.0, "open": 2.0}
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@final
class _HealthCollector(Collector):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[Metric]:
        health = self._runtime.health()
        up = GaugeMetricFamily("switchyard_actor_up", "1 if the actor is running", labels=["actor"])
        restarts = CounterMetricFamily(
            "switchyard_actor_restarts", "Restarts of each actor", labels=["actor"]
        )
        in_flight = GaugeMetricFamily(
            "switchyard_actor_in_flight", "Requests in flight at each actor", labels=["actor"]
        )
        mailbox = GaugeMetricFamily(
            "switchyard_actor_mailbox_depth", "Messages waiting in each mailbox", labels=["actor"]
        )
        breaker = GaugeMetricFamily(
            "switchyard_breaker_state",
            "Circuit breaker state (0 closed, 1 half-open, 2 open)",
            labels=["provider"],
        )
        requests_left = GaugeMetricFamily(
            "switchyard_limiter_requests_available",
            "Requests the limiter would admit now",
            labels=["provider"],
        )
        tokens_left = GaugeMetricFamily(
            "switchyard_limiter_tokens_available",
            "Tokens the limiter would admit now",
            labels=["provider"],
        )
        for actor in health.actors:
            up.add_metric([actor.name], 1.0 if actor.state == "running" else 0.0)
            restarts.add_metric([actor.name], float(actor.restarts))
            in_flight.add_metric([actor.name], float(actor.in_flight))
            mailbox.add_metric([actor.name], float(actor.mailbox_depth))
            if actor.breaker is not None:
                breaker.add_metric([actor.name], _BREAKER_VALUE[actor.breaker.state])
            limiter = actor.limiter
            if limiter is not None:
                if limiter.requests_available is not None:
                    requests_left.add_metric([actor.name], limiter.requests_available)
                if limiter.tokens_available is not None:
                    tokens_left.add_metric([actor.name], limiter.tokens_available)
        provider_errors = CounterMetricFamily(
            "switchyard_provider_errors",
            "Failed attempts at each provider, by error type",
            labels=["provider", "type"],
        )
        provider_successes = CounterMetricFamily(
            "switchyard_provider_successes",
            "Successful attempts at each provider",
            labels=["provider"],
        )
        for actor in health.actors:
            if actor.kind != "provider":
                continue
            provider_successes.add_metric([actor.name], float(actor.successes))
            for kind, count in sorted(actor.errors.items()):
                provider_errors.add_metric([actor.name, kind], float(count))
        serving = GaugeMetricFamily("switchyard_serving", "1 if some provider can serve")
        serving.add_metric([], 1.0 if health.serving else 0.0)
        requests_in_flight = GaugeMetricFamily(
            "switchyard_requests_in_flight", "Requests the runtime is answering now"
        )
        requests_in_flight.add_metric([], float(health.requests_in_flight))
        yield from (
            up,
            restarts,
            in_flight,
            mailbox,
            breaker,
            requests_left,
            tokens_left,
            provider_successes,
            provider_errors,
            serving,
            requests_in_flight,
        )
        yield from self._costs(health.costs)

    @staticmethod
    def _costs(costs: LedgerSnapshot | None) -> Iterator[Metric]:
        if costs is None:
            return
        spent = CounterMetricFamily(
            "switchyard_cost_usd",
            "Money spent, from the cost ledger (billed failed attempts included)",
            labels=["provider"],
        )
        unknown = CounterMetricFamily(
            "switchyard_unknown_cost_requests",
            "Answered requests whose model has no known price",
            labels=["provider"],
        )
        billed = CounterMetricFamily(
            "switchyard_billed_failures",
            "Attempts that failed after producing (billed) output",
            labels=["provider"],
        )
        for provider, totals in costs.by_provider.items():
            spent.add_metric([provider], float(totals.cost_usd))
            unknown.add_metric([provider], float(totals.unknown_cost_requests))
            billed.add_metric([provider], float(totals.billed_failures))
        tenants = CounterMetricFamily(
            "switchyard_tenant_cost_usd", "Money spent per tenant", labels=["tenant"]
        )
        for tenant, totals in costs.by_tenant.items():
            tenants.add_metric([tenant], float(totals.cost_usd))
        yield from (spent, unknown, billed, tenants)


@final
class GatewayMetrics:
    """One registry per gateway (so tests can run several)."""

    def __init__(self, runtime: Runtime) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "switchyard_requests",
            "Gateway requests by provider and outcome",
            ["provider", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "switchyard_errors", "Failed requests by error type", ["type"], registry=self.registry
        )
        self.latency = Histogram(
            "switchyard_request_latency_seconds",
            "Latency of answered requests",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "switchyard_time_to_first_token_seconds",
            "Time to first token of streamed requests",
            ["provider"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.tokens = Counter(
            "switchyard_tokens",
            "Tokens used, by provider and kind",
            ["provider", "kind"],
            registry=self.registry,
        )
        self.registry.register(_HealthCollector(runtime))

    def answered(self, response: Response) -> None:
        provider = response.provider
        self.requests.labels(provider, "ok").inc()
        self.latency.labels(provider).observe(response.latency)
        if response.ttft is not None:
            self.ttft.labels(provider).observe(response.ttft)
        usage = response.usage
        for kind, value in (
            ("input", usage.input_tokens),
            ("output", usage.output_tokens),
            ("cache_read", usage.cache_read_tokens),
            ("cache_write", usage.cache_write_tokens),
            ("reasoning", usage.reasoning_tokens),
        ):
            if value:
                self.tokens.labels(provider, kind).inc(value)

    def failed(self, kind: str, provider: str | None = None) -> None:
        """A request that got an error: ``kind`` is the error's type (``rate_limited``,
        ``all_providers_failed``, ``invalid_request``...); ``provider`` the one that failed
        it, when one provider did."""
        self.requests.labels(provider or "none", "error").inc()
        self.errors.labels(kind).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
