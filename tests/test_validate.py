from __future__ import annotations

import base64
import copy
import json
import pickle
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import protocols
from protocols import (
    AllProvidersFailed,
    Attempt,
    AuthenticationError,
    ContentFiltered,
    ContextLengthExceeded,
    ErrorEvent,
    ImagePart,
    InvalidRequest,
    Message,
    NotFound,
    Overloaded,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
    RequestOptions,
    RuntimeClosed,
    Secret,
    ServerError,
    StreamInterrupted,
    SwitchyardError,
    TextPart,
    Timeout,
    Tool,
    ToolCallPart,
    ToolResultPart,
    TransportError,
    build_request,
    coerce_messages,
    encode_json,
    estimate_tokens,
    parse_options,
)

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()


def build(messages: Any, options: dict[str, Any] | None = None, **kw: Any) -> protocols.Request:
    args: dict[str, Any] = {
        "request_id": "req-1",
        "now": 100.0,
        "default_timeout": 30.0,
        "stream": False,
    }
    args.update(kw)
    return build_request(messages, options or {}, **args)


def invalid_field(fn: Any, *args: Any) -> str | None:
    with pytest.raises(InvalidRequest) as info:
        fn(*args)
    err = info.value
    assert err.retryable is False
    assert err.failover is False
    assert err.status == 400
    if err.field:
        assert err.message.startswith(f"{err.field}: ")
    return err.field


# --- messages ----------------------------------------------------------------------------------


def test_dict_messages_are_coerced() -> None:
    msgs = coerce_messages(
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ]
    )
    assert msgs == (
        Message(role="system", content="be brief"),
        Message(role="user", content=(TextPart("hi"),)),
    )
    assert all(type(m) is Message for m in msgs)
    assert msgs[1].text == "hi"


_ANY_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=4,
)


_ROLE_OR_NOT = st.sampled_from(["user", "system", "assistant", "tool", "robot", ""]) | _ANY_JSONISH


@settings(max_examples=300)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"role": _ROLE_OR_NOT, "content": st.text(max_size=5) | _ANY_JSONISH},
            optional={"name": st.text(max_size=3) | _ANY_JSONISH, "extra": _ANY_JSONISH},
        )
        | st.dictionaries(st.sampled_from(["role", "content", "name"]), _ROLE_OR_NOT),
        min_size=1,
        max_size=3,
    )
)
def test_plain_dict_messages_convert_as_the_general_conversion_does(
    items: list[dict[str, Any]],
) -> None:
    # The shortcut for {"role", "content": str} dicts must agree with msgspec's conversion:
    # the same messages, or the same error.
    try:
        expected: Any = msgspec.convert(items, tuple[Message, ...])
    except msgspec.ValidationError:
        expected = InvalidRequest
    try:
        got: Any = coerce_messages(items)
    except InvalidRequest:
        got = InvalidRequest
    if got is not InvalidRequest and expected is InvalidRequest:
        pytest.fail(f"accepted what the conversion rejects: {items!r}")
    if expected is not InvalidRequest and got is not InvalidRequest:
        assert got == expected
        assert all(type(m) is Message for m in got)


def test_message_objects_pass_through_and_mix_with_dicts() -> None:
    m = Message(role="user", content="hello")
    assert coerce_messages([m]) == (m,)
    mixed = coerce_messages([m, {"role": "assistant", "content": "hey"}])
    assert mixed == (m, Message(role="assistant", content="hey"))


def test_generator_of_messages_is_accepted() -> None:
    msgs = coerce_messages({"role": "user", "content": str(i)} for i in range(3))
    assert [m.content for m in msgs] == ["0", "1", "2"]


def test_unknown_role() -> None:
    assert invalid_field(coerce_messages, [{"role": "robot", "content": "x"}]) == "messages[0].role"


def test_unknown_role_in_later_message() -> None:
    msgs = [{"role": "user", "content": "x"}, {"role": "wizard", "content": "y"}]
    assert invalid_field(coerce_messages, msgs) == "messages[1].role"


def test_wrong_content_type_and_missing_content() -> None:
    assert invalid_field(coerce_messages, [{"role": "user", "content": 5}]) == "messages[0].content"
    assert invalid_field(coerce_messages, [{"role": "user"}]) == "messages[0]"


