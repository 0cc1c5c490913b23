"""Messages that travel between the request owner, the router and provider actors.

Each attempt of a request gets its own reply channel: a bounded trio memory channel for a
stream, a ``OneShot`` for a non-streaming request. Whoever holds the send side (the router
briefly, then one provider worker, or the owner serving a handoff) closes it when done,
however it is done; an actor that dies closes it by unwinding. So the owner, reading the
receive side, always sees either a terminal message or the end of the channel, and the end
of the channel without a terminal message means the attempt failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeAlias, final

import trio
from msgspec import Struct

from protocols import Request, Response, StreamEvent, SwitchyardError

if TYPE_CHECKING:
    from ._provider import ProviderActor

__all__ = ["AttemptFailed", "Dispatch", "NoRoute", "OneShot", "Reply", "ReplyTo", "Ticket"]


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


class ReplyTo(Protocol):
    """The send side of an attempt's reply channel, as the router and actors use it.

    ``send_nowait`` raises ``trio.WouldBlock`` when the channel is full and
    ``trio.BrokenResourceError`` once the owner has stopped listening.
    """

    def send_nowait(self, value: Reply, /) -> None: ...

    async def send(self, value: Reply, /) -> None: ...

    def close(self) -> None: ...


@final
class OneShot:
    """The reply channel of a non-streaming attempt: at most one message, then the end.

    Both ends in one object, for one owner and one sender. Creating a trio memory channel
    costs about as much as the rest of routing a request; an answer that is one message
    needs none of its buffering. Sending follows a memory channel of size 1: ``WouldBlock``
    once a message is in, ``BrokenResourceError`` once the owner has discarded it,
    ``ClosedResourceError`` after ``close``; but ``send`` never waits for room, as a second
    message would be a bug, and raises ``WouldBlock`` too.
    """

    __slots__ = ("_closed", "_discarded", "_message", "_woken")

    def __init__(self) -> None:
        self._message: Reply | None = None
        self._closed = False
        self._discarded = False
        self._woken: trio.Event | None = None  # made only if the owner has to wait

    # --- the sender's side ---------------------------------------------------------------------

    def send_nowait(self, value: Reply, /) -> None:
        if self._discarded:
            raise trio.BrokenResourceError("the owner stopped listening")
        if self._closed:
            raise trio.ClosedResourceError("the reply was closed")
        if self._message is not None:
            raise trio.WouldBlock
        self._message = value
        if self._woken is not None:
            self._woken.set()

    async def send(self, value: Reply, /) -> None:
        await trio.lowlevel.checkpoint()
        self.send_nowait(value)

    def close(self) -> None:
        self._closed = True
        if self._woken is not None:
            self._woken.set()

    # --- the owner's side ----------------------------------------------------------------------

    def take(self) -> Reply | None:
        """The message; None if the sender closed without one (or has not sent yet)."""
        return self._message

    async def receive(self) -> Reply | None:
        """Wait for the message or the end (None)."""
        if self._message is None and not self._closed:
            self._woken = trio.Event()
            await self._woken.wait()
        else:
            await trio.lowlevel.checkpoint()
        return self._message

    def discard(self) -> None:
        """The owner stops listening: later sends raise ``BrokenResourceError``."""
        self._discarded = True


@final
class Ticket:
    """The owner's remote control for one attempt: cancelling it cancels the upstream call.

    The worker that serves the attempt attaches its cancel scope; ``cancel()`` may come
    before, during or after that, from the owner's task, and always takes effect.
    ``orphan()`` is the actor's side of the same: its incarnation ended under an attempt
    served in the owner's task (see ``ProviderActor.serve_handoff``).
    """

    __slots__ = ("cancelled", "orphaned", "provider", "scope")

    def __init__(self) -> None:
        self.cancelled = False
        self.orphaned = False
        self.provider: str | None = None
        self.scope: trio.CancelScope | None = None

    def attach(self, scope: trio.CancelScope) -> None:
        """Called by the worker as it starts the upstream call under ``scope``."""
        self.scope = scope
        if self.cancelled or self.orphaned:
            scope.cancel()

    def cancel(self) -> None:
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()

    def orphan(self) -> None:
        self.orphaned = True
        if self.scope is not None:
            self.scope.cancel()


@final
class Dispatch:
    """One attempt of ``request``, on its way to the router and then to a provider actor.

    ``exclude`` names providers this request has given up on. ``avoid`` names providers
    whose actor died under this request: others go first, but as a restarted actor is a
    fresh one, they stay a last resort. ``prefer`` names the provider to retry on, when the
    owner chose to retry rather than fail over. ``handoff`` is set by a router that routed
    on the owner's behalf (``RouterActor.route(..., handoff=True)``) to the provider actor
    the owner is to run the attempt for, in its own task.
    """

    __slots__ = ("avoid", "exclude", "handoff", "prefer", "reply", "request", "ticket")

    def __init__(
        self,
        request: Request,
        reply: ReplyTo,
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
        self.handoff: ProviderActor | None = None
