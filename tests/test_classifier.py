"""Task-type classifier: accuracy on a labelled prompt set, targeted rules, robustness.

``tests/data/task_prompts.jsonl`` holds one labelled prompt a line::

    {"prompt": ..., "task": ..., "system": optional, "json_output": optional bool,
     "repeat": optional int, "question": optional, "in_system": optional bool,
     "split": optional "holdout"}

``json_output`` asks for structured output (a ``response_format``). ``repeat: N`` makes a long
prompt from a short seed: the seed repeated N times, then ``question``; with ``in_system`` the
repeated text is the system prompt and ``question`` the user message. Items marked
``"split": "holdout"`` were written after the rules were settled and never used to tune them;
their accuracy is printed separately as an honest estimate.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors._classifier import TASK_TYPES, RuleClassifier, TaskClassifier, TaskType
from protocols import Message, Request, TextPart, build_request

DATA = Path(__file__).parent / "data" / "task_prompts.jsonl"

OVERALL_FLOOR = 0.85
PER_CLASS_FLOOR = 0.7

_SCHEMA = {"type": "object", "properties": {"result": {"type": "string"}}}


def make_request(
    prompt: str,
    *,
    system: str | None = None,
    json_output: bool = False,
    **options: Any,
) -> Request:
    messages: list[dict[str, Any]] = []
    if system is not None:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": prompt})
    if json_output:
        options["response_format"] = {"name": "result", "schema": _SCHEMA}
    return build_request(
        messages, options, request_id="t", now=0.0, default_timeout=60.0, stream=False
    )


def item_request(item: dict[str, Any]) -> Request:
    prompt: str = item["prompt"]
    system: str | None = item.get("system")
    repeat = item.get("repeat")
    if repeat is not None:
        body = "\n\n".join([prompt] * repeat)
        question = item.get("question", "")
        if item.get("in_system"):
            system, prompt = body, question
        else:
            prompt = f"{body}\n\n{question}" if question else body
    return make_request(prompt, system=system, json_output=bool(item.get("json_output")))


def load_items() -> list[dict[str, Any]]:
    with DATA.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


ITEMS = load_items()


# --- the labelled set ---------------------------------------------------------------------


def test_labelled_set_is_well_formed() -> None:
    counts = Counter(item["task"] for item in ITEMS)
    assert set(counts) == set(TASK_TYPES)
    assert len(ITEMS) >= 150
    assert min(counts.values()) >= 25, counts
    prompts = [item["prompt"] for item in ITEMS]
    assert len(set(prompts)) == len(prompts), "duplicate prompts"


def evaluate(
    classifier: TaskClassifier, items: list[dict[str, Any]], title: str
) -> tuple[float, dict[str, float]]:
    """Overall and per-class accuracy; prints a confusion matrix and the misses."""
    confusion: Counter[tuple[str, str]] = Counter()
    misses: list[tuple[str, str, str]] = []
    for item in items:
        expected = item["task"]
        got = classifier.classify(item_request(item))
        confusion[expected, got] += 1
        if got != expected:
            misses.append((expected, got, item["prompt"][:70].replace("\n", " ")))

    total = sum(confusion.values())
    correct = sum(n for (want, got), n in confusion.items() if want == got)
    overall = correct / total
    per_class: dict[str, float] = {}
    width = max(map(len, TASK_TYPES)) + 2
    print(f"\n{title}: {correct}/{total} = {overall:.3f} overall")
    print("want \\ got".ljust(width) + " ".join(t[:6].rjust(6) for t in TASK_TYPES))
    for want in TASK_TYPES:
        row = sum(n for (w, _), n in confusion.items() if w == want)
        per_class[want] = confusion[want, want] / row if row else float("nan")
        cells = " ".join(str(confusion[want, got]).rjust(6) for got in TASK_TYPES)
        print(f"{want.ljust(width)}{cells}   n={row:<3} acc {per_class[want]:.2f}")
    for expected, actual, text in misses:
        print(f"  miss: {expected} -> {actual}: {text}")
    return overall, per_class


def test_accuracy_on_labelled_set() -> None:
    classifier = RuleClassifier()
    overall, per_class = evaluate(classifier, ITEMS, "task-type classifier, whole set")
    evaluate(classifier, [i for i in ITEMS if i.get("split") != "holdout"], "tuning part")
    evaluate(classifier, [i for i in ITEMS if i.get("split") == "holdout"], "held-out part")
    assert overall >= OVERALL_FLOOR
    for task, accuracy in per_class.items():
        assert accuracy >= PER_CLASS_FLOOR, (task, accuracy)


# --- targeted rules ------------------------------------------------------------------------


def test_response_format_means_extraction() -> None:
    classifier = RuleClassifier()
    prompt = "Write a haiku about autumn."
    assert classifier.classify(make_request(prompt)) == "creative"
    assert classifier.classify(make_request(prompt, json_output=True)) == "extraction"


def test_forced_single_tool_means_extraction() -> None:
    tool = {"name": "record", "parameters": {"type": "object"}}
    prompt = "Tell me about the weather in Oslo."
    named = make_request(prompt, tools=[tool], tool_choice={"name": "record"})
    required = make_request(prompt, tools=[tool], tool_choice="required")
    auto = make_request(prompt, tools=[tool], tool_choice="auto")
    classifier = RuleClassifier()
    assert classifier.classify(named) == "extraction"
    assert classifier.classify(required) == "extraction"
    assert classifier.classify(auto) == "chat"


def test_long_prompt_means_long_context() -> None:
    page = "The committee reviewed the quarterly figures and noted the delays. " * 40
    question = "\n\nWrite a Python function that parses this report."
    short = make_request(page * 2 + question)  # ~1,300 tokens
    long = make_request(page * 15 + question)  # ~10,000 tokens
    classifier = RuleClassifier()
    assert classifier.classify(short) == "code"
    assert classifier.classify(long) == "long_context"
    # Structured output does not lower the capacity requirement.
    assert classifier.classify(make_request(page * 15, json_output=True)) == "long_context"
    # The threshold is configurable.
    assert RuleClassifier(long_context_tokens=1000).classify(short) == "long_context"


def test_long_context_counts_every_message() -> None:
    chunk = "Meeting notes: the rollout slipped a week. " * 200  # ~2,150 tokens each
    messages: list[dict[str, Any]] = []
    for _ in range(4):
        messages.append({"role": "user", "content": chunk})
        messages.append({"role": "assistant", "content": "Noted."})
    messages.append({"role": "user", "content": "What changed?"})
    request = build_request(
        messages, {}, request_id="t", now=0.0, default_timeout=60.0, stream=False
    )
    assert RuleClassifier().classify(request) == "long_context"


def test_only_last_user_message_and_system_are_scanned() -> None:
    messages = [
        {"role": "user", "content": "Write a sonnet about the sea."},
        {"role": "assistant", "content": "Here it is..."},
        {"role": "user", "content": "Thanks! Where should I go on holiday in May?"},
    ]
    request = build_request(
        messages, {}, request_id="t", now=0.0, default_timeout=60.0, stream=False
    )
    assert RuleClassifier().classify(request) == "chat"
    coder = make_request("Make it faster.", system="You are a senior Python engineer.")
    assert RuleClassifier().classify(coder) == "code"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("```js\nconst x = 1\n```", "code"),
        ("Solve 2x + 3 = 11", "math"),
        ("Extract the names from: Ann met Bo.", "extraction"),
        ("Write me a poem about rain", "creative"),
        ("Good morning!", "chat"),
        ("", "chat"),
    ],
)
def test_obvious_cases(prompt: str, expected: TaskType) -> None:
    assert RuleClassifier().classify(make_request(prompt)) == expected


def test_content_parts_are_read() -> None:
    message = Message(role="user", content=(TextPart("Prove that "), TextPart("e is irrational.")))
    request = build_request(
        [message], {}, request_id="t", now=0.0, default_timeout=60.0, stream=False
    )
    assert RuleClassifier().classify(request) == "math"


def test_ties_follow_precedence() -> None:
    classifier = RuleClassifier()
    # "json" (extraction, 4) against a traceback (code, 4): extraction goes first.
    text = "json segfault"
    assert classifier.scores(text) == {"extraction": 4.0, "code": 4.0}
    assert classifier.classify_text(text) == "extraction"
    # "poem" (creative, 4) against "integral" + "compute" (math, 3 + 2): the higher score wins.
    assert classifier.classify_text("a poem to compute the integral") == "math"


def test_extra_keywords() -> None:
    prompt = "Draft the quarterly OKRs for the platform team."
    assert RuleClassifier().classify(make_request(prompt)) == "chat"
    custom = RuleClassifier(extra_keywords={"creative": ["OKRs", "draft the"]})
    assert custom.classify(make_request(prompt)) == "creative"
    chatty = RuleClassifier(extra_keywords={"chat": ["weather"]})
    assert chatty.classify(make_request("How's the weather, how many degrees?")) == "chat"
    with pytest.raises(ValueError, match="long_context"):
        RuleClassifier(extra_keywords={"long_context": ["book"]})
    # A bare string is one keyword, not a list of letters.
    assert RuleClassifier(extra_keywords={"math": "okr"}).classify_text("a b c") == "chat"
    assert RuleClassifier(extra_keywords={"math": "okr"}).classify_text("the OKR") == "math"
    with pytest.raises(ValueError, match="long_context_tokens"):
        RuleClassifier(long_context_tokens=0)


def test_custom_classifier_satisfies_protocol() -> None:
    class AlwaysCode:
        def classify(self, request: Request) -> TaskType:
            return "code"

    def route(classifier: TaskClassifier, request: Request) -> TaskType:
        return classifier.classify(request)

    request = make_request("hello")
    assert route(AlwaysCode(), request) == "code"
    assert route(RuleClassifier(), request) == "chat"


def test_task_types_match_literal() -> None:
    assert set(TASK_TYPES) == set(get_args(TaskType))


# --- robustness -----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    prompt=st.text(max_size=2000),
    system=st.none() | st.text(max_size=300),
    json_output=st.booleans(),
)
def test_arbitrary_text_never_raises(prompt: str, system: str | None, json_output: bool) -> None:
    request = make_request(prompt, system=system, json_output=json_output)
    assert RuleClassifier().classify(request) in TASK_TYPES


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet=st.characters(codec="utf-8"), max_size=5000))
def test_classify_text_total(text: str) -> None:
    classifier = RuleClassifier(extra_keywords={"chat": ["hi"], "math": [".*", "(("]})
    assert classifier.classify_text(text) in TASK_TYPES
    assert all(score > 0 for score in classifier.scores(text).values())
