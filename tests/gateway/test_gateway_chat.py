"""The gateway's chat completions through the official openai SDK: model routing, usage,
streams with include_usage, tool calls and structured output, against the emulator."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pytest
import trio

HI = [{"role": "user", "content": "Tell me something about switchyards"}]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-sonnet-4-6", "gemini": "gemini-2.5-flash"}

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city"],
        },
    },
}
FORECAST_SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "temperature": {"type": "integer"},
        "sunny": {"type": "boolean"},
    },
    "required": ["city", "temperature", "sunny"],
    "additionalProperties": False,
}


async def test_alias_answers_with_the_real_model_provider_header_and_usage(
    client: openai.AsyncOpenAI,
) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="fast", messages=HI)
    completion = raw.parse()
    assert raw.status_code == 200
    assert raw.headers["x-switchyard-provider"] == "openai"
    assert completion.model == "gpt-4o-mini"  # the model that answered, not the alias
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0
    # The emulator counts one output token per word of plain text.
    assert usage.completion_tokens == len(choice.message.content.split())
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_a_providers_model_name_routes_to_that_provider(
    client: openai.AsyncOpenAI, provider: str
) -> None:
    raw = await client.chat.completions.with_raw_response.create(
        model=MODELS[provider], messages=HI, max_tokens=200
    )
    completion = raw.parse()
    assert raw.headers["x-switchyard-provider"] == provider
    assert completion.model == MODELS[provider]
    assert completion.choices[0].message.content
    assert completion.usage is not None and completion.usage.completion_tokens > 0


async def test_provider_names_and_aliases_of_them_route_there(
    client: openai.AsyncOpenAI,
) -> None:
    for model, provider in (("gemini", "gemini"), ("smart", "anthropic")):
        raw = await client.chat.completions.with_raw_response.create(model=model, messages=HI)
        assert raw.headers["x-switchyard-provider"] == provider
        assert raw.parse().model == MODELS[provider]


async def test_auto_fails_over_and_names_who_answered(
    gateway: Any, client: openai.AsyncOpenAI
) -> None:
    raw = await client.chat.completions.with_raw_response.create(model="auto", messages=HI)
    assert raw.headers["x-switchyard-provider"] == "openai"
    gateway.emu.set_faults("openai", "status=503")
    raw = await client.chat.completions.with_raw_response.create(model="auto", messages=HI)
    assert raw.headers["x-switchyard-provider"] == "anthropic"
    assert raw.parse().model == "claude-sonnet-4-6"


async def test_a_model_limited_to_one_provider_does_not_fail_over(
    gateway: Any, client: openai.AsyncOpenAI
) -> None:
    gateway.emu.set_faults("openai", "status=503")
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert caught.value.status_code == 503
    assert not gateway.emu.requests_for("anthropic")
    assert not gateway.emu.requests_for("gemini")


async def test_unknown_model_is_a_404_in_openai_shape(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="gpt-9-ultra", messages=HI)
    error = caught.value
    assert error.status_code == 404
    assert error.code == "model_not_found"
    assert error.param == "model"
    assert error.type == "invalid_request_error"
    assert "gpt-9-ultra" in error.message


async def test_models_lists_models_and_aliases(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    owners = {model.id: model.owned_by for model in page.data}
    assert owners == {
        "auto": "switchyard",
        "gpt-4o-mini": "openai",
        "claude-sonnet-4-6": "anthropic",
        "gemini-2.5-flash": "gemini",
        "fast": "switchyard",
        "smart": "switchyard",
    }
    model = await client.models.retrieve("claude-sonnet-4-6")
    assert (model.id, model.owned_by) == ("claude-sonnet-4-6", "anthropic")
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve("gpt-9-ultra")
    assert caught.value.code == "model_not_found"


async def test_request_options_reach_the_provider(gateway: Any, client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hello there"}]},
        ],
        max_completion_tokens=5,
        temperature=0.5,
        top_p=0.9,
        stop=["zzz"],
        user="tenant-a",
        seed=7,
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5
    body = gateway.emu.requests_for("openai")[-1].body
    assert body["temperature"] == 0.5
    assert body["top_p"] == 0.9
    assert body["messages"][0]["role"] in ("system", "developer")


async def test_image_parts_reach_the_provider(gateway: Any, client: openai.AsyncOpenAI) -> None:
    content: Any = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    for model in ("gpt-4o-mini", "claude-sonnet-4-6"):
        completion = await client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": content}]
        )
        assert completion.choices[0].message.content
    sent = gateway.emu.requests_for("openai")[-1].body["messages"][0]["content"]
    assert [part["type"] for part in sent] == ["text", "image_url", "image_url"]


# --- streams ---------------------------------------------------------------------------------


async def test_stream_chunks_parse_and_end_with_usage(client: openai.AsyncOpenAI) -> None:
    whole = await client.chat.completions.create(model="fast", messages=HI)
    async with client.chat.completions.with_streaming_response.create(
        model="fast", messages=HI, stream=True, stream_options={"include_usage": True}
    ) as response:
        assert response.headers["x-switchyard-provider"] == "openai"
        assert response.headers["content-type"].startswith("text/event-stream")
        chunks = [chunk async for chunk in await response.parse()]
    assert all(chunk.object == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk.id for chunk in chunks}) == 1
    assert all(chunk.model == "gpt-4o-mini" for chunk in chunks)
    content = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert content[0].choices[0].delta.role == "assistant"
    assert all(c.choices[0].delta.role is None for c in content[1:])
    text = "".join(c.choices[0].delta.content or "" for c in content)
    assert text == whole.choices[0].message.content  # the emulator is deterministic
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop"
    assert finishes.count("stop") == 1
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == len(text.split())
    assert whole.usage is not None
    assert last.usage.prompt_tokens == whole.usage.prompt_tokens
    assert all(chunk.usage is None for chunk in chunks[:-1])


async def test_stream_without_include_usage_has_no_usage_chunk(
    client: openai.AsyncOpenAI,
) -> None:
    stream = await client.chat.completions.create(
        model="claude-sonnet-4-6", messages=HI, stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    assert all(chunk.model == "claude-sonnet-4-6" for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


async def test_auto_stream_fails_over_before_content_and_names_the_provider(
    gateway: Any, client: openai.AsyncOpenAI
) -> None:
    gateway.emu.set_faults("openai", "status=500")
    async with client.chat.completions.with_streaming_response.create(
        model="auto", messages=HI, stream=True, stream_options={"include_usage": True}
    ) as response:
        assert response.headers["x-switchyard-provider"] == "anthropic"
        chunks = [chunk async for chunk in await response.parse()]
    assert {chunk.model for chunk in chunks} == {"claude-sonnet-4-6"}
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens > 0


# --- tools ----------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_tool_call_round_trip(client: openai.AsyncOpenAI, provider: str) -> None:
    ask: list[Any] = [{"role": "user", "content": "What is the weather in Paris?"}]
    first = await client.chat.completions.create(
        model=MODELS[provider], messages=ask, tools=[WEATHER_TOOL], tool_choice="required"
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert call.id
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, WEATHER_TOOL["function"]["parameters"])
    # Send the call and its result back: the model answers in text.
    follow_up = [
        *ask,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'},
    ]
    second = await client.chat.completions.create(
        model=MODELS[provider], messages=follow_up, tools=[WEATHER_TOOL]
    )
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content
    assert not second.choices[0].message.tool_calls


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
async def test_streamed_tool_call_reassembles_in_the_sdk(
    client: openai.AsyncOpenAI, provider: str
) -> None:
    stream = await client.chat.completions.create(
        model=MODELS[provider],
        messages=[{"role": "user", "content": "call get_weather please"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        stream=True,
        stream_options={"include_usage": True},
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    usage = None
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        for call in delta.tool_calls or ():
            slot = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            if call.id:
                slot["id"] = call.id
            if call.function and call.function.name:
                slot["name"] += call.function.name
            if call.function and call.function.arguments:
                slot["arguments"] += call.function.arguments
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "get_weather"
    assert calls[0]["id"]
    jsonschema.validate(json.loads(calls[0]["arguments"]), WEATHER_TOOL["function"]["parameters"])
    assert usage is not None and usage.completion_tokens > 0


async def test_streamed_tool_call_matches_the_non_streamed_one(
    client: openai.AsyncOpenAI,
) -> None:
    ask: list[Any] = [{"role": "user", "content": "use get_weather"}]
    whole = await client.chat.completions.create(model="fast", messages=ask, tools=[WEATHER_TOOL])
    calls = whole.choices[0].message.tool_calls
    assert calls is not None
    stream = await client.chat.completions.create(
        model="fast", messages=ask, tools=[WEATHER_TOOL], stream=True
    )
    arguments = ""
    async for chunk in stream:
        for call in (chunk.choices[0].delta.tool_calls or ()) if chunk.choices else ():
            if call.function and call.function.arguments:
                arguments += call.function.arguments
    assert json.loads(arguments) == json.loads(calls[0].function.arguments)


# --- structured output -------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["openai", "anthropic", "gemini"])
@pytest.mark.parametrize("stream", [False, True])
async def test_json_schema_response_format(
    client: openai.AsyncOpenAI, provider: str, stream: bool
) -> None:
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "forecast", "schema": FORECAST_SCHEMA, "strict": True},
    }
    messages: Any = [{"role": "user", "content": "Forecast for Lyon"}]
    if stream:
        chunks = await client.chat.completions.create(
            model=MODELS[provider], messages=messages, response_format=response_format, stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in chunks if c.choices])
    else:
        completion = await client.chat.completions.create(
            model=MODELS[provider], messages=messages, response_format=response_format
        )
        text = completion.choices[0].message.content or ""
    jsonschema.validate(json.loads(text), FORECAST_SCHEMA)


async def test_json_object_mode(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="gemini",
        messages=[{"role": "user", "content": "Answer in JSON"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


async def test_concurrent_requests_all_answer(start_gateway: Any) -> None:
    gateway = await start_gateway(router={"policy": "round_robin"})
    client = gateway.client()
    providers: list[str] = []
    try:

        async def one() -> None:
            raw = await client.chat.completions.with_raw_response.create(model="auto", messages=HI)
            providers.append(raw.headers["x-switchyard-provider"])

        async with trio.open_nursery() as nursery:
            for _ in range(12):
                nursery.start_soon(one)
    finally:
        await client.close()
    assert len(providers) == 12
    assert set(providers) == {"openai", "anthropic", "gemini"}
