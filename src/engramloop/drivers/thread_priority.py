"""Real-time priority for the few threads that must run on time whatever else the machine
does: a stimulator's heartbeat and reply reader (drivers/stimbox/host.py), and the device
emulators' threads, which stand in for hardware that has its own processor.
"""
from __future__ import annotations

import os

#: SCHED_FIFO priority of the heartbeat and reader threads where the OS allows it: above
#: the loop's and scheduler's (``scheduler.realtime_priority``, at most 98 + 1), so CPU
#: load from other processes cannot delay a heartbeat past the 100 ms watchdog
DRIVER_FIFO_PRIORITY = 99


def raise_thread_priority(priority: int = DRIVER_FIFO_PRIORITY) -> str:
    """Give the calling thread SCHED_FIFO ``priority`` (Linux, with CAP_SYS_NICE), else
    the lowest nice value allowed; returns what it got, for the log. The threads that use
    it sleep almost all the time (a frame every 20 ms), so they cannot starve others."""
    try:
        top = os.sched_get_priority_max(os.SCHED_FIFO)
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(min(priority, top)))
        return f"SCHED_FIFO {min(priority, top)}"
    except (AttributeError, OSError) as exc:
        why = str(exc)
    try:
        os.setpriority(os.PRIO_PROCESS, 0, -10)  # Linux: 0 = the calling thread
        return f"nice -10 (SCHED_FIFO refused: {why})"
    except (AttributeError, OSError):
        return f"normal (SCHED_FIFO refused: {why}; needs CAP_SYS_NICE)"



__all__ = ["raise_thread_priority", "DRIVER_FIFO_PRIORITY"]
