"""The configuration file's cost, routing and server sections reach the runtime."""

from __future__ import annotations

import tomllib
from decimal import Decimal

import pytest

from runtime._build import build_runtime_config
from runtime._settings import ConfigError, parse_settings

DOCUMENT = """
[router]
policy = "cost"

[[budgets]]
limit_usd = 25.5
period_s = 86400
scope = "tenant"

[[budgets]]
limit_usd = 100
scope = "provider"
key = "local"

[prices."my-llama"]
input = 0.05
output = 0.10

[quality]
my-llama = 1150

[task_routes]
code = ["local", "gpt-4o-mini"]

[[providers]]
name = "local"
kind = "openai"
base_url = "http://127.0.0.1:8000/v1"
model = "my-llama"

[[providers]]
name = "openai"
kind = "openai"
base_url = "http://127.0.0.1:9000/v1"
model = "gpt-4o-mini"
"""


def test_cost_sections_build_the_runtime_config():
    config = build_runtime_config(parse_settings(tomllib.loads(DOCUMENT)))
    assert config.router.policy == "cost"
    tenant, provider = config.budgets
    assert (tenant.scope, tenant.limit_usd, tenant.period_s) == ("tenant", Decimal("25.5"), 86400)
    assert (provider.scope, provider.key, provider.period_s) == ("provider", "local", 86400)
    assert config.prices["my-llama"].input == Decimal("0.05")
    assert config.quality == {"my-llama": 1150}
    assert config.task_routes == {"code": ("local", "gpt-4o-mini")}


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("code = [", "poetry = ["), "task_routes: bad key"),
        (('"local", "gpt-4o-mini"', '"nobody"'), "task_routes.code: 'nobody' is not a provider"),
        (("limit_usd = 25.5", "limit_usd = -1"), "budgets[0].limit_usd: expected a number > 0"),
        (('scope = "tenant"', 'scope = "team"'), "budgets[0].scope: expected one of"),
        (("input = 0.05", "input = -0.05"), "prices.my-llama.input"),
    ],
)
def test_bad_cost_sections_name_the_field(edit, message):
    old, new = edit
    with pytest.raises(ConfigError) as info:
        parse_settings(tomllib.loads(DOCUMENT.replace(old, new)), source="sw.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("sw.toml: ")


SDK_PROVIDERS = """
[[providers]]
name = "azure"
kind = "openai"
transport = "sdk"
sdk_client = "azure"
azure_api_version = "2024-10-21"
azure_deployment = "gpt-4o-mini"
base_url = "https://example.openai.azure.com"
model = "gpt-4o-mini"

[[providers]]
name = "bedrock"
kind = "anthropic"
transport = "sdk"
sdk_client = "bedrock"
region = "us-east-1"
base_url = "https://bedrock-runtime.us-east-1.amazonaws.com"
model = "anthropic.claude-sonnet-4-6"

[[providers]]
name = "vertex"
kind = "anthropic"
transport = "sdk"
sdk_client = "vertex"
region = "us-east5"
project = "my-project"
base_url = "https://us-east5-aiplatform.googleapis.com"
model = "claude-sonnet-4-6"
api_key_env = "VERTEX_TOKEN"
"""


async def test_sdk_client_flavours_are_chosen_in_the_configuration():
    import anthropic
    import openai

    from runtime._build import build_provider

    settings = parse_settings(tomllib.loads(SDK_PROVIDERS))
    built = [build_provider(p, {"VERTEX_TOKEN": "t"}) for p in settings.providers]
    try:
        assert isinstance(built[0]._client, openai.AsyncAzureOpenAI)
        assert isinstance(built[1]._client, anthropic.AsyncAnthropicBedrock)
        assert isinstance(built[2]._client, anthropic.AsyncAnthropicVertex)
    finally:
        for provider in built:
            await provider.aclose()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (('sdk_client = "azure"\n', 'sdk_client = "bedrock"\n'), 'needs kind = "anthropic"'),
        (('region = "us-east-1"\n', ""), "'bedrock' needs kind = \"anthropic\" and region"),
        (('project = "my-project"\n', ""), "'vertex' needs project"),
        (('transport = "sdk"\nsdk_client = "azure"', 'sdk_client = "azure"'), "needs transport"),
    ],
)
def test_sdk_client_settings_are_checked(edit, message):
    old, new = edit
    with pytest.raises(ConfigError) as info:
        parse_settings(tomllib.loads(SDK_PROVIDERS.replace(old, new, 1)), source="sw.toml")
    assert message in str(info.value)


def test_the_server_section_sets_whether_the_heap_is_frozen():
    providers = DOCUMENT[DOCUMENT.index("[[providers]]") :]
    default = build_runtime_config(parse_settings(tomllib.loads(providers)))
    assert default.freeze_heap is True
    off = parse_settings(tomllib.loads("[server]\nfreeze_heap = false\n" + providers))
    assert build_runtime_config(off).freeze_heap is False
    with pytest.raises(ConfigError, match="freeze_heap"):
        parse_settings(tomllib.loads('[server]\nfreeze_heap = "no"\n' + providers))
