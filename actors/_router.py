"""The router actor: takes dispatches from its mailbox and forwards each to a provider.

Routing is synchronous between two receives: a dispatch is either handed to a provider's
mailbox or answered with ``NoRoute`` before the router looks at the next one. So killing the
router (which can only interrupt it while it waits on its mailbox) never loses a dispatch,
and the mailbox itself belongs to the runtime, so dispatches queued during a restart wait
for the next incarnation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Literal, final

import trio

from protocols import Request, SwitchyardError

from ._classifier import TaskClassifier, TaskType
from ._mail import Dispatch, NoRoute
from ._policies import PolicyName, RoutingPolicy
from ._provider import ProviderSlot

__all__ = ["RouterActor"]

# How long to tell an owner to wait when providers are busy or restarting, not refusing.
_SATURATED_RETRY_S = 0.005
_RESTARTING_RETRY_S = 0.05


@final
class RouterActor:
    """Orders providers by policy (the runtime's, or the request's own), puts the providers
    preferred for the request's task type first, skips those that break the request's
    constraints or a budget, and forwards to the first eligible one."""

    def __init__(
        self,
        slots: Sequence[ProviderSlot],
        policy: RoutingPolicy,
        inbox: trio.MemoryReceiveChannel[Dispatch],
        *,
        make_policy: Callable[[PolicyName], RoutingPolicy] | None = None,
        classifier: TaskClassifier | None = None,
        task_routes: Mapping[TaskType, Sequence[str]] | None = None,
    ) -> None:
        self.slots = tuple(slots)
        self.policy = policy
        self.inbox = inbox
        self.routed = 0
        self.rejected = 0
        # Dispatches waiting in the mailbox, kept by whoever sends to it (cheaper to read than
        # the channel's statistics, on every request).
        self.queued = 0
        self._make_policy = make_policy
        self._policies: dict[PolicyName, RoutingPolicy] = {policy.name: policy}
        self._task_routes = {task: tuple(names) for task, names in (task_routes or {}).items()}
        self._classifier = classifier if self._task_routes else None
        self._budgets = any(slot.accounting.budget is not None for slot in self.slots)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        async for dispatch in self.inbox:
            self.queued -= 1
            self.route(dispatch)

    def _policy_for(self, name: PolicyName | None) -> RoutingPolicy:
        if name is None:
            return self.policy
        policy = self._policies.get(name)
        if policy is None:
            if self._make_policy is None:
                return self.policy
            policy = self._policies[name] = self._make_policy(name)
        return policy

    def route(self, dispatch: Dispatch, *, handoff: bool = False) -> None:
        """Forward ``dispatch`` to the first eligible provider, or answer ``NoRoute``.

        The router's own task calls this for each dispatch from its mailbox. Routing never
        waits, so an owner may also call it in its own task while the router is running and
        its mailbox is empty, with the same effect and one scheduler trip fewer. With
        ``handoff`` (non-streaming requests only), a provider actor that is idle enough is
        not sent the dispatch but set as ``dispatch.handoff``, for the owner to run
        (``ProviderActor.serve_handoff``).
        """
        request = dispatch.request
        options = request.options
        handoff = handoff and not request.stream
        ordered = self._policy_for(options.policy).order(self.slots, request)
        if self._classifier is not None:
            ordered = self._prefer_for_task(ordered, request)
        prefer = dispatch.prefer
        if prefer is not None:
            ordered = sorted(ordered, key=lambda s: s.name != prefer)
        skip = dispatch.exclude
        blocked: SwitchyardError | None = None
        screened = False
        if self._budgets or (
            options.max_cost_usd is not None
            or options.min_quality is not None
            or options.max_ttft_s is not None
        ):
            unfit, blocked = self._screen(ordered, request)
            screened = bool(unfit)
            skip = skip | unfit
        first_skip = skip | dispatch.avoid if dispatch.avoid else skip
        wait = self._forward(dispatch, ordered, first_skip, handoff)
        if wait is not False and dispatch.avoid:
            # Only providers whose actor died under this request are left: try them again.
            again = self._forward(dispatch, ordered, skip, handoff)
            wait = again if again is False or wait is None else _shorter(wait, again or wait)
        if wait is False:
            return
        self.rejected += 1
        dispatch.ticket.provider = None
        if wait:
            reason = "no provider can take the request now"
        elif blocked is not None:
            reason = "every eligible provider would exceed a budget"
        elif screened:
            reason = "no provider meets the request's constraints"
        else:
            reason = "no eligible provider left"
        try:
            dispatch.reply.send_nowait(NoRoute(reason, retry_after=wait, error=blocked))
        except trio.BrokenResourceError:
            pass
        finally:
            dispatch.reply.close()

    def _prefer_for_task(
        self, ordered: Sequence[ProviderSlot], request: Request
    ) -> Sequence[ProviderSlot]:
        assert self._classifier is not None
        preferred = self._task_routes.get(self._classifier.classify(request))
        if not preferred:
            return ordered
        rank = {name: i for i, name in enumerate(preferred)}
        last = len(rank)

        def key(slot: ProviderSlot) -> int:
            return min(rank.get(slot.name, last), rank.get(slot.model_for(request), last))

        return sorted(ordered, key=key)

    def _screen(
        self, ordered: Sequence[ProviderSlot], request: Request
    ) -> tuple[frozenset[str], SwitchyardError | None]:
        """Providers that break the request's constraints or a budget, and the first budget
        error met (reported when nothing else can take the request)."""
        options = request.options
        tenant = options.metadata.tenant
        unfit: set[str] = set()
        blocked: SwitchyardError | None = None
        for slot in ordered:
            cost = slot.max_cost(request)
            if options.max_cost_usd is not None and (
                cost is None or cost > Decimal(str(options.max_cost_usd))
            ):
                unfit.add(slot.name)
                continue
            if options.min_quality is not None and (
                slot.quality is None or slot.quality < options.min_quality
            ):
                unfit.add(slot.name)
                continue
            ttft = slot.ttft_estimate
            if options.max_ttft_s is not None and ttft is not None and ttft > options.max_ttft_s:
                unfit.add(slot.name)
                continue
            exceeded = slot.accounting.over_budget(slot.name, tenant, cost)
            if exceeded is not None:
                unfit.add(slot.name)
                blocked = blocked or exceeded
        return frozenset(unfit), blocked

    def _forward(
        self,
        dispatch: Dispatch,
        ordered: Sequence[ProviderSlot],
        skip: frozenset[str],
        handoff: bool,
    ) -> float | Literal[False] | None:
        """Hand ``dispatch`` to the first eligible slot: False when done, else how long until
        one may be eligible (None: nothing to wait for)."""
        tokens = dispatch.request.estimated_tokens
        wait: float | None = None
        for slot in ordered:
            if slot.name in skip:
                continue
            mailbox = slot.mailbox
            actor = slot.actor
            if mailbox is None or (actor is not None and actor.crashing):
                # Down or going down; unless it has failed for good, a restart is coming
                # (the supervisor may not have marked it restarting yet).
                if slot.state not in ("failed", "stopped"):
                    wait = _shorter(wait, _RESTARTING_RETRY_S)
                continue
            if not slot.breaker.would_allow():
                continue
            limit_wait = slot.limiter.wait_time(tokens)
            if limit_wait > 0:
                wait = _shorter(wait, limit_wait)
                continue
            dispatch.ticket.provider = slot.name
            if handoff and actor is not None and actor.takes_handoff():
                dispatch.handoff = actor
                self.routed += 1
                return False
            try:
                mailbox.send_nowait(dispatch)
                slot.queued += 1
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