def test_empty_message_list() -> None:
    assert invalid_field(coerce_messages, []) == "messages"
    assert invalid_field(coerce_messages, ()) == "messages"


@pytest.mark.parametrize("bad", ["hello", b"hello", {"role": "user", "content": "x"}])
def test_non_list_messages(bad: Any) -> None:
    assert invalid_field(coerce_messages, bad) == "messages"


def test_empty_parts_list() -> None:
    assert invalid_field(coerce_messages, [{"role": "user", "content": []}]) == (
        "messages[0].content"
    )


def test_tool_message_with_plain_text() -> None:
    assert invalid_field(coerce_messages, [{"role": "tool", "content": "42"}]) == (
        "messages[0].content"
    )


def _call(id_: str) -> dict[str, Any]:
    return {"type": "tool_call", "id": id_, "name": "add", "arguments": {"a": 1}}


def _result(id_: str) -> dict[str, Any]:
    return {"type": "tool_result", "tool_call_id": id_, "content": "2"}


def test_tool_result_matching_earlier_call_is_fine() -> None:
    msgs = coerce_messages(
        [
            {"role": "user", "content": "add"},
            {"role": "assistant", "content": [_call("c1")]},
            {"role": "tool", "content": [_result("c1")]},
        ]
    )
    assert isinstance(msgs[1].content[0], ToolCallPart)  # type: ignore[index]
    assert isinstance(msgs[2].content[0], ToolResultPart)  # type: ignore[index]


def test_tool_result_without_matching_call() -> None:
    msgs = [
        {"role": "user", "content": "add"},
        {"role": "assistant", "content": [_call("c1")]},
        {"role": "tool", "content": [_result("c2")]},
    ]
    field = invalid_field(coerce_messages, msgs)
    assert field == "messages[2].content[0].tool_call_id"
    assert field.endswith("tool_call_id")


def test_tool_result_before_its_call() -> None:
    msgs = [
        {"role": "user", "content": "add"},
        {"role": "tool", "content": [_result("c1")]},
        {"role": "assistant", "content": [_call("c1")]},
    ]
    assert invalid_field(coerce_messages, msgs) == "messages[1].content[0].tool_call_id"


def test_tool_call_in_user_message() -> None:
    msgs = [{"role": "user", "content": [{"type": "text", "text": "x"}, _call("c1")]}]
    assert invalid_field(coerce_messages, msgs) == "messages[0].content[1]"


def _image(**kw: Any) -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "image", **kw}]}]


def test_valid_images() -> None:
    by_data = coerce_messages(_image(data=PNG, media_type="image/png"))
    part = by_data[0].content[0]  # type: ignore[index]
    assert isinstance(part, ImagePart)
    assert part.data == PNG
    by_url = coerce_messages(_image(url="https://example.com/cat.png"))
    assert by_url[0].content[0].url == "https://example.com/cat.png"  # type: ignore[union-attr,index]


@pytest.mark.parametrize("data", ["not base64!!", "abc", "QUJD=A==", "\u00e9\u00e9\u00e9\u00e9"])
def test_bad_base64_image(data: str) -> None:
    field = invalid_field(coerce_messages, _image(data=data, media_type="image/png"))
    assert field == "messages[0].content[0].data"


def test_image_with_both_url_and_data() -> None:
    msgs = _image(url="https://example.com/a.png", data=PNG, media_type="image/png")
    assert invalid_field(coerce_messages, msgs) == "messages[0].content[0]"


def test_image_with_neither_url_nor_data() -> None:
    assert invalid_field(coerce_messages, _image()) == "messages[0].content[0]"


@pytest.mark.parametrize("media_type", ["application/pdf", "text/plain", None, ""])
def test_image_data_with_non_image_media_type(media_type: str | None) -> None:
    msgs = _image(data=PNG, media_type=media_type)
    assert invalid_field(coerce_messages, msgs) == "messages[0].content[0].media_type"


# --- options -----------------------------------------------------------------------------------


def test_no_options_gives_defaults() -> None:
    assert parse_options({}) == RequestOptions()


