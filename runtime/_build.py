"""From validated ``Settings`` to the objects the runtime and the gateway run on."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from actors import (
    BackoffConfig,
    BreakerConfig,
    BudgetConfig,
    ModelPrice,
    ProviderSpec,
    RetryBudgetConfig,
    RetryConfig,
    SupervisorConfig,
)
from protocols import LLMProvider, Secret

from ._config import RouterConfig, RuntimeConfig
from ._gateway import ModelRoute
from ._settings import ProviderSettings, Settings

__all__ = [
    "build_models",
    "build_provider",
    "build_provider_specs",
    "build_routes",
    "build_runtime_config",
    "missing_keys",
]


def build_runtime_config(settings: Settings, *, seed: int | None = None) -> RuntimeConfig:
    retry, breaker, supervision = settings.retry, settings.breaker, settings.supervision
    return RuntimeConfig(
        router=RouterConfig(
            policy=settings.router.policy,
            mailbox_capacity=settings.router.mailbox_capacity,
            latency_explore=settings.router.latency_explore,
            handoff=settings.router.handoff,
        ),
        retry=RetryConfig(
            backoff=BackoffConfig(
                base_s=retry.base_s, cap_s=retry.cap_s, max_retries=retry.max_retries
            ),
            budget=RetryBudgetConfig(
                ratio=retry.budget_ratio,
                window_s=retry.budget_window_s,
                min_retries=retry.budget_min_retries,
            ),
            max_retry_after_s=retry.max_retry_after_s,
            max_rounds=retry.max_rounds,
        ),
        breaker=BreakerConfig(
            failure_threshold=breaker.failure_threshold,
            min_requests=breaker.min_requests,
            window_s=breaker.window_s,
            cooldown_s=breaker.cooldown_s,
            max_cooldown_s=breaker.max_cooldown_s,
            half_open_probes=breaker.half_open_probes,
        ),
        supervision=SupervisorConfig(
            strategy=supervision.strategy,
            max_restarts=supervision.max_restarts,
            period_s=supervision.period_s,
            backoff_base_s=supervision.backoff_base_s,
            backoff_max_s=supervision.backoff_max_s,
            escalate=supervision.escalate,
        ),
        default_timeout_s=settings.deadlines.request_s,
        grace_period_s=settings.server.grace_period_s,
        seed=seed,
        log_requests=settings.logging.log_requests,
        freeze_heap=settings.server.freeze_heap,
        budgets=tuple(
            BudgetConfig(
                limit_usd=Decimal(str(b.limit_usd)),
                period_s=b.period_s,
                scope=b.scope,
                key=b.key,
            )
            for b in settings.budgets
        ),
        prices={
            key: ModelPrice.of(
                input=p.input, output=p.output, cache_read=p.cache_read, cache_write=p.cache_write
            )
            for key, p in settings.prices.items()
        },
        quality=dict(settings.quality),
        task_routes={task: tuple(names) for task, names in settings.task_routes.items()},
    )


def _key(provider: ProviderSettings, env: Mapping[str, str]) -> Secret | None:
    if provider.api_key_env is None:
        return None
    value = env.get(provider.api_key_env, "").strip()
    return Secret(value) if value else None


def missing_keys(settings: Settings, env: Mapping[str, str]) -> list[str]:
    """One line per provider that will send no API key: its variable is unset or empty,
    or it names none (``api_key_env`` left out, as for a local server that needs none)."""
    lines = []
    for p in settings.providers:
        if p.api_key_env is None:
            lines.append(
                f"provider {p.name!r}: no api_key_env is configured; "
                "its requests go without an API key"
            )
        elif not env.get(p.api_key_env, "").strip():
            lines.append(
                f"provider {p.name!r}: environment variable {p.api_key_env} is not set; "
                "its requests will be refused upstream"
            )
    return lines


def build_provider(provider: ProviderSettings, env: Mapping[str, str]) -> LLMProvider:
    """The transport for one configured provider."""
    import protocols.providers as wire  # imports the codecs; SDKs load on demand

    key = _key(provider, env)
    name, url, model, headers = (
        provider.name,
        provider.base_url,
        provider.model,
        provider.extra_headers,
    )
    if provider.transport == "sdk":
        match provider.kind, provider.sdk_client:
            case "openai", _:
                return wire.OpenAISDKProvider(
                    name=name,
                    base_url=url,
                    # Like the native transport, a missing key gets the provider's 401.
                    api_key=key or Secret("missing-api-key"),
                    model=model,
                    extra_headers=headers,
                    azure_api_version=provider.azure_api_version,
                    azure_deployment=provider.azure_deployment,
                )
            case "anthropic", "bedrock":
                assert provider.region is not None  # checked when the settings were read
                return wire.anthropic_bedrock_provider(
                    name=name, model=model, region=provider.region, api_key=key
                )
            case "anthropic", "vertex":
                assert provider.region is not None and provider.project is not None
                return wire.anthropic_vertex_provider(
                    name=name,
                    model=model,
                    region=provider.region,
                    project=provider.project,
                    access_token=key,
                )
            case "anthropic", _:
                return wire.AnthropicSDKProvider(
                    name=name, base_url=url, api_key=key, model=model, extra_headers=headers
                )
            case "gemini", _:
                return wire.GeminiSDKProvider(
                    name=name, base_url=url, api_key=key, model=model, extra_headers=headers
                )
    factory = {
        "openai": wire.openai_provider,
        "anthropic": wire.anthropic_provider,
        "gemini": wire.gemini_provider,
    }[provider.kind]
    return factory(
        name=name,
        base_url=url,
        api_key=key,
        model=model,
        extra_headers=headers,
        http_client=provider.http_client,
        max_connections=provider.max_concurrency,
    )


def build_provider_specs(settings: Settings, env: Mapping[str, str]) -> list[ProviderSpec]:
    deadlines = settings.deadlines
    return [
        ProviderSpec(
            provider=build_provider(p, env),
            rpm=p.rpm,
            tpm=p.tpm,
            max_concurrency=p.max_concurrency,
            mailbox_capacity=p.mailbox_capacity,
            priority=p.priority,
            weight=p.weight,
            attempt_timeout_s=deadlines.attempt_s,
            stream_idle_timeout_s=deadlines.stream_idle_s,
        )
        for p in settings.providers
    ]


def build_routes(settings: Settings) -> dict[str, ModelRoute]:
    """Model names clients may ask for: each provider's models and name, aliases, ``auto``."""
    routes: dict[str, list[str]] = {}
    for p in settings.providers:
        for model in (p.model, *p.models):
            routes.setdefault(model, []).append(p.name)
    result = {model: ModelRoute(tuple(names), model) for model, names in routes.items()}
    for p in settings.providers:
        result.setdefault(p.name, ModelRoute((p.name,), None))
    for alias, target in settings.aliases.items():
        result[alias] = result[target]
    result["auto"] = ModelRoute((), None)
    return result


def build_models(settings: Settings) -> list[tuple[str, str]]:
    """``GET /v1/models`` entries: every model and alias, with who serves it."""
    models: list[tuple[str, str]] = [("auto", "switchyard")]
    seen = {"auto"}
    for p in settings.providers:
        for model in (p.model, *p.models):
            if model not in seen:
                seen.add(model)
                models.append((model, p.name))
    models += [(alias, "switchyard") for alias in settings.aliases if alias not in seen]
    return models
