"""What a call costs: per-model prices and the cost of a normalised ``Usage``.

Prices come from explicit overrides first, then from the data bundled with the
``genai-prices`` package (never fetched at run time, so a price cannot change under a running
process). Money is ``Decimal`` USD throughout, so costs add up exactly.

Pure bookkeeping: no I/O, no tasks. The date used to pick date-dependent prices comes from
an injected ``now`` (wall-clock UTC by default). A model with no known price costs ``None``,
never 0, and is logged once.
"""

from __future__ import annotations

import decimal
import functools
import runpy
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, final

import msgspec
import structlog

from protocols import Usage

if TYPE_CHECKING:
    from genai_prices import types as gp_types
    from genai_prices.data_snapshot import DataSnapshot

__all__ = ["ModelPrice", "PriceBook", "PriceTier"]

_MILLION = Decimal(1_000_000)
# Wide enough that token counts times prices never round, whatever the caller's context.
_EXACT = decimal.Context(prec=60, traps=[decimal.InvalidOperation])
# Switchyard's provider kinds, as genai-prices names them; other kinds are passed through.
_GENAI_PROVIDER = {"openai": "openai", "anthropic": "anthropic", "gemini": "google"}

# Model names can come from clients, so what we remember about them is bounded.
_MAX_REMEMBERED = 4096
_FRESH_S = 3600.0

_log = structlog.get_logger("switchyard.pricing")


def _genai_id(provider_kind: str) -> str:
    """The genai-prices provider id for a Switchyard provider kind."""
    return _GENAI_PROVIDER.get(provider_kind, provider_kind)


def _is_price(x: object) -> bool:
    return isinstance(x, Decimal) and x.is_finite() and x >= 0


def _require_price(value: object, field: str) -> None:
    if not _is_price(value):
        raise ValueError(
            f"{field}: expected a finite Decimal >= 0 (USD per million tokens), got {value!r}"
        )


def _require_optional_price(value: object, field: str) -> None:
    if value is not None:
        _require_price(value, field)


def _to_decimal(x: Decimal | float | str) -> Decimal:
    # str() first: Decimal(0.15) would carry the binary float's error into the price.
    return x if isinstance(x, Decimal) else Decimal(str(x))


@final
class PriceTier(msgspec.Struct, frozen=True, kw_only=True):
    """Prices (USD per million tokens) for a request whose prompt is longer than
    ``above_input_tokens``. They apply to *every* token of that request, as providers do
    (Gemini 2.5 Pro above 200k prompt tokens, Claude Sonnet 4.5 long context).

    ``None`` cache prices mean those tokens are billed as ordinary input.
    """

    above_input_tokens: int
    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None

    def __post_init__(self) -> None:
        a = self.above_input_tokens
        if isinstance(a, bool) or not isinstance(a, int) or a < 0:
            raise ValueError(f"above_input_tokens: expected an integer >= 0, got {a!r}")
        _require_price(self.input, "input")
        _require_price(self.output, "output")
        _require_optional_price(self.cache_read, "cache_read")
        _require_optional_price(self.cache_write, "cache_write")


