"""The gateway's failure paths: authentication, body limits, malformed requests, every
provider failing, streams that break after content, and clients that walk away."""

from __future__ import annotations

from typing import Any

import httpx2
import openai
import pytest
import trio

HI = [{"role": "user", "content": "Tell me something about switchyards"}]


async def post(url: str, body: bytes | Any, **headers: str) -> httpx2.Response:
    async with httpx2.AsyncClient() as http:
        content = body if isinstance(body, bytes) else None
        return await http.post(
            url + "/v1/chat/completions",
            content=content,
            json=None if content is not None else body,
            headers={"content-type": "application/json", **headers},
        )


def openai_error(response: httpx2.Response) -> dict[str, Any]:
    document = response.json()
    assert set(document) == {"error"}
    error: dict[str, Any] = document["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str) and error["message"]
    return error


# --- authentication --------------------------------------------------------------------------


async def test_bearer_keys_are_required_when_configured(start_gateway: Any) -> None:
    gateway = await start_gateway(api_keys="key-one, key-two")
    for key in ("key-one", "key-two"):
        client = gateway.client(api_key=key)
        try:
            completion = await client.chat.completions.create(model="auto", messages=HI)
            assert completion.choices[0].message.content
            assert (await client.models.list()).data
        finally:
            await client.close()
    for key in ("wrong", "key-one-and-more", "key-on", "Bearer key-one"):
        client = gateway.client(api_key=key)
        try:
            with pytest.raises(openai.AuthenticationError) as caught:
                await client.chat.completions.create(model="auto", messages=HI)
            assert caught.value.status_code == 401
            assert caught.value.code == "invalid_api_key"
            with pytest.raises(openai.AuthenticationError):
                await client.models.list()
        finally:
            await client.close()
    # No header, another scheme, an empty token: 401 with an OpenAI-style body.
    for headers in ({}, {"authorization": "Basic a2V5LW9uZQ=="}, {"authorization": "Bearer"}):
        response = await post(gateway.url, {"model": "auto", "messages": HI}, **headers)
        assert response.status_code == 401
        assert openai_error(response)["code"] == "invalid_api_key"
    async with httpx2.AsyncClient() as http:  # every /v1/ path, known or not
        for path in ("/v1/models/gpt-4o-mini", "/v1/embeddings"):
            response = await http.get(gateway.url + path)
            assert response.status_code == 401
    # A key is checked before the body is even read.
    response = await post(gateway.url, b"{not json", authorization="Bearer nope")
    assert response.status_code == 401
    # Health and metrics stay open to probes and scrapers.
    async with httpx2.AsyncClient() as http:
        assert (await http.get(gateway.url + "/health")).status_code == 200
        assert (await http.get(gateway.url + "/metrics")).status_code == 200
    assert not gateway.emu.requests_for("anthropic")  # refused requests never went upstream


async def test_without_keys_any_client_is_served(gateway: Any) -> None:
    response = await post(gateway.url, {"model": "auto", "messages": HI})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"]


# --- request bodies ----------------------------------------------------------------------------


async def test_a_body_over_the_limit_is_a_413(start_gateway: Any) -> None:
    gateway = await start_gateway(server={"max_body_bytes": 2048})
    client = gateway.client()
    try:
        ok = await client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "x" * 1000}]
        )
        assert ok.choices[0].message.content
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "x" * 50_000}]
            )
        assert caught.value.status_code == 413
        assert caught.value.param == "body"
        assert caught.value.type == "invalid_request_error"
    finally:
        await client.close()

    async def chunked() -> Any:  # no content-length: the limit still holds
        for _ in range(20):
            yield b"x" * 1024

    async with httpx2.AsyncClient() as http:
        response = await http.post(gateway.url + "/v1/chat/completions", content=chunked())
    assert response.status_code == 413
    assert openai_error(response)["param"] == "body"
    assert not gateway.emu.requests_for("openai")[1:]  # only the small request went upstream


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", "body"),
        (b"", "body"),
        (b"[1, 2]", "body"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "auto"}', "messages"),
        (b'{"model": "auto", "messages": []}', "messages"),
        (
            b'{"model": "auto", "messages": [{"role": "robot", "content": "hi"}]}',
            "messages[0].role",
        ),
        (b'{"model": "auto", "messages": [{"role": "user", "content": 7}]}', "messages[0].content"),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "n": 2}',
            "n",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}',
            "stream",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": "hi"}],'
            b' "response_format": {"type": "xml"}}',
            "response_format.type",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "tool", "content": "x"}]}',
            "messages[0].tool_call_id",
        ),
        (
            b'{"model": "auto", "messages": [{"role": "user", "content": [{"type": "image_url",'
            b' "image_url": {"url": "data:image/png,abc"}}]}]}',
            "messages[0].content[0].image_url.url",
        ),
    ],
)
async def test_a_malformed_request_is_a_400_naming_the_field(
    gateway: Any, body: bytes, param: str
) -> None:
    response = await post(gateway.url, body)
    assert response.status_code == 400
    error = openai_error(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert not gateway.emu.requests


@pytest.mark.parametrize("stream", [False, True])
async def test_options_the_runtime_rejects_are_a_400(client: Any, stream: bool) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="auto", messages=HI, temperature=7, stream=stream
        )
    assert caught.value.param == "temperature"
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(
            model="auto",
            messages=HI,
            tools=[{"type": "function", "function": {"name": "", "parameters": {}}}],
            stream=stream,
        )
    assert caught.value.param == "tools[0].name"