def test_valid_options_are_parsed() -> None:
    opts = parse_options(
        {
            "model": "m",
            "max_tokens": 10,
            "temperature": 0.0,
            "top_p": 1.0,
            "stop": ["\n"],
            "timeout": 5,
            "tools": [{"name": "add", "parameters": {"type": "object", "properties": {}}}],
            "tool_choice": "auto",
        }
    )
    assert opts.max_tokens == 10
    assert opts.temperature == 0.0
    assert opts.top_p == 1.0
    assert opts.stop == ("\n",)
    assert opts.timeout == 5.0
    assert opts.tools == (Tool(name="add", parameters={"type": "object", "properties": {}}),)


@pytest.mark.parametrize("name", ["temprature", "max_output_tokens", "stream"])
def test_unknown_option(name: str) -> None:
    assert invalid_field(parse_options, {"model": "m", name: 1}) == name


@pytest.mark.parametrize("value", [-0.1, 2.01, float("nan"), float("inf")])
def test_temperature_out_of_range(value: float) -> None:
    assert invalid_field(parse_options, {"temperature": value}) == "temperature"


@pytest.mark.parametrize("value", [0.0, 2.0, 1])
def test_temperature_bounds_accepted(value: float) -> None:
    assert parse_options({"temperature": value}).temperature == value


def test_temperature_wrong_type() -> None:
    assert invalid_field(parse_options, {"temperature": "hot"}) == "temperature"


@pytest.mark.parametrize("value", [0, -5])
def test_max_tokens_not_positive(value: int) -> None:
    assert invalid_field(parse_options, {"max_tokens": value}) == "max_tokens"


@pytest.mark.parametrize("value", [0.0, -0.5, 1.0001, float("nan")])
def test_top_p_out_of_range(value: float) -> None:
    assert invalid_field(parse_options, {"top_p": value}) == "top_p"


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan")])
def test_timeout_not_positive(value: float) -> None:
    assert invalid_field(parse_options, {"timeout": value}) == "timeout"


def test_duplicate_tool_names() -> None:
    tools = [{"name": "a"}, {"name": "b"}, {"name": "a"}]
    assert invalid_field(parse_options, {"tools": tools}) == "tools"


@pytest.mark.parametrize("schema_type", ["array", "string", "null"])
def test_tool_parameters_not_object(schema_type: str) -> None:
    tools = [{"name": "ok"}, {"name": "bad", "parameters": {"type": schema_type}}]
    assert invalid_field(parse_options, {"tools": tools}) == "tools[1].parameters"


def test_tool_parameters_without_type_are_accepted() -> None:
    opts = parse_options({"tools": [{"name": "a", "parameters": {"properties": {}}}]})
    assert opts.tools[0].name == "a"


def test_tool_with_bad_shape_names_the_field() -> None:
    assert invalid_field(parse_options, {"tools": [{"description": "x"}]}) == "tools[0]"


# --- estimate and build ------------------------------------------------------------------------


def test_estimate_grows_with_prompt_and_includes_max_tokens() -> None:
    opts = parse_options({"max_tokens": 100})
    short = coerce_messages([{"role": "user", "content": "x" * 40}])
    long = coerce_messages([{"role": "user", "content": "x" * 4000}])
    assert estimate_tokens(short, opts) == 10 + 100
    assert estimate_tokens(long, opts) == 1000 + 100
    assert estimate_tokens(long, opts) > estimate_tokens(short, opts)
    assert estimate_tokens(short, parse_options({"max_tokens": 500})) == 10 + 500
    # Without max_tokens a default reply cap is still counted.
    default = estimate_tokens(short, RequestOptions())
    assert default > 10
    assert estimate_tokens(long, RequestOptions()) - default == 990


def test_estimate_counts_parts() -> None:
    opts = parse_options({"max_tokens": 1})
    text_only = coerce_messages([{"role": "user", "content": [{"type": "text", "text": "abcd"}]}])
    with_image = coerce_messages(
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "abcd"},
                    {"type": "image", "url": "https://example.com/x.png"},
                ],
            }
        ]
    )
    assert estimate_tokens(with_image, opts) > estimate_tokens(text_only, opts)
    conversation = coerce_messages(
        [
            {"role": "user", "content": "abcd"},
            {"role": "assistant", "content": [_call("c1")]},
            {"role": "tool", "content": [_result("c1")]},
        ]
    )
    assert estimate_tokens(conversation, opts) > estimate_tokens(text_only, opts)