@final
class ModelPrice(msgspec.Struct, frozen=True, kw_only=True, dict=True):
    """A model's prices in USD per million tokens.

    ``cache_read`` / ``cache_write`` of ``None`` mean the provider has no separate cache
    price and those tokens are billed as ordinary input. ``tiers`` (ascending by
    ``above_input_tokens``) replace all four prices for long prompts. Invalid values raise
    ``ValueError`` naming the field. Use ``ModelPrice.of`` to build one from floats.
    """

    input: Decimal
    output: Decimal
    cache_read: Decimal | None = None
    cache_write: Decimal | None = None
    tiers: tuple[PriceTier, ...] = ()

    def __post_init__(self) -> None:
        _require_price(self.input, "input")
        _require_price(self.output, "output")
        _require_optional_price(self.cache_read, "cache_read")
        _require_optional_price(self.cache_write, "cache_write")
        previous = -1
        for i, tier in enumerate(self.tiers):
            if not isinstance(tier, PriceTier):
                raise ValueError(f"tiers[{i}]: expected a PriceTier, got {tier!r}")
            if tier.above_input_tokens <= previous:
                raise ValueError(
                    f"tiers[{i}].above_input_tokens: expected ascending thresholds, "
                    f"got {tier.above_input_tokens!r} after {previous!r}"
                )
            previous = tier.above_input_tokens

    @classmethod
    def of(
        cls,
        *,
        input: Decimal | float | str,
        output: Decimal | float | str,
        cache_read: Decimal | float | str | None = None,
        cache_write: Decimal | float | str | None = None,
    ) -> ModelPrice:
        """A flat price from floats or strings, converted exactly as written (0.15 is 0.15)."""
        return cls(
            input=_to_decimal(input),
            output=_to_decimal(output),
            cache_read=None if cache_read is None else _to_decimal(cache_read),
            cache_write=None if cache_write is None else _to_decimal(cache_write),
        )

    def for_prompt(self, input_tokens: int) -> ModelPrice:
        """The flat prices (no tiers) that apply to a request with this many prompt tokens."""
        for tier in reversed(self.tiers):
            # Strictly above, as the providers publish it ("prompts > 200k tokens").
            if input_tokens > tier.above_input_tokens:
                return ModelPrice(
                    input=tier.input,
                    output=tier.output,
                    cache_read=tier.cache_read,
                    cache_write=tier.cache_write,
                )
        if not self.tiers:
            return self
        return ModelPrice(
            input=self.input,
            output=self.output,
            cache_read=self.cache_read,
            cache_write=self.cache_write,
        )

    def cost(self, usage: Usage) -> Decimal:
        """Exact USD cost of ``usage``.

        Uncached prompt tokens (``input_tokens - cache_read_tokens - cache_write_tokens``) are
        billed at ``input``, cache reads at ``cache_read``, cache writes at ``cache_write``,
        and ``output_tokens`` (reasoning included) at ``output``. If a codec reported more
        cached tokens than prompt tokens, the uncached part counts as 0 rather than negative.
        """
        read = usage.cache_read_tokens
        write = usage.cache_write_tokens
        if not read and not write and not self.tiers:  # most calls: integer arithmetic
            input_units, output_units, divisor = self._flat
            units = usage.input_tokens * input_units + usage.output_tokens * output_units
            return _EXACT.divide(Decimal(units), divisor)
        p = self.for_prompt(usage.input_tokens)
        c = _EXACT
        uncached = max(usage.input_tokens - read - write, 0)
        cache_read = p.input if p.cache_read is None else p.cache_read
        cache_write = p.input if p.cache_write is None else p.cache_write
        total = c.add(
            c.add(c.multiply(Decimal(uncached), p.input), c.multiply(Decimal(read), cache_read)),
            c.add(
                c.multiply(Decimal(write), cache_write),
                c.multiply(Decimal(usage.output_tokens), p.output),
            ),
        )
        return c.divide(total, _MILLION)

    @functools.cached_property
    def _flat(self) -> tuple[int, int, Decimal]:
        """``input`` and ``output`` as whole numbers of 10**-places USD per million tokens,
        and the divisor back to USD per token: a cost is then an exact sum of integers,
        divided once."""
        places = max(0, -_exponent(self.input), -_exponent(self.output))
        return (
            int(self.input.scaleb(places, _EXACT)),
            int(self.output.scaleb(places, _EXACT)),
            _MILLION.scaleb(places, _EXACT),
        )

    def max_cost(self, input_tokens: int, max_output_tokens: int) -> Decimal:
        """The most a request with this prompt size and output cap can cost: every prompt
        token at the dearest input-side price (a cache write can cost more than input)."""
        p = self.for_prompt(input_tokens)
        dearest = max(x for x in (p.input, p.cache_read, p.cache_write) if x is not None)
        c = _EXACT
        total = c.add(
            c.multiply(Decimal(input_tokens), dearest),
            c.multiply(Decimal(max_output_tokens), p.output),
        )
        return c.divide(total, _MILLION)


def _exponent(price: Decimal) -> int:
    exponent = price.as_tuple().exponent
    assert isinstance(exponent, int)  # prices are finite (checked on construction)
    return exponent


# genai-prices ids its lookups resolve across every provider (the model names the provider,
# ``litellm`` style): for these the whole data is kept.
_WHOLE_DATA_IDS = frozenset({"litellm"})


def _data_providers() -> list[gp_types.Provider]:
    """genai-prices' bundled providers: the program's own module if it imported one, else a
    fresh copy that no module keeps (``runpy`` runs the module without registering it)."""
    module = sys.modules.get("genai_prices.data")
    if module is not None:
        return module.providers  # type: ignore[no-any-return]
    providers: list[gp_types.Provider] = runpy.run_module("genai_prices.data")["providers"]
    return providers


