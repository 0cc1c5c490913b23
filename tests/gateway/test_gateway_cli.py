"""The ``switchyard`` command as a user runs it: ``serve`` (SIGTERM drain, config errors,
missing keys), ``chat`` and ``health``, each in a subprocess."""

from __future__ import annotations

import re
import signal
import socket
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest
import trio

from runtime._embedded import EMULATED_KEYS

HI = [{"role": "user", "content": "Tell me something about switchyards"}]
CONFIGS = Path(__file__).parent / "configs"
SERVING = r"serving\s.*url=(http://[0-9.]+:\d+)"


def write_config(path: Path, emulator_url: str, *, grace: float = 15.0) -> Path:
    """A config file for the three providers on an emulator (gemini without a key
    variable, to be warned about)."""
    path.write_text(
        f"""
[server]
host = "127.0.0.1"
port = 0
grace_period_s = {grace}

[retry]
base_s = 0.01
cap_s = 0.05
max_retries = 0
max_rounds = 1

[logging]
level = "info"

[aliases]
fast = "gpt-4o-mini"

[[providers]]
name = "openai"
kind = "openai"
base_url = "{emulator_url}/v1"
api_key_env = "OPENAI_API_KEY"
model = "gpt-4o-mini"

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "{emulator_url}"
api_key_env = "ANTHROPIC_API_KEY"
model = "claude-sonnet-4-6"
priority = 1

[[providers]]
name = "gemini"
kind = "gemini"
base_url = "{emulator_url}"
model = "gemini-2.5-flash"
priority = 2
"""
    )
    return path


def with_keys(env: dict[str, str]) -> dict[str, str]:
    return {**env, **EMULATED_KEYS}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


# --- configuration errors ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("bad_rpm.toml", "providers[1].rpm: expected an integer, got 'lots'"),
        (
            "bad_kind.toml",
            "providers[0].kind: expected one of 'openai', 'anthropic', 'gemini', got 'mistral'",
        ),
        ("unknown_field.toml", "server.prot: unknown field"),
        ("not_toml.toml", "not valid TOML"),
        ("bad_alias.toml", "aliases.fast: 'gpt-5-turbo' is not a provider name"),
        ("no_providers.toml", "providers: required but missing"),
        ("missing.toml", "cannot read"),
    ],
)
async def test_a_bad_config_exits_2_naming_file_field_and_expectation(
    switchyard: Any, name: str, message: str
) -> None:
    path = CONFIGS / name
    code, out, err = await switchyard("serve", "--config", str(path))
    assert code == 2
    assert out == ""
    assert err.startswith(f"switchyard: {path}: ")
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


async def test_chat_with_a_bad_config_exits_2(switchyard: Any) -> None:
    path = CONFIGS / "bad_rpm.toml"
    code, out, err = await switchyard("chat", "hello", "--config", str(path))
    assert (code, out) == (2, "")
    assert "providers[1].rpm" in err
    assert "Traceback" not in err


# --- serve ---------------------------------------------------------------------------------------


async def test_sigterm_drains_in_flight_requests_then_exits_0(
    tmp_path: Path, emulator_process: Any, spawn: Any, switchyard_env: Any
) -> None:
    _, emulator_url = emulator_process
    config = write_config(tmp_path / "switchyard.toml", emulator_url, grace=20.0)
    server = await spawn(
        [*switchyard_env.command, "serve", "--config", str(config)],
        tmp_path / "serve.log",
        env=with_keys(switchyard_env.env),
    )
    client = None
    try:
        url = (await server.wait_for(SERVING)).group(1)
        port = int(url.rsplit(":", 1)[1])
        async with httpx2.AsyncClient() as http:
            # Every provider answers slowly from now on.
            await http.post(
                emulator_url + "/_emulator/faults", json={"provider": "*", "fault": "latency=4"}
            )
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-any", max_retries=0)
        answers: dict[str, str] = {}

        async def complete() -> None:
            completion = await client.chat.completions.create(model="auto", messages=HI)
            answers["complete"] = completion.choices[0].message.content or ""

        async def stream() -> None:
            chunks = await client.chat.completions.create(
                model="fast", messages=HI, stream=True, stream_options={"include_usage": True}
            )
            text, finish, usage = "", None, None
            async for chunk in chunks:
                if chunk.choices:
                    text += chunk.choices[0].delta.content or ""
                    finish = chunk.choices[0].finish_reason or finish
                usage = chunk.usage or usage
            assert finish == "stop"
            assert usage is not None
            answers["stream"] = text

        async with trio.open_nursery() as nursery:
            nursery.start_soon(complete)
            nursery.start_soon(stream)
            async with httpx2.AsyncClient() as http:
                with trio.fail_after(10):
                    while True:
                        health = (await http.get(url + "/health")).json()
                        if health["requests_in_flight"] == 2:
                            break
                        await trio.sleep(0.05)
            server.terminate()
            # The listening socket closes at once while the two requests still run.
            with trio.fail_after(10):
                while True:
                    try:
                        connection = await trio.open_tcp_stream("127.0.0.1", port)
                    except OSError:
                        break
                    await connection.aclose()
                    await trio.sleep(0.05)
            assert server.process.poll() is None, "exited before its requests finished"
            assert not answers
        # Both requests completed in full during the drain.
        assert len(answers["complete"].split()) >= 10
        assert len(answers["stream"].split()) >= 10
        assert await server.wait(within=30) == 0
        output = server.output()
        assert "shutting_down" in output
        assert "stopped" in output
        assert "Traceback" not in output
    finally:
        if client is not None:
            await client.close()
        await server.stop()


