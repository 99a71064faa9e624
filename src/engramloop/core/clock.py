"""Clocks. One clock rules a run: the host's monotonic LSL clock on a rig, or a simulated
clock for unpaced (``--speed max``) runs and tests. Everything that needs the time takes a
clock object so tests can inject one instead of sleeping."""
from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Current time in seconds."""

    def sleep_until(self, t_s: float) -> None:
        """Block (or, for a simulated clock, advance) until time ``t_s`` seconds."""


class HostClock:
    """The host monotonic clock in seconds, identical to ``pylsl.local_clock()``.

    liblsl's ``local_clock`` is ``std::chrono::steady_clock``, which on Linux is
    CLOCK_MONOTONIC — the same clock as ``time.monotonic()``; we use the latter directly so
    reading the time does not cross into ctypes (tests check the two agree).
    """

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, t_s: float, spin_s: float = 0.0005) -> None:
        """Sleep until ``spin_s`` before ``t_s``, then spin for the last stretch."""
        while True:
            remaining = t_s - time.monotonic()
            if remaining <= 0:
                return
            if remaining > spin_s:
                time.sleep(remaining - spin_s)


class SimClock:
    """A clock that only moves when told to; ``sleep_until`` jumps forward."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._t = float(start_s)

    def now(self) -> float:
        return self._t

    def advance(self, dt_s: float) -> None:
        if dt_s < 0:
            raise ValueError(f"SimClock.advance: dt_s must be >= 0, got {dt_s}")
        self._t += dt_s

    def sleep_until(self, t_s: float) -> None:
        if t_s > self._t:
            self._t = float(t_s)