def test_build_request_deadline_from_timeout() -> None:
    req = build([{"role": "user", "content": "hi"}], {"timeout": 5.0}, now=100.0)
    assert req.deadline == pytest.approx(105.0)
    assert req.id == "req-1"
    assert req.options.timeout == 5.0


def test_build_request_deadline_from_default() -> None:
    req = build([{"role": "user", "content": "hi"}], {}, now=7.0, default_timeout=60.0)
    assert req.deadline == pytest.approx(67.0)


def test_build_request_fills_everything() -> None:
    req = build(
        [{"role": "user", "content": "x" * 400}],
        {"max_tokens": 50},
        request_id="abc",
        stream=True,
    )
    assert req.id == "abc"
    assert req.stream is True
    assert req.messages == (Message(role="user", content="x" * 400),)
    assert req.estimated_tokens == 100 + 50


def test_build_request_validates_messages_and_options() -> None:
    with pytest.raises(InvalidRequest) as info:
        build([{"role": "robot", "content": "x"}])
    assert info.value.field == "messages[0].role"
    with pytest.raises(InvalidRequest) as info:
        build([{"role": "user", "content": "x"}], {"top_p": 5})
    assert info.value.field == "top_p"


# --- errors ------------------------------------------------------------------------------------

RETRY_AND_FAILOVER = [RateLimited, Overloaded, Timeout, TransportError, ServerError]
FAILOVER_ONLY = [
    AuthenticationError,
    PermissionDenied,
    NotFound,
    ContextLengthExceeded,
    ContentFiltered,
    ProviderUnavailable,
]


def _make(cls: type[SwitchyardError]) -> SwitchyardError:
    if cls is StreamInterrupted:
        return StreamInterrupted(ServerError("down", provider="p"), delivered_text="abc")
    if cls is AllProvidersFailed:
        return AllProvidersFailed([])
    return cls("msg", provider="p")


@pytest.mark.parametrize("cls", RETRY_AND_FAILOVER)
def test_retryable_and_failover_errors(cls: type[SwitchyardError]) -> None:
    err = _make(cls)
    assert (cls.retryable, cls.failover) == (True, True)
    assert (err.retryable, err.failover) == (True, True)
    assert err.to_dict()["retryable"] is True
    assert err.to_dict()["failover"] is True


@pytest.mark.parametrize("cls", FAILOVER_ONLY)
def test_failover_only_errors(cls: type[SwitchyardError]) -> None:
    err = _make(cls)
    assert (err.retryable, err.failover) == (False, True)


@pytest.mark.parametrize(
    "cls", [InvalidRequest, RuntimeClosed, StreamInterrupted, AllProvidersFailed]
)
def test_terminal_errors(cls: type[SwitchyardError]) -> None:
    err = _make(cls)
    assert (err.retryable, err.failover) == (False, False)
    assert err.to_dict()["retryable"] is False
    assert err.to_dict()["failover"] is False


def test_every_exported_error_is_classified() -> None:
    exported = {
        obj
        for name in protocols.__all__
        if isinstance(obj := getattr(protocols, name), type)
        and issubclass(obj, SwitchyardError)
        and obj is not SwitchyardError
    }
    classified = set(RETRY_AND_FAILOVER) | set(FAILOVER_ONLY)
    classified |= {InvalidRequest, RuntimeClosed, StreamInterrupted, AllProvidersFailed}
    assert exported == classified
    assert len({c.kind for c in exported}) == len(exported)


def test_invalid_request_carries_field() -> None:
    err = InvalidRequest("expected 0 to 2", field="temperature")
    assert err.field == "temperature"
    assert str(err) == "temperature: expected 0 to 2"
    assert err.status == 400
    assert InvalidRequest("bad").field is None


