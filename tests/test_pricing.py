from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction
from typing import Any

import genai_prices
import msgspec
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from actors._pricing import ModelPrice, PriceBook, PriceTier, _BundledPrices
from protocols import Usage

D = Decimal
M = D(1_000_000)

# Published per-million-token prices (USD), written out by hand from the providers' pages:
#   OpenAI     https://openai.com/api/pricing/
#   Anthropic  https://www.anthropic.com/pricing#api (docs.anthropic.com .../about-claude/pricing)
#   Google     https://ai.google.dev/gemini-api/docs/pricing
# genai-prices' bundled data agrees with every value below (checked in
# test_bundled_prices_match_published_pages). Where the page changed over time the bundled
# (current) value is used: Gemini 2.5 context caching was $0.075 (Flash) and $0.31/$0.625 (Pro)
# at launch and is $0.03 and $0.125/$0.25 now.
GPT_4O_MINI = ModelPrice.of(input="0.15", output="0.60", cache_read="0.075")
O4_MINI = ModelPrice.of(input="1.10", output="4.40", cache_read="0.275")
CLAUDE_SONNET_4 = ModelPrice.of(input="3", output="15", cache_read="0.30", cache_write="3.75")
CLAUDE_HAIKU_35 = ModelPrice.of(input="0.80", output="4", cache_read="0.08", cache_write="1")
# Sonnet 4.5 long context: prompts over 200k tokens are billed $6/$22.50, write $7.50, read $0.60.
CLAUDE_SONNET_45 = ModelPrice(
    input=D("3"),
    output=D("15"),
    cache_read=D("0.30"),
    cache_write=D("3.75"),
    tiers=(
        PriceTier(
            above_input_tokens=200_000,
            input=D("6"),
            output=D("22.50"),
            cache_read=D("0.60"),
            cache_write=D("7.50"),
        ),
    ),
)
GEMINI_25_FLASH = ModelPrice.of(input="0.30", output="2.50", cache_read="0.03")
# Gemini 2.5 Pro: prompts <= 200k tokens $1.25 in / $10 out / $0.125 cached; above, $2.50 /
# $15 / $0.25.
GEMINI_25_PRO = ModelPrice(
    input=D("1.25"),
    output=D("10"),
    cache_read=D("0.125"),
    tiers=(
        PriceTier(
            above_input_tokens=200_000, input=D("2.50"), output=D("15"), cache_read=D("0.25")
        ),
    ),
)
# Gemini 1.5 Pro: <= 128k $1.25 / $5, above $2.50 / $10. The page also listed context caching
# ($0.3125); genai-prices has no cache price for it, so cached tokens bill as input.
GEMINI_15_PRO = ModelPrice(
    input=D("1.25"),
    output=D("5"),
    tiers=(PriceTier(above_input_tokens=128_000, input=D("2.50"), output=D("10")),),
)

PUBLISHED = [
    ("openai", "gpt-4o-mini", GPT_4O_MINI),
    ("openai", "o4-mini", O4_MINI),
    ("anthropic", "claude-sonnet-4-20250514", CLAUDE_SONNET_4),
    ("anthropic", "claude-3-5-haiku-latest", CLAUDE_HAIKU_35),
    ("anthropic", "claude-sonnet-4-5", CLAUDE_SONNET_45),
    ("gemini", "gemini-2.5-flash", GEMINI_25_FLASH),
    ("gemini", "gemini-2.5-pro", GEMINI_25_PRO),
    ("gemini", "gemini-1.5-pro", GEMINI_15_PRO),
]

FIXED_NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def book() -> PriceBook:
    return PriceBook(now=lambda: FIXED_NOW)


@pytest.mark.parametrize(("kind", "model", "published"), PUBLISHED)
def test_bundled_prices_match_published_pages(kind: str, model: str, published: ModelPrice) -> None:
    assert book().price(kind, model) == published


def test_dated_model_names_resolve_to_the_same_price() -> None:
    b = book()
    assert b.price("openai", "gpt-4o-mini-2024-07-18") == GPT_4O_MINI
    assert b.price("anthropic", "claude-sonnet-4-0") == CLAUDE_SONNET_4


# --- costs computed by hand ------------------------------------------------------------------