@final
class _BundledPrices:
    """genai-prices' bundled data, kept only for the provider ids looked up.

    Importing ``genai_prices.data`` builds the prices of all its providers (47, ~16,000
    objects) and keeps them for the life of the process, where every full garbage
    collection walks them: at high concurrency that pause is the tail latency (README,
    Performance). So the data is read apart (``_data_providers``), and what a lookup by one
    provider id can reach is kept: the provider genai-prices resolves the id to (its own
    ``find_provider_by_id``, so aliases resolve as it resolves them) and the providers that
    one's models fall back to. Lookups answer as over the whole data (a test checks every
    provider and model). Our own snapshot, too: genai-prices' global one may be swapped for
    downloaded data by anyone calling ``UpdatePrices`` in this process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()  # the runtime loads in a thread
        self._ids: frozenset[str] = frozenset()
        self._kept: dict[int, gp_types.Provider] = {}  # by place in the data: lookups go in order
        self._snapshot: DataSnapshot | None = None

    def has(self, provider_id: str) -> bool:
        return provider_id in self._ids

    def snapshot(self, provider_id: str) -> DataSnapshot:
        """A snapshot that answers lookups for ``provider_id``; may read the data (~40 ms;
        the first time in a process, ~250 ms with genai-prices' imports)."""
        snapshot = self._snapshot
        if snapshot is None or provider_id not in self._ids:
            snapshot = self.load([provider_id])
        return snapshot

    def load(self, provider_ids: Iterable[str]) -> DataSnapshot:
        """Keep what lookups for ``provider_ids`` need (one reading of the data for all)."""
        from genai_prices.data_snapshot import DataSnapshot, find_provider_by_id

        with self._lock:
            missing = set(provider_ids) - self._ids
            if missing or self._snapshot is None:
                providers = _data_providers()
                place = {p.id: i for i, p in enumerate(providers)}
                for provider_id in missing:
                    if provider_id.lower() in _WHOLE_DATA_IDS:
                        reached = providers
                    else:
                        found = find_provider_by_id(providers, provider_id)
                        fallbacks = () if found is None else found.fallback_model_providers or ()
                        reached = [found] if found is not None else []
                        reached += [providers[place[f]] for f in fallbacks if f in place]
                    for provider in reached:
                        self._kept.setdefault(place[provider.id], provider)
                kept = [self._kept[i] for i in sorted(self._kept)]
                self._snapshot = DataSnapshot(providers=kept, from_auto_update=False)
                self._ids |= missing
            return self._snapshot


_BUNDLED = _BundledPrices()


def _tier_value(price: Decimal | gp_types.TieredPrices | None, input_tokens: int) -> Decimal | None:
    from genai_prices.types import TieredPrices

    if isinstance(price, TieredPrices):
        value = price.base
        for tier in reversed(price.tiers):
            if input_tokens > tier.start:
                value = tier.price
                break
        return value
    return price


def _from_genai(mp: gp_types.ModelPrice) -> ModelPrice:
    from genai_prices.types import TieredPrices

    fields = (mp.input_mtok, mp.output_mtok, mp.cache_read_mtok, mp.cache_write_mtok)
    starts = sorted(
        {t.start for f in fields if isinstance(f, TieredPrices) for t in f.tiers},
    )

    def at(n: int) -> tuple[Decimal, Decimal, Decimal | None, Decimal | None]:
        i, o, r, w = (_tier_value(f, n) for f in fields)
        # genai-prices bills an unpriced unit at 0 (embedding models have no output price).
        return (i or Decimal(0), o or Decimal(0), r, w)

    i, o, r, w = at(0)
    tiers = []
    for s in starts:
        ti, to, tr, tw = at(s + 1)
        tiers.append(
            PriceTier(above_input_tokens=s, input=ti, output=to, cache_read=tr, cache_write=tw)
        )
    return ModelPrice(input=i, output=o, cache_read=r, cache_write=w, tiers=tuple(tiers))


def _utc_now() -> datetime:
    return datetime.now(UTC)


@final
class PriceBook:
    """Looks up model prices and prices usage.

    ``overrides`` maps ``"kind:model"`` or plain ``"model"`` (custom or self-hosted models)
    to a ``ModelPrice``; the qualified key wins, and overrides win over genai-prices. Keys
    match exactly. Provider kinds ``openai``, ``anthropic`` and ``gemini`` map to
    genai-prices' ``openai``, ``anthropic`` and ``google``.

    Unknown pairs are remembered (and logged) once; past 4096 distinct pairs, further ones
    are still ``None`` but no longer remembered or logged.

    Only text tokens are priced: audio/image rates, per-search fees and Anthropic's 1-hour
    cache-write rate are ignored, since ``Usage`` does not report them.
    """

    __slots__ = ("_converted", "_found", "_now", "_overrides", "_recent", "_unknown")

    def __init__(
        self,
        overrides: Mapping[str, ModelPrice] | None = None,
        *,
        now: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._overrides: dict[str, ModelPrice] = {}
        for key, price in (overrides or {}).items():
            if not isinstance(price, ModelPrice):
                raise ValueError(f"overrides[{key!r}]: expected a ModelPrice, got {price!r}")
            self._overrides[key] = price
        self._now = now
        self._found: dict[tuple[str, str], gp_types.ModelInfo] = {}
        self._converted: dict[int, tuple[gp_types.ModelPrice, ModelPrice]] = {}
        self._unknown: set[tuple[str, str]] = set()
        self._recent: dict[tuple[str, str], tuple[float, ModelPrice | None]] = {}

    @staticmethod
    def loaded(provider_kinds: Iterable[str]) -> bool:
        """Whether genai-prices' data for these kinds is in memory (once per process)."""
        return all(_BUNDLED.has(_genai_id(k)) for k in provider_kinds)

    def preload(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Look up these ``(provider_kind, model)`` pairs now. The first lookup for a kind
        in a process reads genai-prices' data: about a quarter of a second of imports the
        first time, which at the first priced call would stall every task on the event loop.
        Blocking: the runtime runs it in a thread, at open."""
        pairs = list(pairs)
        _BUNDLED.load(_genai_id(kind) for kind, _ in pairs)
        for kind, model in pairs:
            self.price(kind, model)

    @property
    def unknown_models(self) -> frozenset[tuple[str, str]]:
        """The ``(provider_kind, model)`` pairs asked about that have no price."""
        return frozenset(self._unknown)

    def price(self, provider_kind: str, model: str) -> ModelPrice | None:
        """The model's prices, or ``None`` (logged once per pair) if nobody knows them."""
        key = (provider_kind, model)
        hit = self._recent.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        price = self._price(provider_kind, model)
        if len(self._recent) < _MAX_REMEMBERED:
            # Prices change by date (a price cut), not by the request: an hour is fresh enough.
            self._recent[key] = (now + _FRESH_S, price)
        return price

    def _price(self, provider_kind: str, model: str) -> ModelPrice | None:
        override = self._overrides.get(f"{provider_kind}:{model}")
        if override is None:
            override = self._overrides.get(model)
        if override is not None:
            return override
        key = (provider_kind, model)
        if key in self._unknown:
            return None
        info = self._found.get(key)
        if info is None:
            info = self._lookup(provider_kind, model)
            if info is None:
                self._report_unknown(key)
                return None
            if len(self._found) < _MAX_REMEMBERED:
                self._found[key] = info
        return self._convert(info.get_prices(self._now()))

    def cost(self, provider_kind: str, model: str, usage: Usage) -> Decimal | None:
        """Exact USD cost of ``usage`` (see ``ModelPrice.cost``); ``None`` if unpriced."""
        price = self.price(provider_kind, model)
        return None if price is None else price.cost(usage)

    def estimate_cost(
        self, provider_kind: str, model: str, input_tokens: int, max_output_tokens: int
    ) -> Decimal | None:
        """The most a call may cost, for routing and budgets before it is made.

        An upper bound provided the prompt has at most ``input_tokens`` tokens and the reply
        at most ``max_output_tokens``; ``None`` if the model is unpriced.
        """
        for name, n in (("input_tokens", input_tokens), ("max_output_tokens", max_output_tokens)):
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {n!r}")
        price = self.price(provider_kind, model)
        return None if price is None else price.max_cost(input_tokens, max_output_tokens)

    def _lookup(self, provider_kind: str, model: str) -> gp_types.ModelInfo | None:
        provider_id = _genai_id(provider_kind)
        try:
            _, info = _BUNDLED.snapshot(provider_id).find_provider_model(
                model, None, provider_id, None
            )
        except LookupError:
            return None
        return info

    def _convert(self, mp: gp_types.ModelPrice) -> ModelPrice:
        hit = self._converted.get(id(mp))
        # The source object is kept alongside, so its id cannot be reused while cached.
        if hit is not None and hit[0] is mp:
            return hit[1]
        price = _from_genai(mp)
        if len(self._converted) < _MAX_REMEMBERED:
            self._converted[id(mp)] = (mp, price)
        return price

    def _report_unknown(self, key: tuple[str, str]) -> None:
        if len(self._unknown) >= _MAX_REMEMBERED:
            return
        self._unknown.add(key)
        _log.warning(
            "no price for model; its cost is unknown",
            provider_kind=key[0],
            model=key[1],
        )
