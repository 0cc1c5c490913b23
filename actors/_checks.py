"""Validation helpers for the pure cores' configuration structs."""

from __future__ import annotations

__all__ = ["is_int", "is_number", "require"]


def is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def require(ok: bool, field: str, expected: str, got: object) -> None:
    """Raise ``ValueError("field: expected ..., got ...")`` unless ``ok``."""
    if not ok:
        raise ValueError(f"{field}: expected {expected}, got {got!r}")
