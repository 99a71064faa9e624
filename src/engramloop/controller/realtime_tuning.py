"""OS real-time tuning for the length of a real-time run, undone on every exit path.

- CPython's GIL switch interval drops from 5 ms to 50 us: the scheduler thread needs the
  GIL promptly at a pulse's time, and the default interval would add up to 5 ms of
  lateness.
- ``scheduler.realtime_priority`` > 0: SCHED_FIFO for the loop thread (and the threads it
  creates afterwards, which inherit its policy), when the OS allows it.
- ``scheduler.cpu_wakeup_latency_us`` >= 0: a PM QoS CPU wake-up latency request
  (:mod:`controller.cpu_latency`), when the OS allows it.

A refused request is a note (logged, recorded, shown) and the run continues with normal
scheduling; :meth:`RealtimeTuning.restore` puts everything back (idempotent).
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable

from engramloop.controller import cpu_latency

#: GIL switch interval during real-time runs (CPython default 5 ms), seconds
SWITCH_INTERVAL_S = 0.00005


class RealtimeTuning:
    """The OS settings a real-time run holds (see the module docstring).

    Parameters
    ----------
    note : callable(str)
        Reports what was done or refused (the loop logs, records and shows it).
    log : callable(str)
        Reports a failure to restore normal scheduling at the end (logged only).
    """

    def __init__(self, note: Callable[[str], None], log: Callable[[str], None]) -> None:
        self._note, self._log = note, log
        self._switch_interval: float | None = None
        self._sched_before: tuple | None = None
        self.cpu_request: cpu_latency.CpuLatencyRequest | None = None

    def apply(self, realtime_priority: int, cpu_wakeup_latency_us: int) -> None:
        """Take the switch interval, SCHED_FIFO and the CPU latency request as asked."""
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._set_realtime(realtime_priority)
        self._hold_cpu_awake(cpu_wakeup_latency_us)

    def _set_realtime(self, priority: int) -> None:
        """SCHED_FIFO for this thread (and threads it creates) when asked and allowed."""
        if priority <= 0:
            return
        try:
            self._sched_before = (os.sched_getscheduler(0), os.sched_getparam(0))
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
            self._note(f"real-time scheduling: SCHED_FIFO priority {priority}")
        except (AttributeError, OSError) as exc:
            self._sched_before = None
            self._note(f"scheduler.realtime_priority = {priority} refused ({exc}); running "
                       "with normal scheduling (needs root or CAP_SYS_NICE on Linux)")

    def _hold_cpu_awake(self, latency_us: int) -> None:
        """Hold a PM QoS CPU wake-up latency request for the run when asked and allowed."""
        if latency_us < 0:
            return
        req = cpu_latency.CpuLatencyRequest(latency_us, cpu_latency.DEVICE)
        try:
            req.hold()
        except OSError as exc:
            self._note(f"scheduler.cpu_wakeup_latency_us = {latency_us} refused ({exc}); "
                       "running with normal CPU idle states")
            return
        self.cpu_request = req
        self._note(f"CPU wake-up latency held at {latency_us} us for the run (PM QoS)")

    def release_cpu(self) -> None:
        """Drop the PM QoS request, if one is held (idempotent)."""
        req, self.cpu_request = self.cpu_request, None
        if req is not None:
            req.release()

    def restore(self) -> None:
        """Switch interval, CPU idle states and scheduling back as they were (idempotent;
        a scheduling that cannot be restored is logged)."""
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None
        self.release_cpu()
        before, self._sched_before = self._sched_before, None
        if before is not None:
            try:
                os.sched_setscheduler(0, before[0], before[1])
            except OSError as exc:
                self._log(f"could not restore normal scheduling: {exc}")


__all__ = ["RealtimeTuning", "SWITCH_INTERVAL_S"]