async def test_requests_outliving_the_grace_period_are_cut_with_errors_then_exit_0(
    tmp_path: Path, emu: Any, spawn: Any, switchyard_env: Any
) -> None:
    config = write_config(tmp_path / "switchyard.toml", emu.base_url, grace=1.0)
    server = await spawn(
        [*switchyard_env.command, "serve", "--config", str(config)],
        tmp_path / "serve.log",
        env=with_keys(switchyard_env.env),
    )
    client = None
    try:
        url = (await server.wait_for(SERVING)).group(1)
        emu.set_faults("openai", "latency=60")  # answers far too late
        emu.set_faults("anthropic", "drip=1")  # streams, far too slowly
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="sk-any", max_retries=0)
        errors: dict[str, openai.APIError] = {}
        streamed: list[str] = []

        async def complete() -> None:
            with pytest.raises(openai.APIStatusError) as caught:
                await client.chat.completions.create(model="gpt-4o-mini", messages=HI)
            errors["complete"] = caught.value

        async def stream() -> None:
            chunks = await client.chat.completions.create(
                model="claude-sonnet-4-6", messages=HI, stream=True
            )
            with pytest.raises(openai.APIError) as caught:
                async for chunk in chunks:
                    streamed.append(chunk.choices[0].delta.content or "")
            errors["stream"] = caught.value

        async with trio.open_nursery() as nursery:
            nursery.start_soon(complete)
            nursery.start_soon(stream)
            with trio.fail_after(10):
                while True:
                    if streamed and emu.requests_for("openai"):
                        break
                    await trio.sleep(0.05)
            server.terminate()
            assert await server.wait(within=30) == 0
        # Each client was told why: a 503, and in the stream an error event after content.
        assert errors["complete"].status_code == 503
        assert errors["complete"].code == "runtime_closed"
        assert "shutting down" in errors["complete"].message
        assert "".join(streamed)
        assert errors["stream"].code == "runtime_closed"
        output = server.output()
        assert "grace_period_over" in output
        assert "Traceback" not in output
    finally:
        if client is not None:
            await client.close()
        await server.stop()


async def test_serve_reports_each_missing_key_at_start(
    tmp_path: Path, emu: Any, spawn: Any, switchyard_env: Any
) -> None:
    config = write_config(tmp_path / "switchyard.toml", emu.base_url)
    server = await spawn(
        [*switchyard_env.command, "serve", "--config", str(config)],
        tmp_path / "serve.log",
        env=switchyard_env.env,  # no API keys at all
    )
    try:
        url = (await server.wait_for(SERVING)).group(1)
        output = server.output()
        assert re.search(
            r"provider 'openai': environment variable OPENAI_API_KEY is not set", output
        )
        assert re.search(
            r"provider 'anthropic': environment variable ANTHROPIC_API_KEY is not set", output
        )
        assert "provider 'gemini': no api_key_env is configured" in output
        assert "SWITCHYARD_API_KEYS is not set" in output
        # Each provider refuses the keyless request upstream: every provider failed.
        async with httpx2.AsyncClient() as http:
            response = await http.post(
                url + "/v1/chat/completions", json={"model": "auto", "messages": HI}
            )
        assert response.status_code == 503
        assert "Authentication" in response.json()["error"]["message"]
        server.process.send_signal(signal.SIGINT)  # Ctrl-C stops it as SIGTERM does
        assert await server.wait(within=30) == 0
        assert "signal=SIGINT" in server.output()
        assert "Traceback" not in server.output()
    finally:
        await server.stop()


