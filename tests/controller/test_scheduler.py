"""Pulse scheduler (simulated clock and real thread) and the latency histogram."""
from __future__ import annotations

import dataclasses
import math
import threading

import numpy as np
import pytest

from engramloop.controller.governor import Governor, Intent, SafetyError, SafetySettings
from engramloop.controller.latency import Histogram, StageTimes
from engramloop.controller.scheduler import Scheduler, SchedulerSettings
from engramloop.core.clock import HostClock, SimClock
from engramloop.core.pulse import Delivery, DeviceError, PulseSpec


class RecordingOutput:
    """Stands in for a stimulator in these unit tests (the real drivers are tested by the
    hardware issue); it records what it was asked to send and when, and can fail."""

    name = "rec"

    def __init__(self, clock, fail_on: int = -1) -> None:
        self.clock, self.fail_on = clock, fail_on
        self.sent: list[tuple[int, float]] = []
        self.done = threading.Event()

    def open(self) -> None: ...
    def arm(self) -> None: ...
    def disarm(self) -> None: ...
    def close(self) -> None: ...

    def send(self, pulse):
        if pulse.pulse_id == self.fail_on:
            raise DeviceError("rec: port /dev/null vanished")
        t = self.clock.now()
        self.sent.append((pulse.pulse_id, t))
        self.done.set()
        return Delivery(pulse.pulse_id, self.name, "sent", sent_s=t)


def governor(now: float, refractory_s: float = 0.05) -> Governor:
    # the floors (at least one rate window, refractory >= 0.05 s) hold here too
    g = Governor(SafetySettings(refractory_s=refractory_s, rate_window_s=(1.0,),
                                rate_max_pulses=(100,)))
    g.arm()
    g.set_calibrated(True)
    g.observe_chunk(now - 1.0, now, 2000, 2000.0)
    return g


def approve(g: Governor, now: float, t: float, budget: float = 0.002, cond: str = "stim"):
    d = g.review(Intent("ripple", PulseSpec(), now, t, t + budget, condition=cond), now)
    assert d.approved, d
    return d.pulse


def test_sim_clock_fires_in_time_order_and_cancels_late():
    clock = SimClock(10.0)
    g = governor(10.0)
    out = RecordingOutput(clock)
    s = Scheduler(SchedulerSettings(), g, [out], clock)
    pulses = [approve(g, 10.0, t) for t in (10.1, 10.2, 10.3)]
    for p in reversed(pulses):
        s.submit(p)
    s.advance_to(10.25)
    assert out.sent == [(1, 10.1), (2, 10.2)]
    assert s.pending == 1 and s.next_due_s() == pytest.approx(10.3)
    clock.advance(0.2)  # the loop stalled past the third pulse's deadline
    s.advance_to(clock.now())
    log = s.drain()
    assert [d.status for _, d in log] == ["sent", "sent", "cancelled"]
    assert "late" in log[2][1].reason and len(out.sent) == 2
    assert s.lateness.count == 2 and s.lateness.max_s == 0.0
    assert s.n_sent == 2 and s.n_cancelled == 1


def test_only_governor_pulses_accepted():
    clock = SimClock(1.0)
    g = governor(1.0)
    s = Scheduler(SchedulerSettings(), g, [RecordingOutput(clock)], clock)
    p = approve(g, 1.0, 1.01)
    with pytest.raises(SafetyError, match="not approved by the governor"):
        s.submit(dataclasses.replace(p, pulse_id=99))
    with pytest.raises(SafetyError):
        s.submit(dataclasses.replace(p))  # an equal forgery is still refused
    s.submit(p)
    s.advance_to(2.0)
    with pytest.raises(SafetyError):  # a sent pulse cannot be re-submitted
        s.submit(p)


def test_disarm_cancels_and_sham_sends_nothing():
    clock = SimClock(1.0)
    g = governor(1.0)
    out = RecordingOutput(clock)
    s = Scheduler(SchedulerSettings(), g, [out], clock)
    s.submit(approve(g, 1.0, 1.05, cond="sham"))
    s.submit(approve(g, 1.0, 1.10))
    s.advance_to(1.06)
    g.disarm()
    s.advance_to(1.2)
    log = s.drain()
    assert [(d.output, d.status) for _, d in log] == [("sham", "sham"),
                                                      ("scheduler", "cancelled")]
    assert "disarmed" in log[1][1].reason and out.sent == []