def test_gpt_4o_mini_with_cached_input() -> None:
    u = Usage(input_tokens=10_000, cache_read_tokens=4_000, output_tokens=500)
    # 6,000 uncached at $0.15, 4,000 cached at $0.075, 500 out at $0.60 (per million).
    hand = (6_000 * D("0.15") + 4_000 * D("0.075") + 500 * D("0.60")) / M
    assert hand == D("0.0015")
    assert book().cost("openai", "gpt-4o-mini", u) == hand


def test_reasoning_tokens_are_billed_once_as_output() -> None:
    with_reasoning = Usage(input_tokens=2_000, output_tokens=3_000, reasoning_tokens=2_500)
    without = Usage(input_tokens=2_000, output_tokens=3_000)
    hand = (2_000 * D("1.10") + 3_000 * D("4.40")) / M
    assert hand == D("0.0154")
    b = book()
    assert b.cost("openai", "o4-mini", with_reasoning) == hand
    assert b.cost("openai", "o4-mini", without) == hand


def test_claude_cache_reads_and_writes() -> None:
    u = Usage(
        input_tokens=12_000, cache_read_tokens=8_000, cache_write_tokens=3_000, output_tokens=1_000
    )
    # 1,000 uncached at $3, 8,000 read at $0.30, 3,000 written at $3.75, 1,000 out at $15.
    hand = (1_000 * D(3) + 8_000 * D("0.30") + 3_000 * D("3.75") + 1_000 * D(15)) / M
    assert hand == D("0.03165")
    assert book().cost("anthropic", "claude-sonnet-4-20250514", u) == hand


def test_claude_haiku() -> None:
    u = Usage(input_tokens=5_000, cache_write_tokens=5_000, output_tokens=200)
    hand = (5_000 * D(1) + 200 * D(4)) / M
    assert book().cost("anthropic", "claude-3-5-haiku-latest", u) == hand == D("0.0058")


def test_claude_sonnet_45_long_context_tier() -> None:
    u = Usage(input_tokens=300_000, cache_write_tokens=100_000, output_tokens=10_000)
    hand = (200_000 * D(6) + 100_000 * D("7.50") + 10_000 * D("22.50")) / M
    assert hand == D("2.175")
    assert book().cost("anthropic", "claude-sonnet-4-5", u) == hand


def test_gemini_flash_per_million() -> None:
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert book().cost("gemini", "gemini-2.5-flash", u) == D("2.80")


def test_gemini_pro_tier_applies_strictly_above_200k_prompt_tokens() -> None:
    b = book()
    at_limit = Usage(input_tokens=200_000, output_tokens=2_000)
    assert b.cost("gemini", "gemini-2.5-pro", at_limit) == (200_000 * D("1.25") + 2_000 * D(10)) / M
    over = Usage(input_tokens=250_000, cache_read_tokens=50_000, output_tokens=2_000)
    # Above 200k every token, output and cache reads included, is at the higher rate.
    hand = (200_000 * D("2.50") + 50_000 * D("0.25") + 2_000 * D(15)) / M
    assert hand == D("0.5425")
    assert b.cost("gemini", "gemini-2.5-pro", over) == hand


def test_cached_tokens_bill_as_input_when_there_is_no_cache_price() -> None:
    u = Usage(input_tokens=1_000, cache_read_tokens=500, output_tokens=100)
    hand = (1_000 * D("1.25") + 100 * D(5)) / M
    assert book().cost("gemini", "gemini-1.5-pro", u) == hand == D("0.00175")


def test_more_cached_than_prompt_tokens_never_goes_negative() -> None:
    # A codec bug (cache not included in input_tokens): cached parts are still billed.
    u = Usage(input_tokens=100, cache_read_tokens=1_000, output_tokens=0)
    assert book().cost("openai", "gpt-4o-mini", u) == 1_000 * D("0.075") / M


def test_date_dependent_prices_follow_the_injected_clock() -> None:
    # OpenAI cut o3 from $10/$40 to $2/$8 on 2025-06-10. (genai-prices gives the old period a
    # $0.50 cached rate where the page said $2.50; cache reads are not checked here.)
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    before = PriceBook(now=lambda: datetime(2025, 5, 1, tzinfo=UTC))
    after = PriceBook(now=lambda: datetime(2025, 7, 1, tzinfo=UTC))
    assert before.cost("openai", "o3", u) == D(50)
    assert after.cost("openai", "o3", u) == D(10)


# --- agreement with genai-prices' own calculation --------------------------------------------

