"""The pulse scheduler: fires approved pulses at absolute host-clock times.

Phase-locked pulses are scheduled for a predicted time. A dedicated thread sleeps until
shortly before the earliest pulse's ``intended_s`` and spins the last stretch, then sends it
to every output and records the actual send time (so lateness = sent - intended is known for
every pulse). A pulse that would leave after its ``deadline_s`` is cancelled and logged,
never sent late. Everything happens against absolute deadlines on one clock (no relative
sleeps that drift).

The same firing code runs without the thread for ``--speed max`` runs and tests: the loop
calls :meth:`Scheduler.advance_to`, which jumps a :class:`~drivers.clock.SimClock` to each
due pulse in turn and fires it.

Only pulses the governor issued are accepted (:meth:`Scheduler.submit` checks
:meth:`controller.governor.Governor.issued`), and a pulse is cancelled at fire time if the
governor has been disarmed meanwhile. Sham pulses go through every step but no output is
called: their Delivery has status ``"sham"``.
"""
from __future__ import annotations

import contextlib
import heapq
import math
import os
import threading
import time
from collections import deque
from dataclasses import dataclass

from engramloop.controller.governor import Governor, SafetyError
from engramloop.controller.latency import Histogram
from engramloop.core.pulse import Delivery, DeviceError, Output, Pulse
from engramloop.core.schema import setting


@dataclass(frozen=True)
class SchedulerSettings:
    """``[scheduler]``: how pulses are timed."""

    budget_s: float = setting(
        0.002, gt=0, le=1.0, unit="s",
        doc="latest acceptable send time after a pulse's intended time; later means "
            "cancelled (sets Pulse.deadline_s)")
    spin_s: float = setting(
        0.001, ge=0, le=0.05, unit="s",
        doc="the thread sleeps until this long before a pulse, then spins (busy-waits) "
            "for the last stretch; longer is more precise and uses more CPU")
    realtime_priority: int = setting(
        0, ge=0, le=99,
        doc="Linux SCHED_FIFO priority for the loop and scheduler threads in real-time runs "
            "(needs root or CAP_SYS_NICE; refused -> a warning and normal scheduling); 0 = "
            "normal scheduling")
    cpu_wakeup_latency_us: int = setting(
        -1, ge=-1, le=2**31 - 1, unit="us",
        doc="Linux PM QoS request held during real-time runs: the largest CPU wake-up "
            "latency allowed (0 = idle CPUs keep polling, so the loop does not wake up "
            "cold after each chunk's wait; costs power); needs root or write access to "
            "/dev/cpu_dma_latency, refused -> a warning; -1 = leave the CPUs alone")
    max_pending: int = setting(
        64, ge=1, le=100000, unit="pulses",
        doc="bound on pulses waiting to fire; more is an error in the policy")

    def validate(self) -> None:
        if self.spin_s >= 0.05:
            raise ValueError("spin_s: must be < 0.05 s")


