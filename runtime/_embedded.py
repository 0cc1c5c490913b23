"""The embedded default: the provider emulator plus settings for all three providers on it.

Used by ``switchyard demo`` and ``switchyard chat`` without a configuration file, so that
everything runs with no API keys and no network.
"""

from __future__ import annotations

from typing import Any

from ._settings import Settings, parse_settings

__all__ = ["EMULATED_KEYS", "emulated_settings"]

EMULATED_KEYS = {
    "OPENAI_API_KEY": "sk-emulated",
    "ANTHROPIC_API_KEY": "sk-ant-emulated",
    "GEMINI_API_KEY": "emulated",
}
"""Environment the emulated providers read their (dummy) keys from."""


def emulated_settings(base_url: str, **overrides: Any) -> Settings:
    """Settings for an OpenAI, an Anthropic and a Gemini provider, all on the emulator at
    ``base_url``. ``overrides`` replace top-level sections (e.g. ``router={...}``)."""
    document: dict[str, Any] = {
        "providers": [
            {
                "name": "openai",
                "kind": "openai",
                "base_url": base_url + "/v1",
                "api_key_env": "OPENAI_API_KEY",
                "model": "gpt-4o-mini",
                "priority": 0,
                "rpm": 6000,
                "tpm": 4_000_000,
            },
            {
                "name": "anthropic",
                "kind": "anthropic",
                "base_url": base_url,
                "api_key_env": "ANTHROPIC_API_KEY",
                "model": "claude-sonnet-4-6",
                "priority": 1,
                "rpm": 6000,
                "tpm": 4_000_000,
            },
            {
                "name": "gemini",
                "kind": "gemini",
                "base_url": base_url,
                "api_key_env": "GEMINI_API_KEY",
                "model": "gemini-2.5-flash",
                "priority": 2,
                "rpm": 6000,
                "tpm": 4_000_000,
            },
        ],
    }
    document.update(overrides)
    return parse_settings(document, source="<embedded>")
