"""Emulator configuration (msgspec structs, loadable from JSON)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import msgspec

from ._faults import FaultSpec

Provider = Literal["openai", "anthropic", "gemini"]
PROVIDERS: tuple[Provider, ...] = ("openai", "anthropic", "gemini")


class ProviderConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Per-provider behaviour.

    ``rpm``/``tpm``: limits over a sliding ``window`` (seconds, default 60);
    ``valid_keys``: if set, only these API keys are accepted; ``faults``: a
    standing fault (a FaultSpec or the compact header syntax);
    ``context_window``: input-token limit (400 past it); ``models``: if set,
    the listed models (others get the real 404).
    """

    rpm: int | None = None
    tpm: int | None = None
    window: float = 60.0
    valid_keys: frozenset[str] | None = None
    faults: FaultSpec | str | None = None
    context_window: int | None = None
    models: tuple[str, ...] | None = None


class EmulatorConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Whole-emulator configuration.

    ``record_limit``: how many requests are kept; ``prompt_cache``: emulate
    prompt caching (stateful; off keeps usage a pure function of the
    request); ``cache_min_tokens``: smallest cacheable prefix.
    """

    openai: ProviderConfig = msgspec.field(default_factory=ProviderConfig)
    anthropic: ProviderConfig = msgspec.field(default_factory=ProviderConfig)
    gemini: ProviderConfig = msgspec.field(default_factory=ProviderConfig)
    record_limit: int = 1000
    prompt_cache: bool = False
    cache_min_tokens: int = 1024

    def provider(self, name: Provider) -> ProviderConfig:
        """The config of one provider."""
        cfg: ProviderConfig = getattr(self, name)
        return cfg

    @classmethod
    def from_json(cls, data: bytes | str) -> EmulatorConfig:
        """Decode a JSON document (faults may be objects or compact strings)."""
        return msgspec.json.decode(data, type=cls)

    @classmethod
    def load(cls, path: str | Path) -> EmulatorConfig:
        """Read a JSON config file."""
        return cls.from_json(Path(path).read_bytes())
