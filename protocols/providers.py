"""The provider transports for OpenAI, Anthropic and Gemini, native and SDK-based.

Native transports (``openai_provider``, ``anthropic_provider``, ``gemini_provider``) speak
HTTP directly with msgspec codecs. SDK transports wrap the official async SDKs; they are
imported on first use, since importing the SDKs costs seconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._anthropic import AnthropicCodec, anthropic_provider
from ._gemini import GeminiCodec, gemini_provider
from ._openai import OpenAICodec, openai_provider

if TYPE_CHECKING:
    from ._anthropic_sdk import (
        AnthropicSDKProvider,
        anthropic_bedrock_provider,
        anthropic_vertex_provider,
    )
    from ._gemini_sdk import GeminiSDKProvider
    from ._openai_sdk import OpenAISDKProvider

__all__ = [
    "AnthropicCodec",
    "AnthropicSDKProvider",
    "GeminiCodec",
    "GeminiSDKProvider",
    "OpenAICodec",
    "OpenAISDKProvider",
    "anthropic_bedrock_provider",
    "anthropic_provider",
    "anthropic_vertex_provider",
    "gemini_provider",
    "openai_provider",
]

_LAZY = {
    "OpenAISDKProvider": "._openai_sdk",
    "AnthropicSDKProvider": "._anthropic_sdk",
    "anthropic_bedrock_provider": "._anthropic_sdk",
    "anthropic_vertex_provider": "._anthropic_sdk",
    "GeminiSDKProvider": "._gemini_sdk",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module, __package__), name)
