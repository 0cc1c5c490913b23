"""Fault specifications, the ``x-emulator-fault`` header syntax, seeded firing."""

from __future__ import annotations

import random
from typing import Final

import msgspec

ERROR_KINDS: Final = frozenset(
    {
        "bad_request",
        "auth",
        "permission",
        "not_found",
        "context_length",
        "rate_limit",
        "server",
        "unavailable",
        "overloaded",
        "timeout",
    }
)
"""Named errors for ``FaultSpec.error``; each maps to a provider's real status and body."""

STATUS_KINDS: Final = {
    400: "bad_request",
    401: "auth",
    403: "permission",
    404: "not_found",
    429: "rate_limit",
    500: "server",
    502: "server",
    503: "unavailable",
    504: "timeout",
    529: "overloaded",
}


class FaultError(ValueError):
    """A fault specification that cannot be parsed."""


class FaultSpec(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """What to break in a response. All fields optional; see the package docstring."""

    status: int | None = None
    error: str | None = None
    retry_after: float | None = None
    retry_after_date: float | None = None
    retry_after_ms: int | None = None
    latency: float = 0.0
    first_token: float = 0.0
    drip: float = 0.0
    disconnect: int | None = None
    error_event: int | None = None
    truncate: int | None = None
    malformed: int | None = None
    rate: float = 1.0
    seed: int = 0
    times: int | None = None

    def __post_init__(self) -> None:
        if self.error is not None and self.error not in ERROR_KINDS:
            raise FaultError(f"unknown error {self.error!r}; expected one of {sorted(ERROR_KINDS)}")
        if self.status is not None and not 100 <= self.status <= 599:
            raise FaultError(f"status {self.status} out of range")
        if not 0.0 <= self.rate <= 1.0:
            raise FaultError("rate must be within [0, 1]")

    @property
    def error_kind(self) -> str | None:
        """The named error this spec answers with, or None when it sends a response."""
        if self.error is not None:
            return self.error
        if self.status is None:
            return None
        return STATUS_KINDS.get(self.status, "server" if self.status >= 500 else "bad_request")


_FIELDS: Final = frozenset(FaultSpec.__struct_fields__)


def parse_fault(text: str) -> FaultSpec:
    """Parse the compact ``key=value,key=value`` syntax (``-`` in keys reads as ``_``).

    A bare key means ``1`` (``malformed`` is ``malformed=1``). Example:
    ``status=429,retry_after=2,rate=0.5,seed=7``.
    """
    raw: dict[str, str] = {}
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        key = key.strip().lower().replace("-", "_")
        if key not in _FIELDS:
            raise FaultError(f"unknown fault key {key!r}")
        raw[key] = value.strip() if sep else "1"
    return to_fault(raw)


def to_fault(value: object) -> FaultSpec:
    """A FaultSpec from a mapping (JSON object) or the compact string syntax."""
    if isinstance(value, FaultSpec):
        return value
    if isinstance(value, str):
        return parse_fault(value)
    try:
        return msgspec.convert(value, FaultSpec, strict=False)
    except msgspec.ValidationError as exc:
        raise FaultError(str(exc)) from exc


class FaultState:
    """A FaultSpec armed for a provider: seeded draws and a remaining count."""

    __slots__ = ("_rng", "remaining", "spec")

    def __init__(self, spec: FaultSpec) -> None:
        self.spec = spec
        self._rng = random.Random(spec.seed)
        self.remaining = spec.times

    def fire(self) -> bool:
        """Whether this request gets the fault (draws once per request if ``rate < 1``)."""
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.spec.rate < 1.0 and self._rng.random() >= self.spec.rate:
            return False
        if self.remaining is not None:
            self.remaining -= 1
        return True