def test_all_providers_failed_carries_attempts() -> None:
    attempts = [
        Attempt("a", RateLimited("slow", provider="a"), 0.1),
        Attempt("b", ServerError("boom", provider="b"), 0.2),
    ]
    err = AllProvidersFailed(attempts)
    assert err.attempts == tuple(attempts)
    assert "a: RateLimited" in err.message
    assert "b: ServerError" in err.message
    assert err.status == 503
    d = err.to_dict()
    assert [a["provider"] for a in d["attempts"]] == ["a", "b"]  # type: ignore[attr-defined]


def test_all_providers_failed_all_rate_limited_is_429() -> None:
    attempts = [
        Attempt("a", RateLimited("slow", provider="a", retry_after=1.0), 0.1),
        Attempt("b", RateLimited("slow", provider="b"), 0.1),
    ]
    assert AllProvidersFailed(attempts).status == 429
    # An attempt without an error does not spoil it.
    assert AllProvidersFailed([*attempts, Attempt("c", None, 0.1)]).status == 429


@pytest.mark.parametrize(
    "errors",
    [
        [],
        [None],
        [ServerError("x")],
        [RateLimited("x"), Overloaded("y")],
        [Timeout("x"), RateLimited("y")],
    ],
)
def test_all_providers_failed_otherwise_503(errors: list[SwitchyardError | None]) -> None:
    attempts = [Attempt(f"p{i}", e, 0.0) for i, e in enumerate(errors)]
    assert AllProvidersFailed(attempts).status == 503


def test_all_providers_failed_reason() -> None:
    err = AllProvidersFailed([Attempt("a", Timeout("t"), 1.0)], reason="deadline passed")
    assert err.message == "deadline passed (a: Timeout)"


def test_encode_json_error_event() -> None:
    event = ErrorEvent(
        error=RateLimited("slow down", provider="openai", retry_after=2.5), delivered_text="He"
    )
    decoded = json.loads(encode_json(event))
    assert decoded == {
        "type": "error",
        "error": {
            "type": "rate_limited",
            "message": "slow down",
            "provider": "openai",
            "status": 429,
            "retryable": True,
            "failover": True,
            "retry_after": 2.5,
        },
        "delivered_text": "He",
    }


def test_encode_json_nested_errors() -> None:
    interrupted = StreamInterrupted(
        ServerError("down", provider="p", status=502), delivered_text="x"
    )
    decoded = json.loads(encode_json(ErrorEvent(error=interrupted)))
    assert decoded["error"]["type"] == "stream_interrupted"
    assert decoded["error"]["cause"]["type"] == "server_error"
    assert decoded["error"]["status"] == 502
    failed = AllProvidersFailed([Attempt("a", Timeout("t", provider="a"), 0.5)])
    decoded = json.loads(encode_json(failed))
    assert decoded["attempts"] == [
        {"provider": "a", "error": Timeout("t", provider="a").to_dict(), "latency_s": 0.5}
    ]


def test_encode_json_rejects_unknown_objects() -> None:
    with pytest.raises(NotImplementedError):
        encode_json(object())


# --- secret ------------------------------------------------------------------------------------


def test_secret_never_shows_its_value() -> None:
    s = Secret("sk-very-secret")
    shown = [
        str(s),
        repr(s),
        format(s),
        format(s, ">30"),
        f"{s}",
        f"{s!r}",
        f"{s!s}",
        f"{s:x}",
        "%s" % s,  # noqa: UP031
        "%r" % (s,),  # noqa: UP031
        "{}".format(s),  # noqa: UP032
        str([s]),
        repr({"key": s}),
    ]
    for text in shown:
        assert "sk-very-secret" not in text
        assert "***" in text


def test_secret_reveal_and_equality() -> None:
    s = Secret("sk-1")
    assert s.reveal() == "sk-1"
    assert s == Secret("sk-1")
    assert s != Secret("sk-2")
    assert s != "sk-1"
    assert bool(s) is True
    assert bool(Secret("")) is False
    assert hash(s) == hash(Secret("sk-1"))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_secret_is_not_picklable(protocol: int) -> None:
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(Secret("sk-1"), protocol=protocol)


def test_secret_cannot_be_copied_out() -> None:
    with pytest.raises(TypeError):
        copy.copy(Secret("sk-1"))
