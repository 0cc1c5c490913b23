"""A string that never shows itself in logs, errors or reprs."""

from __future__ import annotations

from typing import final

__all__ = ["Secret"]


@final
class Secret:
    """Holds an API key. ``str()``, ``repr()`` and formatting all print ``'***'``.

    Call ``reveal()`` at the one place the key goes on the wire.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not picklable")
