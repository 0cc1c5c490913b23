"""An OTP-style supervisor for trio actors.

Each child has an explicit ``ChildSpec``. The supervisor runs every child in its own task and
restarts it when it crashes, following the restart strategy:

* ``one_for_one``: only the crashed child restarts;
* ``one_for_all``: every child restarts;
* ``rest_for_one``: the crashed child and the children started after it restart.

Restart intensity bounds crash loops: more than ``max_restarts`` crashes of a child within
``period_s`` seconds and the child is marked ``failed`` (the others keep serving), or, with
``escalate``, the supervisor itself fails with ``ActorFailed`` and takes the runtime down.
Between restarts the supervisor waits an exponential back-off.

Unlike OTP, intensity is counted per child: one provider in a crash loop must not take
healthy providers down with it. ``escalate`` restores the OTP behaviour.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Literal, final

import msgspec
import structlog
import trio

__all__ = [
    "ActorFailed",
    "ActorState",
    "ChildSpec",
    "RestartStrategy",
    "Supervisor",
    "SupervisorConfig",
]

_log = structlog.get_logger("switchyard.supervisor")

ActorState = Literal["starting", "running", "restarting", "failed", "stopped"]
RestartStrategy = Literal["one_for_one", "one_for_all", "rest_for_one"]


class SupervisorConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Restart strategy and intensity: at most ``max_restarts`` crashes in ``period_s``."""

    strategy: RestartStrategy = "one_for_one"
    max_restarts: int = 5
    period_s: float = 10.0
    backoff_base_s: float = 0.05
    backoff_max_s: float = 2.0
    escalate: bool = False

    def __post_init__(self) -> None:
        if self.strategy not in ("one_for_one", "one_for_all", "rest_for_one"):
            raise ValueError(
                "strategy: expected one of one_for_one, one_for_all, rest_for_one; "
                f"got {self.strategy!r}"
            )
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts: expected an integer >= 0, got {self.max_restarts}")
        for name in ("period_s", "backoff_base_s", "backoff_max_s"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ValueError(f"{name}: expected seconds >= 0, got {value}")


class ActorFailed(Exception):
    """A child passed its restart intensity and the supervisor is set to escalate."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"actor {name!r} exceeded its restart intensity; last crash: {reason}")
        self.name = name
        self.reason = reason


RunFn = Callable[..., Awaitable[None]]


@final
class ChildSpec:
    """How to run one child.

    ``run(task_status=...)`` runs one incarnation: it must call ``task_status.started()``
    once it can serve, then run until cancelled. Raising is a crash. Returning is a clean
    stop, and a stopped child is not restarted.
    ``on_down`` runs (synchronously) after every incarnation ends, however it ends.
    """

    __slots__ = ("name", "on_down", "run")

    def __init__(self, name: str, run: RunFn, *, on_down: Callable[[], None] | None = None):
        self.name = name
        self.run = run
        self.on_down = on_down


_SIBLING = "restarted with a sibling"


@final
class ChildStatus:
    """What the supervisor knows of one child: readable by health, written by the supervisor."""

    __slots__ = (
        "_crash_times",
        "_kill_reason",
        "_restart_by_sibling",
        "_scope",
        "last_crash",
        "last_crash_at",
        "restarts",
        "spec",
        "state",
    )

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.state: ActorState = "starting"
        self.restarts = 0
        self.last_crash: str | None = None
        self.last_crash_at: float | None = None
        self._crash_times: deque[float] = deque()
        self._scope: trio.CancelScope | None = None
        self._kill_reason: str | None = None
        self._restart_by_sibling = False


@final
class Supervisor:
    """Runs and restarts children. Use ``await nursery.start(supervisor.run)``.

    ``run`` returns control (``task_status.started()``) once every child has started once, in
    spec order, and then supervises until cancelled.
    """

    def __init__(self, specs: Sequence[ChildSpec], config: SupervisorConfig) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique, got {names}")
        self.config = config
        self._children = [ChildStatus(s) for s in specs]
        self._by_name = {c.spec.name: c for c in self._children}

    @property
    def children(self) -> Sequence[ChildStatus]:
        return self._children

    def status(self, name: str) -> ChildStatus:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no actor named {name!r}; actors: {', '.join(self._by_name)}") from None

    def kill(self, name: str, reason: str = "killed") -> bool:
        """Crash child ``name`` now, as if it had raised. False if it is not running."""
        child = self.status(name)
        if child._scope is None or child.state != "running":
            return False
        child._kill_reason = reason
        child._scope.cancel()
        return True

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            for child in self._children:
                await nursery.start(self._supervise, child)
            task_status.started()

    async def _supervise(
        self, child: ChildStatus, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        announced = False

        def on_running() -> None:
            nonlocal announced
            child.state = "running"
            if not announced:
                announced = True
                task_status.started()

        while True:
            child.state = "starting"
            child._kill_reason = None
            child._restart_by_sibling = False
            crash = await self._incarnation(child, on_running)
            if crash is None:
                child.state = "stopped"
                if not announced:
                    task_status.started()
                return
            if crash == _SIBLING:
                child.state = "restarting"
                continue
            now = trio.current_time()
            child.restarts += 1
            child.last_crash = crash
            child.last_crash_at = now
            times = child._crash_times
            times.append(now)
            while times and times[0] < now - self.config.period_s:
                times.popleft()
            if len(times) > self.config.max_restarts:
                child.state = "failed"
                _log.error("actor_failed", actor=child.spec.name, reason=crash)
                if self.config.escalate:
                    raise ActorFailed(child.spec.name, crash)
                if not announced:
                    announced = True
                    task_status.started()
                return
            child.state = "restarting"
            _log.warning(
                "actor_crashed", actor=child.spec.name, reason=crash, restarts=child.restarts
            )
            self._restart_siblings(child)
            delay = min(
                self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (len(times) - 1)
            )
            await trio.sleep(delay)

    async def _incarnation(self, child: ChildStatus, on_running: Callable[[], None]) -> str | None:
        """Run one incarnation. Returns None for a clean stop, else why it went down."""
        scope = trio.CancelScope()
        child._scope = scope
        crash: str | None = None
        try:
            with scope:
                try:
                    async with trio.open_nursery() as nursery:
                        await nursery.start(_call_run, child.spec.run)
                        on_running()
                # A crash, whatever it is: that is what supervisors are for. ``except*``, as
                # a crash may come grouped with the cancellation of a runtime shutting down.
                except* Exception as crashed:
                    crash = _describe(crashed)
        finally:
            child._scope = None
            if child.spec.on_down is not None:
                child.spec.on_down()
        if crash is not None:
            return crash
        if child._kill_reason is not None:
            return child._kill_reason
        if child._restart_by_sibling:
            return _SIBLING
        return None

    def _restart_siblings(self, crashed: ChildStatus) -> None:
        strategy = self.config.strategy
        if strategy == "one_for_one":
            return
        index = self._children.index(crashed)
        targets = self._children if strategy == "one_for_all" else self._children[index + 1 :]
        for sibling in targets:
            if sibling is not crashed and sibling._scope is not None:
                sibling._restart_by_sibling = True
                sibling._scope.cancel()


async def _call_run(run: RunFn, *, task_status: trio.TaskStatus[None]) -> None:
    await run(task_status=task_status)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _describe(exc.exceptions[0])
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
