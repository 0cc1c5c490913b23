"""The official SDKs, pointed at the emulator, parse every response shape."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pydantic
from google import genai
from google.genai import types
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from runtime.emulator import (
    EmulatorHandle,
    input_tokens,
    json_tokens,
    reply_text,
    reply_words,
    sample_json,
)

PROMPT = "Tell me about rivers."
WEATHER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city", "days", "unit"],
}


class Report(pydantic.BaseModel):
    title: str
    score: int
    tags: list[str]
    approved: bool


def expected_args(seed: str, tool: str) -> dict[str, Any]:
    value: dict[str, Any] = sample_json(WEATHER_SCHEMA, seed + "\x00" + tool)
    return value


# -- OpenAI -------------------------------------------------------------------------


async def test_openai_chat_completion(oai: openai.AsyncOpenAI) -> None:
    result = await oai.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": PROMPT},
        ],
    )
    choice = result.choices[0]
    assert result.object == "chat.completion"
    assert result.model == "gpt-4o-mini"
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert choice.message.content == reply_text(PROMPT)
    usage = result.usage
    assert usage is not None
    assert usage.prompt_tokens == input_tokens(len("Be brief.") + len(PROMPT))
    assert usage.completion_tokens == len(reply_words(PROMPT))
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 0


async def test_openai_stream_with_usage(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": PROMPT}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage, roles = [], None, None, []
    async for chunk in stream:
        assert chunk.object == "chat.completion.chunk"
        if chunk.usage is not None:
            assert chunk.choices == []
            usage = chunk.usage
            continue
        delta = chunk.choices[0].delta
        roles.append(delta.role)
        text.append(delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    assert "".join(text) == reply_text(PROMPT)
    assert roles[0] == "assistant"
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens == len(reply_words(PROMPT))
    assert usage.prompt_tokens == input_tokens(len(PROMPT))


async def test_openai_stream_without_usage_has_no_usage_chunk(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(c.usage is None and len(c.choices) == 1 for c in chunks)


async def test_openai_max_tokens_gives_length(oai: openai.AsyncOpenAI) -> None:
    result = await oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": PROMPT}],
        max_completion_tokens=5,
    )
    assert result.choices[0].finish_reason == "length"
    assert result.choices[0].message.content == " ".join(reply_words(PROMPT)[:5])
    assert result.usage is not None and result.usage.completion_tokens == 5


async def test_openai_reasoning_tokens(oai: openai.AsyncOpenAI) -> None:
    result = await oai.chat.completions.create(
        model="o4-mini", messages=[{"role": "user", "content": PROMPT}], reasoning_effort="low"
    )
    assert result.usage is not None
    details = result.usage.completion_tokens_details
    assert details is not None and details.reasoning_tokens == 16
    assert result.usage.completion_tokens == 16 + len(reply_words(PROMPT))


OPENAI_TOOLS: Any = [
    {
        "type": "function",
        "function": {"name": "get_weather", "parameters": WEATHER_SCHEMA},
    },
    {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}},
]


async def test_openai_tool_call(oai: openai.AsyncOpenAI) -> None:
    prompt = "Use get_weather for Paris."
    result = await oai.chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": prompt}], tools=OPENAI_TOOLS
    )
    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    calls = choice.message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function"
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    args = json.loads(call.function.arguments)
    assert args == expected_args(prompt, "get_weather")
    assert set(args) == {"city", "days", "unit"} and 1 <= args["days"] <= 7
    assert result.usage is not None
    assert result.usage.completion_tokens == json_tokens(call.function.arguments)


async def test_openai_forced_tool_and_tool_result_turn(oai: openai.AsyncOpenAI) -> None:
    forced = await oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": "hi"}],
        tools=OPENAI_TOOLS,
        tool_choice={"type": "function", "function": {"name": "noop"}},
    )
    calls = forced.choices[0].message.tool_calls
    assert calls is not None
    assert isinstance(calls[0], ChatCompletionMessageFunctionToolCall)
    assert calls[0].function.name == "noop"
    assert calls[0].function.arguments == "{}"
    # After a tool result the emulated model answers in text.
    follow = await oai.chat.completions.create(
        model="gpt-4o",
        tools=OPENAI_TOOLS,
        messages=[
            {"role": "user", "content": "use a tool"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": calls[0].id,
                        "type": "function",
                        "function": {"name": "noop", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": calls[0].id, "content": "sunny"},
        ],
    )
    assert follow.choices[0].finish_reason == "stop"
    assert follow.choices[0].message.content == reply_text("sunny")
    assert follow.usage is not None
    assert follow.usage.prompt_tokens == input_tokens(len("use a tool") + 2 + len("sunny"))


async def test_openai_streamed_tool_call(oai: openai.AsyncOpenAI) -> None:
    prompt = "Call get_weather please"
    stream = await oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": prompt}],
        tools=OPENAI_TOOLS,
        stream=True,
    )
    name, arguments, finish, deltas = None, "", None, 0
    async for chunk in stream:
        choice = chunk.choices[0]
        for call in choice.delta.tool_calls or []:
            assert call.index == 0
            if call.function and call.function.name:
                name = call.function.name
            if call.function and call.function.arguments:
                arguments += call.function.arguments
                deltas += 1
        finish = choice.finish_reason or finish
    assert name == "get_weather"
    assert finish == "tool_calls"
    assert deltas > 1
    assert json.loads(arguments) == expected_args(prompt, "get_weather")


async def test_openai_stream_helper_accumulates_tool_call(oai: openai.AsyncOpenAI) -> None:
    async with oai.chat.completions.stream(
        model="gpt-4o",
        messages=[{"role": "user", "content": "what does get_weather say?"}],
        tools=OPENAI_TOOLS,
    ) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "get_weather"


async def test_openai_structured_output(oai: openai.AsyncOpenAI) -> None:
    result = await oai.chat.completions.parse(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], response_format=Report
    )
    parsed = result.choices[0].message.parsed
    assert isinstance(parsed, Report)
    assert len(parsed.tags) == 1
    # Stable: the same request parses to the same object.
    again = await oai.chat.completions.parse(
        model="gpt-4o", messages=[{"role": "user", "content": PROMPT}], response_format=Report
    )
    assert again.choices[0].message.parsed == parsed


async def test_openai_json_object_mode(oai: openai.AsyncOpenAI) -> None:
    result = await oai.chat.completions.create(
        model="gpt-4o",
        messages=[{"role": "user", "content": PROMPT}],
        response_format={"type": "json_object"},
    )
    content = result.choices[0].message.content
    assert content is not None
    assert json.loads(content) == {"answer": reply_text(PROMPT)}


async def test_openai_models(oai: openai.AsyncOpenAI) -> None:
    models = [m.id async for m in oai.models.list()]
    assert "gpt-4o-mini" in models


# -- Anthropic ----------------------------------------------------------------------

ANTHROPIC_TOOLS: Any = [
    {"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA}
]


async def test_anthropic_message(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="claude-sonnet-5",
        max_tokens=1024,
        system="Be brief.",
        messages=[{"role": "user", "content": PROMPT}],
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "claude-sonnet-5"
    assert message.stop_reason == "end_turn"
    block = message.content[0]
    assert block.type == "text" and block.text == reply_text(PROMPT)
    assert message.usage.input_tokens == input_tokens(len("Be brief.") + len(PROMPT))
    assert message.usage.output_tokens == len(reply_words(PROMPT))
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0


async def test_anthropic_stream_events(claude: anthropic.AsyncAnthropic) -> None:
    events: list[str] = []
    async with claude.messages.stream(
        model="claude-sonnet-5",
        max_tokens=1024,
        messages=[{"role": "user", "content": [{"type": "text", "text": PROMPT}]}],
    ) as stream:
        async for event in stream:
            events.append(event.type)
        final = await stream.get_final_message()
    raw = [e for e in events if e not in ("text",)]
    assert raw[0] == "message_start"
    assert raw[1] == "content_block_start"
    assert raw[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert events.count("content_block_delta") == len(reply_words(PROMPT))
    assert final.stop_reason == "end_turn"
    assert final.content[0].type == "text" and final.content[0].text == reply_text(PROMPT)
    assert final.usage.output_tokens == len(reply_words(PROMPT))
    assert final.usage.input_tokens == input_tokens(len(PROMPT))


async def test_anthropic_raw_sse_order_includes_ping(
    emu: EmulatorHandle, http: httpx.AsyncClient
) -> None:
    # The SDK swallows ping events, so check the wire directly.
    response = await http.post(
        "/v1/messages",
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01"},
        json={
            "model": "claude-haiku-5-5",
            "max_tokens": 3,
            "stream": True,
            "messages": [{"role": "user", "content": PROMPT}],
        },
    )
    assert response.headers["content-type"].startswith("text/event-stream")
    names = [line[7:] for line in response.text.splitlines() if line.startswith("event: ")]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    delta = [
        json.loads(line[6:])
        for line in response.text.splitlines()
        if line.startswith("data: ") and "message_delta" in line
    ][-1]
    assert delta["delta"]["stop_reason"] == "max_tokens"
    assert delta["usage"]["output_tokens"] == 3


async def test_anthropic_tool_use(claude: anthropic.AsyncAnthropic) -> None:
    prompt = "What does get_weather report for Oslo?"
    message = await claude.messages.create(
        model="claude-sonnet-5",
        max_tokens=1024,
        tools=ANTHROPIC_TOOLS,
        messages=[{"role": "user", "content": prompt}],
    )
    assert message.stop_reason == "tool_use"
    block = message.content[0]
    assert block.type == "tool_use"
    assert block.id.startswith("toolu_")
    assert block.name == "get_weather"
    assert block.input == expected_args(prompt, "get_weather")
    # Tool result turn: a text answer seeded by the result's content.
    turns: Any = [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": [block.model_dump()]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "4C"}],
        },
    ]
    follow = await claude.messages.create(
        model="claude-sonnet-5", max_tokens=1024, tools=ANTHROPIC_TOOLS, messages=turns
    )
    assert follow.stop_reason == "end_turn"
    text = follow.content[0]
    assert text.type == "text" and text.text == reply_text("4C")


async def test_anthropic_streamed_tool_use(claude: anthropic.AsyncAnthropic) -> None:
    prompt = "use the tool"
    deltas = 0
    async with claude.messages.stream(
        model="claude-sonnet-5",
        max_tokens=1024,
        tools=ANTHROPIC_TOOLS,
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": prompt}],
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta":
                assert event.delta.type == "input_json_delta"
                deltas += 1
        final = await stream.get_final_message()
    assert deltas > 2
    assert final.stop_reason == "tool_use"
    block = final.content[0]
    assert block.type == "tool_use" and block.input == expected_args(prompt, "get_weather")


async def test_anthropic_thinking_block(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(
        model="claude-sonnet-5",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": PROMPT}],
    )
    kinds = [b.type for b in message.content]
    assert kinds == ["thinking", "text"]
    assert message.usage.output_tokens == 64 + len(reply_words(PROMPT))
    async with claude.messages.stream(
        model="claude-sonnet-5",
        max_tokens=2048,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=[{"role": "user", "content": PROMPT}],
    ) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0] == message.content[0]


async def test_anthropic_structured_output(claude: anthropic.AsyncAnthropic) -> None:
    result = await claude.messages.parse(
        model="claude-sonnet-5",
        max_tokens=1024,
        messages=[{"role": "user", "content": PROMPT}],
        output_format=Report,
    )
    assert isinstance(result.parsed_output, Report)


async def test_anthropic_count_tokens_and_models(claude: anthropic.AsyncAnthropic) -> None:
    count = await claude.messages.count_tokens(
        model="claude-sonnet-5", messages=[{"role": "user", "content": PROMPT}]
    )
    assert count.input_tokens == input_tokens(len(PROMPT))
    models = [m.id async for m in claude.models.list()]
    assert "claude-sonnet-5" in models


# -- Gemini -------------------------------------------------------------------------


async def test_gemini_generate_content(gemini: genai.Client) -> None:
    response = await gemini.aio.models.generate_content(
        model="gemini-2.5-flash",
        contents=PROMPT,
        config=types.GenerateContentConfig(system_instruction="Be brief."),
    )
    assert response.text == reply_text(PROMPT)
    candidate = response.candidates[0] if response.candidates else None
    assert candidate is not None and candidate.finish_reason == types.FinishReason.STOP
    usage = response.usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == input_tokens(len("Be brief.") + len(PROMPT))
    assert usage.candidates_token_count == len(reply_words(PROMPT))
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.cached_content_token_count is None  # zero counters are omitted, as real
    assert response.model_version == "gemini-2.5-flash"


async def test_gemini_stream(gemini: genai.Client) -> None:
    chunks = [
        chunk
        async for chunk in await gemini.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents=PROMPT
        )
    ]
    assert "".join(c.text or "" for c in chunks) == reply_text(PROMPT)
    last = chunks[-1]
    assert last.candidates and last.candidates[0].finish_reason == types.FinishReason.STOP
    assert all(c.candidates and c.candidates[0].finish_reason is None for c in chunks[:-1])
    assert last.usage_metadata is not None
    assert last.usage_metadata.candidates_token_count == len(reply_words(PROMPT))
    assert last.usage_metadata.prompt_token_count == input_tokens(len(PROMPT))


async def test_gemini_max_tokens_and_thinking(gemini: genai.Client) -> None:
    response = await gemini.aio.models.generate_content(
        model="gemini-2.5-flash",
        contents=PROMPT,
        config=types.GenerateContentConfig(
            max_output_tokens=40, thinking_config=types.ThinkingConfig(thinking_budget=32)
        ),
    )
    assert response.candidates and response.candidates[0].finish_reason == "MAX_TOKENS"
    usage = response.usage_metadata
    assert usage is not None
    assert usage.thoughts_token_count == 32
    assert usage.candidates_token_count == 8
    assert response.text == " ".join(reply_words(PROMPT)[:8])


async def test_gemini_function_call(gemini: genai.Client) -> None:
    prompt = "Ask get_weather about Rome"
    tool = types.Tool(
        function_declarations=[
            types.FunctionDeclaration(
                name="get_weather",
                parameters_json_schema=WEATHER_SCHEMA,
            )
        ]
    )
    config = types.GenerateContentConfig(
        tools=[tool],
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    response = await gemini.aio.models.generate_content(
        model="gemini-2.5-flash", contents=prompt, config=config
    )
    calls = response.function_calls
    assert calls is not None and len(calls) == 1
    assert calls[0].name == "get_weather"
    assert calls[0].args == expected_args(prompt, "get_weather")
    streamed = [
        c
        async for c in await gemini.aio.models.generate_content_stream(
            model="gemini-2.5-flash", contents=prompt, config=config
        )
    ]
    assert streamed[-1].function_calls is not None
    assert streamed[-1].function_calls[0].args == calls[0].args
    # A functionResponse turn yields text again.
    follow = await gemini.aio.models.generate_content(
        model="gemini-2.5-flash",
        config=config,
        contents=[
            types.Content(role="user", parts=[types.Part(text=prompt)]),
            types.Content(role="model", parts=[types.Part(function_call=calls[0])]),
            types.Content(
                role="user",
                parts=[
                    types.Part.from_function_response(name="get_weather", response={"temp": 21})
                ],
            ),
        ],
    )
    assert follow.text == reply_text('{"temp":21}')


async def test_gemini_structured_output(gemini: genai.Client) -> None:
    response = await gemini.aio.models.generate_content(
        model="gemini-2.5-flash",
        contents=PROMPT,
        config=types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=Report
        ),
    )
    assert isinstance(response.parsed, Report)


async def test_gemini_count_tokens_and_models(gemini: genai.Client) -> None:
    count = await gemini.aio.models.count_tokens(model="gemini-2.5-flash", contents=PROMPT)
    assert count.total_tokens == input_tokens(len(PROMPT))
    names = [m.name async for m in await gemini.aio.models.list()]
    assert "models/gemini-2.5-flash" in names