def test_queue_bound_and_cancel_all():
    clock = SimClock(1.0)
    g = governor(1.0)
    s = Scheduler(SchedulerSettings(max_pending=2), g, [RecordingOutput(clock)], clock)
    for k in range(3):
        s.submit(approve(g, 1.0, 1.01 + 0.06 * k))
    assert s.pending == 2
    s.cancel_all("shutdown")
    assert [d.reason for _, d in s.drain()] == ["queue full (scheduler.max_pending)",
                                                "shutdown", "shutdown"]


def test_thread_fires_never_early_and_in_order():
    clock = HostClock()
    now = clock.now()
    g = governor(now + 0.5)  # data "fresh" for the test's duration
    out = RecordingOutput(clock)
    s = Scheduler(SchedulerSettings(budget_s=1.0), g, [out], clock)
    s.start()
    try:
        ps = [approve(g, now, now + 0.02 + 0.06 * k, budget=1.0) for k in range(4)]
        for p in (ps[2], ps[0], ps[3], ps[1]):
            s.submit(p)
        got = []
        while len(got) < 4:
            out.done.wait(5.0)
            out.done.clear()
            got = list(out.sent)
            assert s.error is None
    finally:
        s.stop()
    assert [i for i, _ in got] == [1, 2, 3, 4]
    for (_, t), p in zip(got, ps, strict=True):
        assert t >= p.intended_s  # never early
    log = s.drain()
    assert all(d.status == "sent" and d.sent_s >= p.intended_s for p, d in log)
    assert s.lateness.count == 4 and s.lateness.min_s >= 0


def test_thread_cancels_past_deadline_and_surfaces_device_errors():
    clock = HostClock()
    now = clock.now()
    g = governor(now + 0.5)
    out = RecordingOutput(clock, fail_on=2)
    s = Scheduler(SchedulerSettings(), g, [out], clock)
    s.start()
    try:
        late = approve(g, now - 0.6, now - 0.5, budget=0.001)  # deadline passed long ago...
        s.submit(late)  # ...the governor checks at review time; the scheduler at send time
        bad = approve(g, now, clock.now() + 0.001, budget=1.0)
        s.submit(bad)
        s._thread.join(5.0)
    finally:
        s.stop()
    assert isinstance(s.error, DeviceError) and "/dev/null" in str(s.error)
    statuses = [d.status for _, d in s.drain()]
    assert statuses[0] == "cancelled"
    # the device that stopped answering is a fault: the governor approves nothing more
    assert "/dev/null" in g.faults["rec"] and not g.review(
        Intent("ripple", PulseSpec(), now, now + 2.0, now + 3.0), now).approved
    g.clear_fault("rec")
    with pytest.raises(RuntimeError, match="scheduler stopped after an error"):
        s.submit(approve(g, now, now + 2.0, budget=1.0))


def test_histogram_percentiles_match_numpy():
    rng = np.random.default_rng(3)
    x = rng.lognormal(mean=math.log(50e-6), sigma=0.8, size=20000)
    h = Histogram()
    for v in x:
        h.record(float(v))
    for q in (50, 99, 99.9):
        assert h.percentile(q) == pytest.approx(np.percentile(x, q, method="inverted_cdf"),
                                                rel=0.006)
    assert h.max_s == x.max() and h.min_s == x.min() and h.count == x.size
    h2 = Histogram()
    h2.record(-1e-9)  # clamped to the first bin, still counted
    h2.record(1e3)  # beyond the last bin
    assert h2.count == 2 and h2.percentile(100) == 1e3 and h2.percentile(1) == -1e-9
    h.merge(h2)
    assert h.count == x.size + 2 and h.max_s == 1e3
    t = StageTimes(("a", "b"))
    t["a"].record(1e-5)
    assert "a" in t.table() and t.summary()["b"]["count"] == 0
    assert math.isnan(Histogram().percentile(50))