_GENAI_ID = {"openai": "openai", "anthropic": "anthropic", "gemini": "google"}


@st.composite
def usages(draw: st.DrawFn) -> Usage:
    prompt = draw(st.one_of(st.integers(0, 5_000), st.integers(0, 600_000)))
    read = draw(st.integers(0, prompt))
    write = draw(st.integers(0, prompt - read))
    out = draw(st.integers(0, 200_000))
    reasoning = draw(st.integers(0, out))
    return Usage(
        input_tokens=prompt,
        cache_read_tokens=read,
        cache_write_tokens=write,
        output_tokens=out,
        reasoning_tokens=reasoning,
    )


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PUBLISHED), usages())
def test_cost_matches_genai_prices_calc_price(entry: tuple[str, str, ModelPrice], u: Usage) -> None:
    kind, model, published = entry
    ours = book().cost(kind, model, u)
    theirs = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=u.input_tokens,
            cache_read_tokens=u.cache_read_tokens,
            cache_write_tokens=u.cache_write_tokens,
            output_tokens=u.output_tokens,
        ),
        model,
        provider_id=_GENAI_ID[kind],
        genai_request_timestamp=FIXED_NOW,
    ).total_price
    assert ours == theirs == published.cost(u)


prices = st.decimals(min_value=0, max_value=1000, places=None, allow_nan=False).filter(
    lambda d: d.as_tuple().exponent >= -12
) | st.builds(lambda n, p: D(n).scaleb(-p), st.integers(0, 10**7), st.integers(0, 9))


@settings(max_examples=300, deadline=None)
@given(prices, prices, st.integers(0, 2_000_000), st.integers(0, 2_000_000))
def test_a_plain_call_costs_exactly_its_tokens_times_the_prices(
    price_in: D, price_out: D, prompt: int, output: int
) -> None:
    # Calls without cache tokens on flat prices are summed as integers; the answer must be
    # the exact rational one, whatever the prices' decimal places.
    price = ModelPrice(input=price_in, output=price_out)
    cost = price.cost(Usage(input_tokens=prompt, output_tokens=output))
    exact = (Fraction(prompt) * Fraction(price_in) + Fraction(output) * Fraction(price_out)) / 10**6
    assert Fraction(cost) == exact
    assert price.cost(Usage(input_tokens=prompt, output_tokens=output)) == cost  # cached form


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(PUBLISHED), usages())
def test_estimate_is_an_upper_bound(entry: tuple[str, str, ModelPrice], u: Usage) -> None:
    kind, model, _ = entry
    b = book()
    estimate = b.estimate_cost(kind, model, u.input_tokens, u.output_tokens)
    cost = b.cost(kind, model, u)
    assert estimate is not None and cost is not None
    assert cost <= estimate


def test_estimate_uses_the_dearest_input_side_price() -> None:
    # Every prompt token might be a cache write ($3.75 > $3 input for Sonnet 4).
    est = book().estimate_cost("anthropic", "claude-sonnet-4-20250514", 1_000, 500)
    assert est == (1_000 * D("3.75") + 500 * D(15)) / M == D("0.01125")


def test_estimate_rejects_negative_counts() -> None:
    with pytest.raises(ValueError, match="max_output_tokens"):
        book().estimate_cost("openai", "gpt-4o-mini", 10, -1)


# --- overrides and unknown models -----------------------------------------------------------


def test_override_prices_a_custom_model() -> None:
    llama = ModelPrice.of(input=0.20, output=0.40)
    b = PriceBook({"my-llama": llama})
    assert b.price("openai", "my-llama") == llama
    u = Usage(input_tokens=1_000, cache_read_tokens=400, output_tokens=1_000)
    assert b.cost("openai", "my-llama", u) == (1_000 * D("0.20") + 1_000 * D("0.40")) / M
    assert b.estimate_cost("openai", "my-llama", 1_000, 1_000) == D("0.0006")
    assert b.unknown_models == frozenset()


def test_qualified_override_wins_over_plain_and_over_bundled() -> None:
    plain = ModelPrice.of(input=1, output=1)
    qualified = ModelPrice.of(input=2, output=2)
    b = PriceBook({"gpt-4o-mini": plain, "openai:gpt-4o-mini": qualified})
    assert b.price("openai", "gpt-4o-mini") == qualified
    assert b.price("gemini", "gpt-4o-mini") == plain