async def test_serve_with_the_port_taken_exits_1(
    tmp_path: Path, emu: Any, switchyard: Any, switchyard_env: Any
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = write_config(tmp_path / "switchyard.toml", emu.base_url)
        config.write_text(config.read_text().replace("port = 0", f"port = {port}", 1))
        code, _, err = await switchyard(
            "serve", "--config", str(config), env=with_keys(switchyard_env.env)
        )
    assert code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


# --- chat ----------------------------------------------------------------------------------------


async def test_chat_answers_on_the_embedded_emulator(switchyard: Any) -> None:
    code, out, err = await switchyard("chat", "hello")
    assert code == 0, err
    assert len(out.split()) >= 10
    assert out.endswith("\n")
    assert "[openai gpt-4o-mini, " in err


async def test_chat_streams_on_the_embedded_emulator(switchyard: Any) -> None:
    code, out, err = await switchyard("chat", "--stream", "hello", "--model", "gemini-2.5-flash")
    assert code == 0, err
    assert len(out.split()) >= 10
    assert out.endswith("\n")
    assert "[gemini gemini-2.5-flash, " in err


async def test_chat_with_a_config_fails_over(
    tmp_path: Path, emu: Any, switchyard: Any, switchyard_env: Any
) -> None:
    config = write_config(tmp_path / "switchyard.toml", emu.base_url)
    emu.set_faults("openai", "status=503")
    code, out, err = await switchyard(
        "chat", "hello", "--config", str(config), env=with_keys(switchyard_env.env)
    )
    assert code == 0, err
    assert out.strip()
    assert "[anthropic claude-sonnet-4-6, " in err
    assert "gemini': no api_key_env" in err  # the missing-key warning


async def test_chat_exits_1_when_every_provider_fails(
    tmp_path: Path, emu: Any, switchyard: Any, switchyard_env: Any
) -> None:
    config = write_config(tmp_path / "switchyard.toml", emu.base_url)
    emu.set_faults("*", "status=500")
    for extra in ((), ("--stream",)):
        code, out, err = await switchyard(
            "chat", "hello", *extra, "--config", str(config), env=with_keys(switchyard_env.env)
        )
        assert code == 1
        assert out.strip() == ""
        assert "switchyard: AllProvidersFailed: " in err
        assert "Traceback" not in err


# --- health --------------------------------------------------------------------------------------


async def test_health_command_prints_the_actors(gateway: Any, switchyard: Any) -> None:
    code, out, err = await switchyard("health", "--url", gateway.url)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{gateway.url}: running, serving=True"
    names = [line.split()[0] for line in lines[2:]]
    assert names == ["router", "openai", "anthropic", "gemini"]
    assert all("running" in line for line in lines[2:])


async def test_health_command_exits_1_when_not_serving_or_unreachable(
    start_gateway: Any, switchyard: Any
) -> None:
    gateway = await start_gateway(breaker={"min_requests": 1, "cooldown_s": 60.0})
    gateway.emu.set_faults("*", "status=500")
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            gateway.url + "/v1/chat/completions", json={"model": "auto", "messages": HI}
        )
    assert response.status_code == 503
    code, out, _ = await switchyard("health", "--url", gateway.url)
    assert code == 1
    assert "serving=False" in out
    assert out.count(" open ") == 3

    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = await switchyard("health", "--url", url)
    assert code == 1
    assert out == ""
    assert f"cannot reach {url}" in err
    assert "Traceback" not in err


# --- emulator ------------------------------------------------------------------------------------


async def test_emulator_command_serves_on_uvicorn(
    tmp_path: Path, spawn: Any, switchyard_env: Any
) -> None:
    command = [*switchyard_env.command, "emulator", "--port", "0", "--server", "uvicorn"]
    process = await spawn(command, tmp_path / "emulator.log", env=switchyard_env.env)
    try:
        url = (await process.wait_for(r"listening on (http://\S+)")).group(1)
        async with httpx2.AsyncClient() as client:
            answer = await client.post(
                url + "/v1/chat/completions",
                headers={"authorization": "Bearer sk-test"},
                json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            )
        assert answer.status_code == 200
        assert answer.json()["choices"][0]["message"]["content"]
    finally:
        process.terminate()
        assert await process.wait(10) == 0


async def test_emulator_command_rejects_an_unknown_server(switchyard: Any) -> None:
    code, _, err = await switchyard("emulator", "--port", "0", "--server", "gunicorn")
    assert code == 2
    assert "hypercorn-trio" in err and "uvicorn" in err
    assert "Traceback" not in err