async def test_unknown_routes_and_methods(gateway: Any) -> None:
    async with httpx2.AsyncClient() as http:
        response = await http.get(gateway.url + "/v1/chat/completions")
        assert response.status_code == 405
        assert openai_error(response)["type"] == "invalid_request_error"
        response = await http.get(gateway.url + "/v1/embeddings")
        assert response.status_code == 404
        openai_error(response)


# --- every provider failing --------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
async def test_every_provider_failing_is_a_503_listing_the_attempts(
    gateway: Any, client: Any, stream: bool
) -> None:
    gateway.emu.set_faults("*", "status=500")
    with pytest.raises(openai.InternalServerError) as caught:
        await client.chat.completions.create(model="auto", messages=HI, stream=stream)
    error = caught.value
    assert error.status_code == 503
    assert error.code == "all_providers_failed"
    assert error.type == "server_error"
    for provider in ("openai", "anthropic", "gemini"):
        assert provider in error.message
    for provider in ("openai", "anthropic", "gemini"):
        assert gateway.emu.requests_for(provider)


async def test_every_provider_rate_limited_is_a_429_with_retry_after(gateway: Any) -> None:
    gateway.emu.set_faults("*", "status=429,retry_after=1")
    response = await post(gateway.url, {"model": "auto", "messages": HI})
    assert response.status_code == 429
    assert openai_error(response)["type"] == "rate_limit_error"
    assert response.headers["retry-after"] == "1"
    client = gateway.client()
    try:
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="auto", messages=HI)
    finally:
        await client.close()


async def test_an_upstream_context_length_error_keeps_its_meaning(
    gateway: Any, client: Any
) -> None:
    gateway.emu.set_faults("*", "error=context_length")
    with pytest.raises(openai.APIStatusError) as caught:
        await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
    assert caught.value.status_code == 400
    assert caught.value.code == "context_length_exceeded"


# --- streams that break ------------------------------------------------------------------------


@pytest.mark.parametrize("fault", ["error_event=6", "disconnect=6", "truncate=6", "malformed=6"])
async def test_a_stream_broken_after_content_ends_with_an_error_event(
    gateway: Any, client: Any, fault: str
) -> None:
    gateway.emu.set_faults("openai", fault)
    # The SDK raises on the error event: the stream never just stops.
    stream = await client.chat.completions.create(model="auto", messages=HI, stream=True)
    received = ""
    with pytest.raises(openai.APIError) as caught:
        async for chunk in stream:
            if chunk.choices:
                received += chunk.choices[0].delta.content or ""
    assert received  # content arrived before the failure
    assert "interrupted" in caught.value.message
    assert caught.value.code == "stream_interrupted"
    # On the wire: data frames, then one error event and the end of the body, no [DONE].
    async with httpx2.AsyncClient() as http:
        async with http.stream(
            "POST",
            gateway.url + "/v1/chat/completions",
            json={"model": "auto", "messages": HI, "stream": True},
        ) as response:
            assert response.status_code == 200
            assert response.headers["x-switchyard-provider"] == "openai"
            raw = (await response.aread()).decode()
    events = [e for e in raw.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert '"error"' in events[-1]
    assert '"error"' not in "".join(events[:-1])
    assert "[DONE]" not in raw
    assert not gateway.emu.requests_for("anthropic")  # after content there is no failover


async def wait_until_idle(gateway: Any, provider: str) -> None:
    """Until no request is in flight at the runtime nor at ``provider``'s actor."""
    with trio.fail_after(8):  # far less than the upstream answer would take
        while True:
            status, health = await gateway.health()
            actor = next(a for a in health["actors"] if a["name"] == provider)
            if health["requests_in_flight"] == 0 and actor["in_flight"] == 0:
                assert status == 200
                return
            await trio.sleep(0.05)


async def test_a_client_giving_up_on_a_completion_cancels_upstream(gateway: Any) -> None:
    gateway.emu.set_faults("openai", "latency=30")
    client = gateway.client(timeout=1.0)
    try:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="auto", messages=HI)
    finally:
        await client.close()
    await wait_until_idle(gateway, "openai")
    assert not gateway.emu.requests_for("anthropic")  # cancelled, not failed over


async def test_a_client_walking_away_mid_stream_cancels_upstream(gateway: Any, client: Any) -> None:
    gateway.emu.set_faults("openai", "drip=0.5")  # 24 words or more: at least 12 s in full
    stream = await client.chat.completions.create(model="auto", messages=HI, stream=True)
    got = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            got += 1
            if got == 2:
                break
    _, health = await gateway.health()
    assert health["requests_in_flight"] == 1
    await stream.close()  # the client goes away
    await wait_until_idle(gateway, "openai")
    assert len(gateway.emu.requests_for("openai")) == 1
    # And the gateway keeps serving.
    gateway.emu.set_faults("openai", None)
    completion = await client.chat.completions.create(model="auto", messages=HI)
    assert completion.choices[0].message.content
