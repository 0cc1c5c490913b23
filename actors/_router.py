"""The router actor: takes dispatches from its mailbox and forwards each to a provider.

Routing is synchronous between two receives: a dispatch is either handed to a provider's
mailbox or answered with ``NoRoute`` before the router looks at the next one. So killing the
router (which can only interrupt it while it waits on its mailbox) never loses a dispatch,
and the mailbox itself belongs to the runtime, so dispatches queued during a restart wait
for the next incarnation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, final

import trio

from ._mail import Dispatch, NoRoute
from ._policies import RoutingPolicy
from ._provider import ProviderSlot

__all__ = ["RouterActor"]

# How long to tell an owner to wait when providers are busy or restarting, not refusing.
_SATURATED_RETRY_S = 0.005
_RESTARTING_RETRY_S = 0.05


@final
class RouterActor:
    def __init__(
        self,
        slots: Sequence[ProviderSlot],
        policy: RoutingPolicy,
        inbox: trio.MemoryReceiveChannel[Dispatch],
    ) -> None:
        self.slots = tuple(slots)
        self.policy = policy
        self.inbox = inbox
        self.routed = 0
        self.rejected = 0

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for dispatch in self.inbox:
            self.route(dispatch)

    def route(self, dispatch: Dispatch) -> None:
        """Forward ``dispatch`` to the first eligible provider, or answer ``NoRoute``."""
        ordered = self.policy.order(self.slots)
        prefer = dispatch.prefer
        if prefer is not None:
            ordered = sorted(ordered, key=lambda s: s.name != prefer)
        skip = dispatch.exclude | dispatch.avoid if dispatch.avoid else dispatch.exclude
        wait = self._forward(dispatch, ordered, skip)
        if wait is not False and dispatch.avoid:
            # Only providers whose actor died under this request are left: try them again.
            again = self._forward(dispatch, ordered, dispatch.exclude)
            wait = again if again is False or wait is None else _shorter(wait, again or wait)
        if wait is False:
            return
        self.rejected += 1
        dispatch.ticket.provider = None
        reason = "no provider can take the request now" if wait else "no eligible provider left"
        with dispatch.reply:
            try:
                dispatch.reply.send_nowait(NoRoute(reason, retry_after=wait))
            except trio.BrokenResourceError:
                pass

    def _forward(
        self, dispatch: Dispatch, ordered: Sequence[ProviderSlot], skip: frozenset[str]
    ) -> float | Literal[False] | None:
        """Hand ``dispatch`` to the first eligible slot: False when done, else how long until
        one may be eligible (None: nothing to wait for)."""
        tokens = dispatch.request.estimated_tokens
        wait: float | None = None
        for slot in ordered:
            if slot.name in skip:
                continue
            mailbox = slot.mailbox
            if mailbox is None:
                if slot.state in ("starting", "restarting"):
                    wait = _shorter(wait, _RESTARTING_RETRY_S)
                continue
            if not slot.breaker.would_allow():
                continue
            limit_wait = slot.limiter.wait_time(tokens)
            if limit_wait > 0:
                wait = _shorter(wait, limit_wait)
                continue
            dispatch.ticket.provider = slot.name
            try:
                mailbox.send_nowait(dispatch)
            except trio.WouldBlock:
                wait = _shorter(wait, _SATURATED_RETRY_S)
                continue
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                wait = _shorter(wait, _RESTARTING_RETRY_S)  # it is going down right now
                continue
            self.routed += 1
            return False
        return wait

    @property
    def mailbox_depth(self) -> int:
        return self.inbox.statistics().current_buffer_used


def _shorter(current: float | None, candidate: float) -> float:
    return candidate if current is None or candidate < current else current
