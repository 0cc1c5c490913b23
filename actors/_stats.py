"""Small, allocation-light statistics for hot paths: latency percentiles, EWMA, windowed counts.

Everything here is pure: no I/O, no tasks, and time only enters through explicit arguments.
"""

from __future__ import annotations

import math
from math import exp
from typing import final

__all__ = ["Ewma", "LatencyWindow", "WindowedCounter"]


@final
class LatencyWindow:
    """Ring buffer of the most recent ``size`` samples (seconds).

    Guarantees: ``add`` is O(1) and allocation-free; memory is fixed at ``size`` floats;
    ``percentile`` sees exactly the last ``min(count, size)`` samples added.
    """

    __slots__ = ("_buf", "_count", "_next", "_size")

    def __init__(self, size: int = 256) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"size: expected an integer >= 1, got {size!r}")
        self._size = size
        self._buf = [0.0] * size
        self._next = 0
        self._count = 0

    @property
    def count(self) -> int:
        """Number of samples currently in the window (at most ``size``)."""
        return self._count

    @property
    def size(self) -> int:
        """Maximum number of samples kept."""
        return self._size

    def add(self, x: float) -> None:
        """Record a sample, evicting the oldest once the window is full. Rejects NaN."""
        # A NaN would make every later sort (and so every percentile) meaningless.
        if x != x:
            raise ValueError("x: expected a number, got nan")
        i = self._next
        self._buf[i] = x
        i += 1
        self._next = 0 if i == self._size else i
        if self._count < self._size:
            self._count += 1

    def percentile(self, p: float) -> float | None:
        """Nearest-rank ``p``-th percentile (``p`` in [0, 100]) of the window; None if empty.

        The result is always one of the stored samples: the smallest one such that at
        least ``p`` percent of samples are <= it (``p == 0`` gives the minimum).
        """
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"p: expected a number in [0, 100], got {p!r}")
        n = self._count
        if n == 0:
            return None
        data = sorted(self._buf[:n]) if n < self._size else sorted(self._buf)
        rank = math.ceil(p / 100.0 * n)
        return data[rank - 1 if rank > 0 else 0]


@final
class Ewma:
    """Exponentially weighted moving average: ``value += alpha * (x - value)``.

    Guarantees: the first sample becomes the value as-is (no bias towards zero); the value
    always lies between the smallest and largest sample seen.
    """

    __slots__ = ("_alpha", "_value")

    def __init__(self, alpha: float = 0.2) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha: expected a number in (0, 1], got {alpha!r}")
        self._alpha = alpha
        self._value: float | None = None

    @property
    def alpha(self) -> float:
        return self._alpha

    @property
    def value(self) -> float | None:
        """Current average, or None before the first ``update``."""
        return self._value

    def update(self, x: float) -> None:
        """Fold in one sample. Rejects NaN."""
        if x != x:
            raise ValueError("x: expected a number, got nan")
        v = self._value
        self._value = x if v is None else v + self._alpha * (x - v)


@final
class DecayingAverage:
    """An average whose memory fades with time, not with sample count.

    Each sample ``x`` at time ``now`` moves the value to ``w * value + (1 - w) * x`` with
    ``w = exp(-(now - last) / tau_s)``: frequent samples average over about ``tau_s``
    seconds of traffic, while a sample after a long silence (a provider re-measured by
    exploration) mostly replaces what is stale. The first sample is taken as-is.
    """

    __slots__ = ("_last", "_tau", "_value")

    def __init__(self, tau_s: float = 1.0) -> None:
        if not (tau_s > 0 and math.isfinite(tau_s)):
            raise ValueError(f"tau_s: expected seconds > 0, got {tau_s!r}")
        self._tau = tau_s
        self._value: float | None = None
        self._last = 0.0

    @property
    def value(self) -> float | None:
        return self._value

    def update(self, x: float, now: float) -> None:
        if x != x:
            raise ValueError("x: expected a number, got nan")
        v = self._value
        if v is None:
            self._value = x
        else:
            gap = now - self._last
            w = exp(-gap / self._tau) if gap > 0.0 else 1.0
            self._value = w * v + (1.0 - w) * x
        self._last = now


@final
class WindowedCounter:
    """Count of events over a sliding time window, kept in ``buckets`` fixed time buckets.

    Callers pass the current time to every call, so one clock reading can drive several
    counters. Time is split into buckets of ``window_s / buckets`` seconds; the window is
    the current bucket plus the ``buckets - 1`` before it.

    Guarantees: memory is O(buckets); ``add``/``total`` are O(1) amortised; an event added
    at time t is counted by every call at a time in [t, t + window_s * (1 - 1/buckets)] and
    by none at a time >= t + window_s (it expires with its whole bucket). A clock that
    steps backwards is treated as not having moved.
    """

    __slots__ = ("_counts", "_epoch", "_n", "_total", "_width")

    def __init__(self, window_s: float, *, now: float, buckets: int = 10) -> None:
        if not 0.0 < window_s < math.inf:
            raise ValueError(f"window_s: expected a finite number > 0, got {window_s!r}")
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ValueError(f"buckets: expected an integer >= 1, got {buckets!r}")
        self._n = buckets
        self._width = window_s / buckets
        self._counts = [0] * buckets
        self._epoch = int(now // self._width)
        self._total = 0

    @property
    def bucket_width_s(self) -> float:
        """Length of one bucket: the granularity at which events expire."""
        return self._width

    def _advance(self, now: float) -> int:
        epoch = int(now // self._width)
        gap = epoch - self._epoch
        if gap > 0:
            counts = self._counts
            n = self._n
            if gap >= n:
                for i in range(n):
                    counts[i] = 0
                self._total = 0
            else:
                for e in range(self._epoch + 1, epoch + 1):
                    i = e % n
                    self._total -= counts[i]
                    counts[i] = 0
            self._epoch = epoch
        return self._epoch % self._n

    def add(self, now: float, n: int = 1) -> None:
        """Count ``n`` events at time ``now``."""
        if now // self._width > self._epoch:  # into a new bucket: expire the passed ones
            self._advance(now)
        self._counts[self._epoch % self._n] += n
        self._total += n

    def total(self, now: float) -> int:
        """Events counted in the window as of ``now``."""
        self._advance(now)
        return self._total

    def clear(self) -> None:
        """Forget every event (the bucket alignment is kept)."""
        counts = self._counts
        for i in range(self._n):
            counts[i] = 0
        self._total = 0
