"""The TOML configuration file: its schema, validation with clear errors, and loading.

One file holds everything. ``load_settings(path)`` returns validated ``Settings`` or raises
``ConfigError`` naming the file, the field path and what was expected, e.g.
``switchyard.toml: providers[1].rpm: expected an integer >= 1, got -5``.
"""

from __future__ import annotations

import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

from actors import PolicyName, RestartStrategy, TaskType
from protocols import HttpClientName

__all__ = [
    "BreakerSettings",
    "ConfigError",
    "DeadlineSettings",
    "LoggingSettings",
    "ProviderKind",
    "ProviderSettings",
    "RetrySettings",
    "RouterSettings",
    "ServerSettings",
    "Settings",
    "SupervisionSettings",
    "load_settings",
    "parse_settings",
]

ProviderKind = Literal["openai", "anthropic", "gemini"]
PositiveInt = Annotated[int, Meta(ge=1)]
PositiveFloat = Annotated[float, Meta(gt=0)]
NonNegativeFloat = Annotated[float, Meta(ge=0)]
Probability = Annotated[float, Meta(ge=0, le=1)]
Port = Annotated[int, Meta(ge=0, le=65535)]
Name = Annotated[str, Meta(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")]


class ServerSettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``api_keys_env`` names an environment variable holding comma-separated bearer keys
    that clients must present; unset or empty means no authentication (with a warning).
    ``freeze_heap``: the gateway process freezes its start-up heap once the runtime is up
    (``RuntimeConfig.freeze_heap``)."""

    host: str = "127.0.0.1"
    port: Port = 8080
    api_keys_env: str = "SWITCHYARD_API_KEYS"
    max_body_bytes: PositiveInt = 4 * 1024 * 1024
    grace_period_s: NonNegativeFloat = 10.0
    freeze_heap: bool = True


class RouterSettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    policy: PolicyName = "priority"
    mailbox_capacity: PositiveInt = 1024
    latency_explore: Probability = 0.05
    handoff: bool = True


class RetrySettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    base_s: NonNegativeFloat = 0.1
    cap_s: NonNegativeFloat = 5.0
    max_retries: Annotated[int, Meta(ge=0)] = 2
    budget_ratio: NonNegativeFloat = 0.2
    budget_window_s: PositiveFloat = 10.0
    budget_min_retries: Annotated[int, Meta(ge=0)] = 3
    max_retry_after_s: NonNegativeFloat = 5.0
    max_rounds: PositiveInt = 2


class BreakerSettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    failure_threshold: Annotated[float, Meta(gt=0, le=1)] = 0.5
    min_requests: PositiveInt = 10
    window_s: PositiveFloat = 10.0
    cooldown_s: PositiveFloat = 5.0
    max_cooldown_s: PositiveFloat = 60.0
    half_open_probes: PositiveInt = 2


class SupervisionSettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    strategy: RestartStrategy = "one_for_one"
    max_restarts: Annotated[int, Meta(ge=0)] = 5
    period_s: PositiveFloat = 10.0
    backoff_base_s: NonNegativeFloat = 0.05
    backoff_max_s: NonNegativeFloat = 2.0
    escalate: bool = False


class DeadlineSettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """``request_s``: a request's whole budget; ``attempt_s``: one attempt until its answer
    (a stream: its first event); ``stream_idle_s``: the longest quiet gap in a stream."""

    request_s: PositiveFloat = 60.0
    attempt_s: PositiveFloat = 30.0
    stream_idle_s: PositiveFloat = 30.0


class LoggingSettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"
    log_requests: bool = False


class ProviderSettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One upstream provider. ``base_url`` follows each official SDK's convention: OpenAI's
    includes ``/v1``; Anthropic's and Gemini's are the bare host. ``api_key_env`` names the
    environment variable holding the key (never the key itself)."""

    name: Name
    kind: ProviderKind
    base_url: Annotated[str, Meta(pattern=r"^https?://")]
    model: Annotated[str, Meta(min_length=1)]
    transport: Literal["native", "sdk"] = "native"
    api_key_env: str | None = None
    rpm: PositiveInt | None = None
    tpm: PositiveInt | None = None
    max_concurrency: PositiveInt = 64
    mailbox_capacity: Annotated[int, Meta(ge=0)] | None = None
    priority: int = 0
    weight: PositiveFloat = 1.0
    http_client: HttpClientName = "httpx2"
    sdk_client: Literal["default", "azure", "bedrock", "vertex"] = "default"
    """With ``transport = "sdk"``: ``azure`` (OpenAI) or ``bedrock``/``vertex`` (Anthropic)."""
    azure_api_version: str | None = None
    azure_deployment: str | None = None
    region: str | None = None
    """AWS region (Bedrock) or Google Cloud region (Vertex)."""
    project: str | None = None
    """Google Cloud project (Vertex)."""
    extra_headers: dict[str, str] = {}
    models: list[str] = []
    """Other model names this provider serves, besides ``model``."""


class BudgetSettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A spending cap: ``limit_usd`` per ``period_s`` for the whole runtime, each tenant or
    each provider (``key`` limits it to one tenant or provider)."""

    limit_usd: PositiveFloat
    period_s: PositiveFloat = 86_400.0
    scope: Literal["runtime", "tenant", "provider"] = "runtime"
    key: str | None = None


class PriceSettings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """USD per million tokens, for a model genai-prices does not know (or to override it)."""

    input: NonNegativeFloat
    output: NonNegativeFloat
    cache_read: NonNegativeFloat | None = None
    cache_write: NonNegativeFloat | None = None


class Settings(Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    server: ServerSettings = ServerSettings()
    router: RouterSettings = RouterSettings()
    retry: RetrySettings = RetrySettings()
    breaker: BreakerSettings = BreakerSettings()
    supervision: SupervisionSettings = SupervisionSettings()
    deadlines: DeadlineSettings = DeadlineSettings()
    logging: LoggingSettings = LoggingSettings()
    aliases: dict[str, str] = {}
    """Model aliases: ``fast = "gpt-4o-mini"`` lets clients ask for ``fast``."""
    budgets: list[BudgetSettings] = []
    prices: dict[str, PriceSettings] = {}
    """Keys ``"kind:model"`` or ``"model"``."""
    quality: dict[str, float] = {}
    """Quality scores per model, added to or replacing the default table."""
    task_routes: dict[TaskType, list[str]] = {}
    """Per task type, the providers or models to prefer, most preferred first."""
    providers: Annotated[list[ProviderSettings], Meta(min_length=1)]


class ConfigError(Exception):
    """A configuration file that cannot be used; the message says where and why."""


_TYPE_WORDS = {
    "int": "an integer",
    "float": "a number",
    "str": "a string",
    "bool": "a boolean",
    "object": "a table",
    "array": "an array",
}


def _describe_expected(message: str) -> str:
    # msgspec: "Expected `int` >= 1" / "Expected `int | null`, got `str`" -> our wording.
    message = re.sub(r", got `[^`]*`$", "", message)

    def word(match: re.Match[str]) -> str:
        names = [n.strip() for n in match.group(1).split("|") if n.strip() != "null"]
        return " or ".join(_TYPE_WORDS.get(n, n) for n in names)

    message = re.sub(r"`([^`]*)`", word, message)
    return message[0].lower() + message[1:] if message else message


def _value_at(document: Any, path: str) -> tuple[bool, Any]:
    node = document
    for key, index in re.findall(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]", path):
        try:
            node = node[int(index)] if index else node[key]
        except (KeyError, IndexError, TypeError):
            return False, None
    return True, node


def _type_at(path: str) -> Any:
    """The declared type of the field at ``path`` (None if the path leaves the schema)."""
    kind: Any = Settings
    for key, index in re.findall(r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]", path):
        kind = _unwrap(kind)
        if index:
            args = typing.get_args(kind)
            kind = args[0] if args else None
            continue
        fields = {f.name: f.type for f in msgspec.structs.fields(kind)} if _is_struct(kind) else {}
        kind = fields.get(key)
        if kind is None:
            return None
    return kind


def _choices_at(path: str) -> list[str]:
    """The allowed values of the Literal field at ``path``, if it is one."""
    kind = _type_at(path)
    if kind is None:
        return []
    literals = [a for a in _flatten(_unwrap(kind)) if isinstance(a, str)]
    return [repr(v) for v in literals]


def _bad_table_entry(document: Any, path: str) -> tuple[str, bool, Any]:
    """msgspec names a bad value of a table of free keys ``[...]``: find the key.

    Returns the path with the key in place, whether the value was found, and the value.
    """
    head, _, tail = path.partition("[...]")
    found, node = _value_at(document, head)
    args = typing.get_args(_unwrap(_type_at(head)))
    if not found or not isinstance(node, dict) or len(args) != 2:
        return path, False, None
    for key, value in node.items():
        try:
            msgspec.convert(value, args[1])
        except msgspec.ValidationError:
            name = f".{key}" if re.fullmatch(r"[A-Za-z0-9_\-]+", str(key)) else f".{key!r}"
            if tail:
                found, value = _value_at(value, tail)
                return head + name + tail, found, value
            return head + name, True, value
    return path, False, None


def _unwrap(kind: Any) -> Any:
    while typing.get_origin(kind) is typing.Annotated:
        kind = typing.get_args(kind)[0]
    return kind


def _is_struct(kind: Any) -> bool:
    return isinstance(kind, type) and issubclass(kind, Struct)


def _flatten(kind: Any) -> list[Any]:
    origin = typing.get_origin(kind)
    if origin is typing.Literal:
        return list(typing.get_args(kind))
    if origin in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(kind) for a in _flatten(arg)]
    return []


def parse_settings(document: dict[str, Any], *, source: str = "<config>") -> Settings:
    """Validate an already-parsed TOML document."""
    try:
        settings = msgspec.convert(document, Settings)
    except msgspec.ValidationError as exc:
        text = str(exc)
        message, _, where = text.rpartition(" - at `")
        if not message:
            message, where = text, "$"
        if where.startswith("key` in `"):
            # A bad table key, e.g. an unknown task type under [task_routes].
            table = where.removeprefix("key` in `").rstrip("`").removeprefix("$").removeprefix(".")
            raise ConfigError(
                f"{source}: {table}: bad key: {_describe_expected(message)}"
            ) from None
        path = where.rstrip("`")
        field = path.removeprefix("$").removeprefix(".") or "(top level)"
        if message.startswith("Object missing required field"):
            missing = message.split("`")[1]
            field = f"{field}.{missing}" if field != "(top level)" else missing
            raise ConfigError(f"{source}: {field}: required but missing") from None
        if message.startswith("Object contains unknown field"):
            unknown = message.split("`")[1]
            field = f"{field}.{unknown}" if field != "(top level)" else unknown
            raise ConfigError(f"{source}: {field}: unknown field") from None
        if "[...]" in path:
            path, found, value = _bad_table_entry(document, path.removeprefix("$"))
            field = path.removeprefix(".")
        else:
            found, value = _value_at(document, path.removeprefix("$"))
        got = f", got {value!r}" if found else ""
        choices = _choices_at(path.removeprefix("$"))
        expected = f"expected one of {', '.join(choices)}" if choices else None
        expected = expected or _describe_expected(message)
        raise ConfigError(f"{source}: {field}: {expected}{got}") from None
    _check_consistency(settings, source)
    return settings


def _check_consistency(settings: Settings, source: str) -> None:
    seen: dict[str, int] = {}
    for i, provider in enumerate(settings.providers):
        if provider.name in seen:
            raise ConfigError(
                f"{source}: providers[{i}].name: {provider.name!r} is already the name of "
                f"providers[{seen[provider.name]}]"
            )
        if provider.name == "router":
            raise ConfigError(f"{source}: providers[{i}].name: 'router' is reserved")
        seen[provider.name] = i
    for i, p in enumerate(settings.providers):
        where = f"{source}: providers[{i}].sdk_client"
        if p.sdk_client != "default" and p.transport != "sdk":
            raise ConfigError(f'{where}: {p.sdk_client!r} needs transport = "sdk"')
        if p.sdk_client == "azure" and (p.kind != "openai" or not p.azure_api_version):
            raise ConfigError(f"{where}: 'azure' needs kind = \"openai\" and azure_api_version")
        if p.sdk_client in ("bedrock", "vertex") and (p.kind != "anthropic" or not p.region):
            raise ConfigError(f'{where}: {p.sdk_client!r} needs kind = "anthropic" and region')
        if p.sdk_client == "vertex" and not p.project:
            raise ConfigError(f"{where}: 'vertex' needs project")
    served = {m for p in settings.providers for m in (p.model, *p.models)} | set(seen)
    for task, targets in settings.task_routes.items():
        for target in targets:
            if target not in served:
                raise ConfigError(
                    f"{source}: task_routes.{task}: {target!r} is not a provider name or a "
                    "model any provider serves"
                )
    for alias, target in settings.aliases.items():
        if target not in served:
            raise ConfigError(
                f"{source}: aliases.{alias}: {target!r} is not a provider name or a model any "
                "provider serves"
            )
    if settings.retry.cap_s < settings.retry.base_s:
        raise ConfigError(f"{source}: retry.cap_s: expected at least retry.base_s")


def load_settings(path: str | Path) -> Settings:
    """Read and validate a TOML configuration file."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{file}: not valid TOML: {exc}") from None
    return parse_settings(document, source=str(file))
