"""Messages that travel between the request owner, the router and provider actors.

Each attempt of a request gets its own bounded reply channel. Whoever holds the send side
(the router briefly, then one provider worker) closes it when done, however it is done; an
actor that dies closes it by unwinding. So the owner, reading the receive side, always sees
either a terminal message or the end of the channel, and the end of the channel without a
terminal message means the attempt failed.
"""

from __future__ import annotations

from typing import TypeAlias, final

import trio
from msgspec import Struct

from protocols import Request, Response, StreamEvent, SwitchyardError

__all__ = ["AttemptFailed", "Dispatch", "NoRoute", "Reply", "Ticket"]


class AttemptFailed(Struct, frozen=True):
    """The attempt ended in ``error``; the owner decides whether to retry or fail over."""

    error: SwitchyardError


class NoRoute(Struct, frozen=True):
    """The router found no provider that can take the request now.

    ``retry_after`` is set when one will likely be able to soon (limits refill, an actor
    restarts); otherwise nothing the owner can wait for would help.
    """

    reason: str
    retry_after: float | None = None
    error: SwitchyardError | None = None
    """Why, when one typed error says it (a budget that would be exceeded)."""


Reply: TypeAlias = Response | StreamEvent | AttemptFailed | NoRoute


@final
class Ticket:
    """The owner's remote control for one attempt: cancelling it cancels the upstream call.

    The worker that serves the attempt attaches its cancel scope; ``cancel()`` may come
    before, during or after that, from the owner's task, and always takes effect.
    """

    __slots__ = ("cancelled", "provider", "scope")

    def __init__(self) -> None:
        self.cancelled = False
        self.provider: str | None = None
        self.scope: trio.CancelScope | None = None

    def attach(self, scope: trio.CancelScope) -> None:
        """Called by the worker as it starts the upstream call under ``scope``."""
        self.scope = scope
        if self.cancelled:
            scope.cancel()

    def cancel(self) -> None:
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


@final
class Dispatch:
    """One attempt of ``request``, on its way to the router and then to a provider actor.

    ``exclude`` names providers this request has given up on. ``avoid`` names providers
    whose actor died under this request: others go first, but as a restarted actor is a
    fresh one, they stay a last resort. ``prefer`` names the provider to retry on, when the
    owner chose to retry rather than fail over.
    """

    __slots__ = ("avoid", "exclude", "prefer", "reply", "request", "ticket")

    def __init__(
        self,
        request: Request,
        reply: trio.MemorySendChannel[Reply],
        ticket: Ticket,
        exclude: frozenset[str],
        prefer: str | None,
        avoid: frozenset[str] = frozenset(),
    ) -> None:
        self.request = request
        self.reply = reply
        self.ticket = ticket
        self.exclude = exclude
        self.prefer = prefer
        self.avoid = avoid