def test_unknown_model_is_none_and_warned_once() -> None:
    b = book()
    u = Usage(input_tokens=10, output_tokens=10)
    with structlog.testing.capture_logs() as logs:
        assert b.cost("openai", "self-hosted-mystery", u) is None
        assert b.price("openai", "self-hosted-mystery") is None
        assert b.estimate_cost("openai", "self-hosted-mystery", 10, 10) is None
        assert b.cost("openai", "self-hosted-mystery", u) is None
        assert b.cost("nonexistent-kind", "gpt-4o-mini", u) is None
    warnings = [e for e in logs if e["log_level"] == "warning"]
    assert [(e["provider_kind"], e["model"]) for e in warnings] == [
        ("openai", "self-hosted-mystery"),
        ("nonexistent-kind", "gpt-4o-mini"),
    ]
    assert b.unknown_models == {
        ("openai", "self-hosted-mystery"),
        ("nonexistent-kind", "gpt-4o-mini"),
    }


# --- the price struct ------------------------------------------------------------------------


def test_model_price_of_converts_floats_exactly() -> None:
    assert ModelPrice.of(input=0.15, output=0.6).input == D("0.15")


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"input": D(-1), "output": D(1)}, "input"),
        ({"input": D(1), "output": D("NaN")}, "output"),
        ({"input": D(1), "output": D(1), "cache_read": D(-1)}, "cache_read"),
        ({"input": D(1), "output": D(1), "cache_write": 1.0}, "cache_write"),
    ],
)
def test_invalid_prices_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ModelPrice(**kwargs)  # type: ignore[arg-type]


def test_tiers_must_ascend() -> None:
    t1 = PriceTier(above_input_tokens=100, input=D(1), output=D(1))
    t2 = PriceTier(above_input_tokens=50, input=D(1), output=D(1))
    with pytest.raises(ValueError, match=r"tiers\[1\].above_input_tokens"):
        ModelPrice(input=D(1), output=D(1), tiers=(t1, t2))


def test_model_price_round_trips_through_json() -> None:
    raw = msgspec.json.encode(GEMINI_25_PRO)
    assert b'"1.25"' in raw
    assert msgspec.json.decode(raw, type=ModelPrice) == GEMINI_25_PRO
    # Configuration files may give plain numbers.
    assert msgspec.convert({"input": 0.15, "output": 0.6}, ModelPrice) == ModelPrice.of(
        input="0.15", output="0.6"
    )


# Provider ids genai-prices resolves by its providers' match clauses, not by their ids.
ALIASES = {"bedrock", "amazon", "vertex", "gemini", "google-vertex", "together_ai", "xai"}


def _resolve(snapshot: Any, ref: str, provider_id: str) -> object:
    try:
        provider, model = snapshot.find_provider_model(ref, None, provider_id, None)
    except LookupError:
        return "no price"
    return provider.id, model.id, model.prices


def test_prices_kept_for_a_provider_id_answer_as_the_whole_data_does() -> None:
    from genai_prices.data import providers
    from genai_prices.data_snapshot import DataSnapshot, find_provider_by_id

    whole = DataSnapshot(providers=providers, from_auto_update=False)
    by_id = {p.id: p for p in providers}
    one_model_each = {p.models[0].id for p in providers if p.models}
    for provider_id in sorted({p.id for p in providers} | ALIASES | {"litellm", "nobody"}):
        kept = _BundledPrices().snapshot(provider_id)
        found = find_provider_by_id(providers, provider_id)
        reachable = [] if found is None else [found]
        reachable += [by_id[f] for f in (found and found.fallback_model_providers) or ()]
        refs = {m.id for p in reachable for m in p.models} | one_model_each | {"no-such-model"}
        if provider_id == "litellm":
            refs |= {"openai/gpt-4o-mini", "anthropic/claude-sonnet-4-0"}
        for ref in sorted(refs):
            assert _resolve(kept, ref, provider_id) == _resolve(whole, ref, provider_id), (
                provider_id,
                ref,
            )


def test_only_the_providers_looked_up_are_kept() -> None:
    kept = _BundledPrices().load(["openai", "anthropic", "google"])
    # Google's models fall back to Anthropic's (Claude on Vertex): nothing else is needed.
    assert sorted(p.id for p in kept.providers) == ["anthropic", "google", "openai"]