class Scheduler:
    """Holds approved pulses in time order and fires each one on time or cancels it.

    Parameters
    ----------
    settings : SchedulerSettings
    governor : Governor
        The governor whose approved pulses alone may be submitted.
    outputs : list of Output
        Opened (and for ``stim`` runs armed) outputs; each pulse is sent to all of them.
    clock : Clock
        ``HostClock`` for the threaded mode, ``SimClock`` for :meth:`advance_to`.
    max_log : int
        Bound on undrained deliveries kept for the loop (oldest dropped past it, counted
        in :attr:`dropped_log`).
    """

    def __init__(self, settings: SchedulerSettings, governor: Governor,
                 outputs: list[Output], clock, max_log: int = 4096) -> None:
        self.settings = settings
        self.governor = governor
        # loopbacks (the simulated output) last: they are fed only what every device
        # output before them delivered
        self.outputs = [o for o in outputs if not getattr(o, "loopback", False)] + \
            [o for o in outputs if getattr(o, "loopback", False)]
        self.clock = clock
        self._heap: list[tuple[float, int, Pulse]] = []
        self._cv = threading.Condition()
        self._fire_lock = threading.Lock()  # outputs are called by one thread at a time
        self._records: deque = deque(maxlen=max_log)
        self.dropped_log = 0
        self._thread: threading.Thread | None = None
        self._stop = False
        self.error: BaseException | None = None
        #: lateness (actual send - intended) of every sent pulse, seconds
        self.lateness = Histogram()
        #: time spent in Output.send for every sent pulse, seconds
        self.send_time = Histogram()
        self.n_sent = 0
        self.n_cancelled = 0

    # ------------------------------------------------------------- submission
    def submit(self, pulse: Pulse, fire_if_due: bool = False) -> bool:
        """Queue an approved pulse to fire at ``pulse.intended_s``.

        Parameters
        ----------
        pulse : Pulse
            Must be the very object the governor issued.
        fire_if_due : bool
            If the pulse is already due (``intended_s <= now``), send it from the calling
            thread at once instead of waking the scheduler thread (saves a thread hand-over
            on the ripple path; outputs are still only called under the scheduler's lock).

        Returns
        -------
        bool
            True if it was fired (or cancelled) inline, False if queued.

        Raises
        ------
        SafetyError
            If the governor did not issue this very pulse.
        RuntimeError
            If the scheduler thread failed earlier (the error is chained).
        """
        if not self.governor.issued(pulse):
            raise SafetyError(f"pulse {pulse.pulse_id} was not approved by the governor; "
                              "refusing to schedule it")
        if self.error is not None:
            raise RuntimeError(f"scheduler stopped after an error: {self.error}") from self.error
        if fire_if_due and pulse.intended_s <= self.clock.now():
            with self._fire_lock:
                self._fire(pulse)
            return True
        with self._cv:
            if len(self._heap) >= self.settings.max_pending:
                self._log_cancel(pulse, "queue full (scheduler.max_pending)")
                return True
            heapq.heappush(self._heap, (pulse.intended_s, pulse.pulse_id, pulse))
            self._cv.notify()
        return False

    @contextlib.contextmanager
    def exclusive(self, timeout_s: float = 0.5):
        """Hold the outputs for the caller (no send in progress or starting meanwhile), e.g.
        to disarm them; after ``timeout_s`` (a send hung on a dead device) the caller
        proceeds anyway, since disarming must never wait forever."""
        got = self._fire_lock.acquire(timeout=timeout_s)
        try:
            yield got
        finally:
            if got:
                self._fire_lock.release()

    @property
    def pending(self) -> int:
        with self._cv:
            return len(self._heap)

    def next_due_s(self) -> float:
        """Intended time of the earliest pending pulse, seconds (inf when none)."""
        with self._cv:
            return self._heap[0][0] if self._heap else math.inf

    def drain(self) -> list[tuple[Pulse, Delivery]]:
        """Deliveries (and cancellations) since the last call, oldest first."""
        if not self._records:
            return []           # the common case, every chunk: no exception raised
        out = []
        while True:
            try:
                out.append(self._records.popleft())
            except IndexError:
                return out

    def cancel_all(self, reason: str) -> None:
        """Cancel every pending pulse (logged with ``reason``)."""
        with self._cv:
            pending, self._heap = self._heap, []
            self._cv.notify()
        for _, _, p in sorted(pending):
            self._log_cancel(p, reason)

    # ----------------------------------------------------------------- firing
    def _log(self, pulse: Pulse, delivery: Delivery) -> None:
        if len(self._records) == self._records.maxlen:
            self.dropped_log += 1
        self._records.append((pulse, delivery))
        self.governor.forget(pulse.pulse_id)

    def _log_cancel(self, pulse: Pulse, reason: str) -> None:
        self.n_cancelled += 1
        self._log(pulse, Delivery(pulse.pulse_id, "scheduler", "cancelled", reason=reason))

    def _fire(self, pulse: Pulse) -> None:
        """Send one due pulse now, or cancel it if past its deadline or disarmed."""
        now = self.clock.now()
        if now > pulse.deadline_s:
            late_ms = (now - pulse.intended_s) * 1e3
            budget_ms = (pulse.deadline_s - pulse.intended_s) * 1e3
            self._log_cancel(pulse, f"late: {late_ms:.3f} ms after intended, deadline "
                                    f"{budget_ms:.3f} ms")
            return
        if not self.governor.armed:
            self._log_cancel(pulse, "governor disarmed before the pulse was due")
            return
        if self.governor.faulted:
            self._log_cancel(pulse, "an output faulted before the pulse was due")
            return
        if pulse.condition == "sham":
            self.lateness.record(now - pulse.intended_s)
            self.n_sent += 1
            self._log(pulse, Delivery(pulse.pulse_id, "sham", "sham", sent_s=now))
            return
        if not self.outputs:
            # (--speed max of a recorded file: the stimulators are not used) the pulse
            # goes nowhere, and says so in the recording and the summary
            self._log_cancel(pulse, "no stimulator output in this run (--speed max does not "
                                    "use the configured stimulators)")
            return
        first = True
        refused = ""
        for out in self.outputs:
            if refused and getattr(out, "loopback", False):
                # the simulator feels only what a device delivered: a pulse the device
                # refused never reaches the simulated brain
                self._log(pulse, Delivery(pulse.pulse_id, out.name, "cancelled",
                                          reason=f"not applied: {refused}"))
                continue
            t0 = self.clock.now()
            try:
                d = out.send(pulse)
            except DeviceError as exc:  # the device is gone: propagates, stops the run
                self.governor.fault(out.name, f"stopped answering: {exc}")
                raise
            if first:
                self.lateness.record(t0 - pulse.intended_s)
                self.send_time.record(self.clock.now() - t0)
                first = False
            if d.sent_s != d.sent_s:  # output did not stamp: use our time
                d = Delivery(d.pulse_id, d.output, d.status, t0, d.ack_s, d.device_edge_s,
                             d.reason)
            if d.status in ("nacked", "failed"):
                # a device that refuses a pulse is a fault, not a failed pulse: the governor
                # approves nothing more from this instant
                refused = f"{d.output} {d.status} it ({d.reason})"
                self.governor.fault(d.output, f"{d.status} pulse {pulse.pulse_id}: "
                                              f"{d.reason}")
            self._log(pulse, d)
        if not refused:
            self.n_sent += 1

    def _pop_due(self, t_s: float) -> Pulse | None:
        with self._cv:
            if self._heap and self._heap[0][0] <= t_s:
                return heapq.heappop(self._heap)[2]
        return None

    def advance_to(self, t_s: float) -> None:
        """Fire, in time order, every pending pulse due at or before ``t_s`` (seconds),
        jumping the (simulated) clock to each pulse's intended time first. Used by
        ``--speed max`` runs and tests; the threaded mode never calls it."""
        while True:
            p = self._pop_due(t_s)
            if p is None:
                return
            self.clock.sleep_until(p.intended_s)
            self._fire(p)

    # ----------------------------------------------------------------- thread
    def start(self) -> None:
        """Start the firing thread (real-time mode, needs a host clock)."""
        if self._thread is not None:
            return
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="engramloop-scheduler",
                                        daemon=True)
        self._thread.start()

    def stop(self, reason: str = "loop stopped") -> None:
        """Stop the thread and cancel whatever is still pending."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        self.cancel_all(reason)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        spin = self.settings.spin_s
        now = self.clock.now
        _raise_fifo_priority()
        try:
            while True:
                with self._cv:
                    while not self._stop:
                        if self._heap:
                            wait = self._heap[0][0] - spin - now()
                            if wait <= 0:
                                break
                            self._cv.wait(timeout=wait)
                        else:
                            self._cv.wait()
                    if self._stop:
                        return
                    due = self._heap[0][0]
                # spin (lock released) for the last stretch before the pulse, yielding the
                # GIL to the loop thread; for the final HOLD_S keep it, so the send does
                # not wait for the loop thread's next switch interval
                soft = due - HOLD_S
                while now() < soft:
                    time.sleep(0)
                while now() < due:
                    pass
                p = self._pop_due(now())
                if p is not None:
                    with self._fire_lock:
                        self._fire(p)
        except BaseException as exc:  # surfaced to the loop, which stops stimulating
            self.error = exc
            if not isinstance(exc, DeviceError):
                self.error = RuntimeError(f"scheduler thread failed: {exc!r}")
                self.error.__cause__ = exc


#: the scheduler thread holds the GIL (busy-waits without yielding) for this long before
#: a pulse is due, seconds: about one GIL switch interval of the loop (50 us)
HOLD_S = 60e-6


def _raise_fifo_priority() -> None:
    """If this thread inherited SCHED_FIFO from the loop thread, run one priority level
    above it, so a due pulse preempts the loop's decoding (Linux applies
    sched_setscheduler(0, ...) to the calling thread)."""
    try:
        if os.sched_getscheduler(0) == os.SCHED_FIFO:
            prio = os.sched_getparam(0).sched_priority
            top = os.sched_get_priority_max(os.SCHED_FIFO)
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(min(prio + 1, top)))
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: same priority as the loop


__all__ = ["Scheduler", "SchedulerSettings"]
