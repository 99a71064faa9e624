"""Issue 19: the limits hold at the tissue, judged from the device emulators' own logs of
the edges they played, not from what the governor approved.

The property test drives random pulse specs, trains, modalities, limits and intent timings
through the real :class:`Governor` and :class:`Scheduler` into the emulated devices'
firmware logic (``PulsePalDevice`` and ``StimBoxDevice``), on a simulated clock so it is
fast and does not depend on the machine's load. The Pulse Pal is driven by the real
``PulsePal`` driver; only pyserial's port is replaced by a line into the emulated device
at the simulated time (a pty would tie the test to the wall clock). The stim box's host
driver needs the wall clock (reader and heartbeat threads), so here its frames are built
by the real protocol encoder (``spec_to_command``, ``encode_frame``) and fed to the
emulated firmware; the real driver on a pty is covered by the wall-clock test at the end
and by tests/drivers/test_stimbox_host.py.

Every assertion reads the emulators' edges: onset times on the device clock and the
waveform the device played (volts and phase widths of Pulse Pal, click level codes and
widths of the stim box).
"""
from __future__ import annotations

import dataclasses
import math
import time
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engramloop.controller.governor import (
    Governor,
    Intent,
    SafetySettings,
    max_charge_rate_uc_s,
)
from engramloop.controller.scheduler import Scheduler, SchedulerSettings
from engramloop.core.clock import HostClock, SimClock
from engramloop.core.pulse import Delivery, PulseSpec
from engramloop.drivers.pulsepal import PulsePal
from engramloop.drivers.stimbox.host import spec_to_command
from engramloop.drivers.stimbox.protocol import MsgType, encode_frame
from engramloop.sim.emulators.pulsepal_emulator import PulsePalDevice, PulsePalEmulator
from engramloop.sim.emulators.stimbox_emulator import StimBoxDevice

RATE_HZ = 1000.0
STEP_S = 0.01          # the test loop's time step: one 10-sample chunk
CYCLE_S = 50e-6        # Pulse Pal timer cycle
FULL_SCALE_DB = 90.0   # stim box click full scale


# ------------------------------------------------------------------ device lines
class PulsePalLine:
    """Stands in for ``serial.Serial``: bytes written go to a ``PulsePalDevice`` at the
    simulated clock's time; its replies are read back; edges it plays are kept."""

    def __init__(self, device: PulsePalDevice, clock: SimClock) -> None:
        self.device, self.clock = device, clock
        self.timeout = 0.5
        self.rx = bytearray()
        self.edges: list = []

    def us(self) -> int:
        return int(round(self.clock.now() * 1e6))

    def write(self, data: bytes) -> int:
        reply, edges = self.device.step(bytes(data), self.us())
        self.rx += reply
        self.edges += edges
        return len(data)

    def read(self, n: int) -> bytes:
        out = bytes(self.rx[:n])
        del self.rx[:n]
        return out

    def reset_input_buffer(self) -> None:
        self.rx.clear()

    def poll(self) -> None:
        self.edges += self.device.tick(self.us())

    def close(self) -> None:
        pass


class PulsePalOnLine:
    """The real ``PulsePal`` driver whose port is a :class:`PulsePalLine`."""

    name = "pulsepal"

    def __init__(self, clock: SimClock, **kw) -> None:
        self.line = PulsePalLine(PulsePalDevice(), clock)
        self.pp = PulsePal("sim-line", **kw)

    def open(self) -> None:
        with mock.patch("serial.Serial", lambda *a, **k: self.line):
            self.pp.open()

    def arm(self) -> None:
        self.pp.arm()

    def disarm(self) -> None:
        self.pp.disarm()

    def send(self, pulse):
        return self.pp.send(pulse)

    def poll(self) -> None:
        self.line.poll()

    def close(self) -> None:
        self.pp.close()

    def played(self) -> list[dict]:
        """Every pulse onset the device played: host seconds and the waveform."""
        out = []
        for e in self.line.edges:
            p = e.params
            phases = [(p["phase1_v"], p["phase1_us"] * 1e-6)]
            if p["biphasic"]:
                phases.append((p["phase2_v"], p["phase2_us"] * 1e-6))
            out.append({"t": e.device_us * 1e-6, "index": p["index"], "phases": phases,
                        "dur": (p["phase1_us"] + p["interphase_us"] + p["phase2_us"]) * 1e-6})
        return out


class StimBoxOnLine:
    """Frames from the real stim-box protocol encoder into the emulated firmware at the
    simulated time, with heartbeats every 20 ms of simulated time (the host driver's
    default) so its 100 ms watchdog stays fed."""

    name = "stimbox"

    def __init__(self, clock: SimClock) -> None:
        self.clock = clock
        self.device = StimBoxDevice()
        self.edges: list = []
        self.seq = 0
        self.last_hb = -math.inf

    def us(self) -> int:
        return int(round(self.clock.now() * 1e6))

    def _frame(self, msg_type: int, payload: bytes = b"") -> int:
        self.seq = (self.seq + 1) % 256
        n = len(self.device.log.nacks)
        _, edges = self.device.step(encode_frame(self.seq, msg_type, payload), self.us())
        self.edges += edges
        return len(self.device.log.nacks) - n

    def open(self) -> None:
        self.poll()

    def arm(self) -> None:
        self._frame(MsgType.ARM)
        self.last_hb = self.clock.now()

    def disarm(self) -> None:
        self._frame(MsgType.DISARM)

    def poll(self) -> None:
        if self.clock.now() - self.last_hb >= 0.02:
            self._frame(MsgType.HEARTBEAT)
            self.last_hb = self.clock.now()
        self.edges += self.device.tick(self.us())

    def send(self, pulse):
        self.poll()
        cmd = spec_to_command(pulse.spec, click_full_scale_db_spl=FULL_SCALE_DB)
        nacked = self._frame(cmd.msg_type, cmd.pack())
        return Delivery(pulse.pulse_id, self.name, "nacked" if nacked else "acked",
                        sent_s=self.clock.now())

    def close(self) -> None:
        self.disarm()

    def played(self) -> list[dict]:
        out = []
        for e in self.edges:
            p = e.params
            level = p["amplitude"]
            if p["shape"] == "click":
                level = FULL_SCALE_DB + 20 * math.log10(p["amplitude"] / 65535)
            else:
                level = p["amplitude"] / 1000.0   # millivolts on a TTL line
            out.append({"t": e.device_us * 1e-6, "index": p["index"],
                        "phases": [(level, p["width_us"] * 1e-6)], "dur": p["width_us"] * 1e-6,
                        "shape": p["shape"]})
        return out


# ------------------------------------------------------------------ the checks
def max_in_window(times: np.ndarray, weights: np.ndarray, w: float) -> float:
    """Largest weighted sum over any window (t - w, t] of the played onsets."""
    if len(times) == 0 or w <= 0:
        return 0.0
    csum = np.concatenate(([0.0], np.cumsum(weights)))
    hi = np.searchsorted(times, times, side="right")
    lo = np.searchsorted(times, times - w, side="right")
    return float(np.max(csum[hi] - csum[lo]))


def trains_of(played: list[dict]) -> list[list[dict]]:
    out: list[list[dict]] = []
    for e in played:
        if e["index"] == 0:
            out.append([])
        out[-1].append(e)
    return out


def assert_limits_held(played: list[dict], s: SafetySettings, modality: str, tol: float,
                       opto_mw_per_v: float = 0.0, ttl_max_v: float = 5.0) -> None:
    """Every limit of ``s``, checked on what the device played; ``tol`` (s) is the spread
    of the device's edge delay after the intended time (windows shrink by it)."""
    played = sorted(played, key=lambda e: e["t"])
    t = np.array([e["t"] for e in played])
    ones = np.ones(len(t))
    assert len(t) <= s.max_pulses_per_session
    for w, n in zip(s.rate_window_s, s.rate_max_pulses, strict=True):
        assert max_in_window(t, ones, w - tol) <= n, f"> {n} pulses within {w} s"
    trains = trains_of(played)
    for a, b in zip(trains, trains[1:], strict=False):
        gap = b[0]["t"] - a[-1]["t"]
        assert gap >= s.refractory_s - tol, f"trains {gap * 1e3:.2f} ms apart"
        assert b[0]["t"] >= a[-1]["t"] + a[-1]["dur"] - tol, "trains overlap"
    rtol = 1e-3  # Pulse Pal's 16-bit DAC rounds volts by up to 10 V / 65535
    if modality == "electrical":
        q = []
        for e in played:
            (v1, w1), *rest = e["phases"]
            assert len(rest) == 1 and rest[0][0] == pytest.approx(-v1, abs=1e-3), \
                "electrical pulse not charge-balanced biphasic"
            phase_q = [abs(v) * s.current_per_volt_ma * w * 1000.0 for v, w in e["phases"]]
            for pq in phase_q:
                d = pq / s.electrode_area_cm2
                assert pq <= s.max_charge_per_phase_uc * (1 + rtol)
                assert d <= s.max_charge_density_uc_cm2 * (1 + rtol)
                assert math.log10(pq) + math.log10(d) <= s.shannon_k_max + 1e-3
            q.append(sum(phase_q))
        assert max_in_window(t, np.array(q), 1.0 - tol) <= s.max_charge_per_s_uc * (1 + rtol)
    if modality == "optogenetic":
        mj = []
        for e in played:
            assert len(e["phases"]) == 1, "light pulses are monophasic"
            v, w = e["phases"][0]
            mw = v * opto_mw_per_v
            assert 0 < mw <= s.opto_max_power_mw * (1 + rtol)
            mj.append(mw * w)
        mean = max_in_window(t, np.array(mj), s.opto_window_s - tol) / s.opto_window_s
        assert mean <= s.opto_max_mean_power_mw * (1 + rtol)
    if modality == "auditory":
        for e in played:
            assert e["phases"][0][0] <= s.auditory_max_db_spl + 0.01
    if modality == "ttl":
        for e in played:
            assert len(e["phases"]) == 1 and 0 < e["phases"][0][0] <= ttl_max_v + 1e-3


# ------------------------------------------------------------------ strategies
@st.composite
def scenario(draw):
    device = draw(st.sampled_from(["pulsepal", "stimbox"]))
    modality = draw(st.sampled_from(["electrical", "optogenetic", "ttl"] if device == "pulsepal"
                                    else ["ttl", "auditory"]))
    count = draw(st.one_of(st.just(1), st.integers(1, 5), st.integers(1, 40)))
    opto_mw_per_v = draw(st.floats(1.0, 10.0))
    if device == "pulsepal":
        width = draw(st.one_of(st.integers(1, 4), st.integers(1, 200))) * CYCLE_S  # cycles
        ipi = draw(st.integers(0, 4)) * CYCLE_S if modality == "electrical" else 0.0
        one = 2 * width + ipi if modality == "electrical" else width
        interval = (round(one / CYCLE_S) + draw(st.integers(1, 400))) * CYCLE_S
    else:
        width = draw(st.integers(10, 20_000)) * 1e-6
        interval = max(1000e-6, width + 10e-6) + draw(st.integers(0, 50_000)) * 1e-6
        count = min(count, 1 + int(2.0 / interval))                 # 2 s train span
    amplitude = {"electrical": draw(st.one_of(st.floats(0.05, 1.0), st.floats(0.05, 10.0))),
                 "optogenetic": draw(st.one_of(st.floats(0.1, 1.0), st.floats(0.1, 10.0)))
                 * opto_mw_per_v,
                 "ttl": draw(st.floats(0.5, 5.0)),
                 "auditory": draw(st.floats(30.0, 90.0))}[modality]
    spec = PulseSpec(modality=modality,
                     shape="biphasic" if modality == "electrical" else "monophasic",
                     amplitude=amplitude, phase_width_s=width,
                     interphase_s=ipi if device == "pulsepal" else 0.0,
                     train_count=count, train_interval_s=interval if count > 1 else 0.0,
                     channel=draw(st.integers(1, 4)))
    area = draw(st.floats(0.001, 0.1))
    windows = [(draw(st.floats(1.0, 5.0)), draw(st.integers(1, 80)))]
    windows += draw(st.lists(st.tuples(st.floats(0.1, 10.0), st.integers(1, 200)), max_size=2))
    safety = SafetySettings(
        refractory_s=draw(st.floats(0.05, 0.5)),
        rate_window_s=tuple(w for w, _ in windows),
        rate_max_pulses=tuple(n for _, n in windows),
        max_pulses_per_session=draw(st.integers(0, 400)),
        current_per_volt_ma=draw(st.floats(0.05, 1.0)),
        electrode_area_cm2=area,
        max_charge_per_phase_uc=draw(st.floats(0.05, 2.0)),
        max_charge_per_s_uc=draw(st.floats(0.1, 1.0)) * max_charge_rate_uc_s(area),
        opto_max_power_mw=draw(st.floats(5.0, 100.0)),
        opto_max_mean_power_mw=draw(st.floats(0.05, 5.0)),
        opto_window_s=draw(st.floats(1.0, 10.0)),
        auditory_max_db_spl=draw(st.floats(40.0, 90.0)),
        auditory_lockout_s=draw(st.floats(0.0, 3.0)),
        auditory_max_train_clicks=draw(st.integers(1, 5)))
    # intents: (time to the next one, lead of the intended time, ends an auditory train)
    intents = draw(st.lists(st.tuples(st.floats(0.0, 0.6), st.floats(0.0, 0.05),
                                      st.booleans()), min_size=1, max_size=40))
    return device, spec, safety, intents, opto_mw_per_v


# ------------------------------------------------------------------ the property
@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario())
def test_every_limit_holds_on_the_emulators_edge_logs(sc):
    device, spec, safety, intents, opto_mw_per_v = sc
    clock = SimClock(10.0)
    out = (PulsePalOnLine(clock, ttl_max_v=5.0, opto_mw_per_v=opto_mw_per_v)
           if device == "pulsepal" else StimBoxOnLine(clock))
    g = Governor(safety)
    sched = Scheduler(SchedulerSettings(budget_s=0.002), g, [out], clock)
    out.open()
    out.arm()
    g.arm()
    g.set_calibrated(True)
    last = clock.now()
    g.observe_chunk(last - 1.0 + 1 / RATE_HZ, last, int(RATE_HZ), RATE_HZ)

    def step_to(t_end: float) -> None:
        nonlocal last
        while clock.now() < t_end - 1e-12:
            t = min(clock.now() + STEP_S, t_end)
            sched.advance_to(t)
            clock.sleep_until(t)
            n = max(1, int(round((t - last) * RATE_HZ)))
            g.observe_chunk(last + 1 / RATE_HZ, last + n / RATE_HZ, n, RATE_HZ)
            last = last + n / RATE_HZ
            out.poll()

    approved = []
    for dt, lead, ends in intents:
        step_to(clock.now() + dt)
        now = clock.now()
        d = g.review(Intent("ripple", spec, now, now + lead, now + lead + 0.002,
                            ends_train=ends), now)
        if d.approved:
            approved.append(d.pulse)
            sched.submit(d.pulse)
    step_to(clock.now() + spec.duration_s + 0.1)
    deliveries = [dl for _, dl in sched.drain()]
    out.close()
    played = out.played()
    event(f"{device} {spec.modality}: {'pulses played' if played else 'nothing played'}")
    event(f"refused by {sorted(r for r, n in g.refusals.items() if n)}")
    accepted = {dl.pulse_id for dl in deliveries if dl.status == "acked"}
    # edge delay after the intended time: 1 timer cycle on Pulse Pal, 0 on the stim box
    firsts = [tr[0]["t"] for tr in trains_of(sorted(played, key=lambda e: e["t"]))]
    sent = sorted(p.intended_s for p in approved if p.pulse_id in accepted)
    delays = np.array(firsts) - np.array(sent)
    assert len(firsts) == len(sent) and (len(delays) == 0 or delays.min() >= -1e-6)
    tol = float(np.ptp(delays)) + 2e-6 if len(delays) else 0.0
    assert_limits_held(played, safety, spec.modality, tol, opto_mw_per_v=opto_mw_per_v)
    # the device played exactly what the governor counted for the pulses it accepted
    assert sum(p.spec.n_pulses for p in approved if p.pulse_id in accepted) == len(played)
    assert g.n_pulses >= len(played)
    if device == "pulsepal":
        assert all(dl.status == "acked" for dl in deliveries), deliveries


def test_trains_are_counted_pulse_by_pulse_on_the_device():
    """Issue 19 point 1, on the simulated clock: trains of 1000 biphasic pulses at 1 kHz
    against 3 pulses/s. The old governor approved each train as one pulse (15 trains ->
    15 000 pulses); now no such train is approved, and 3-pulse trains fit one per second."""
    clock = SimClock(10.0)
    out = PulsePalOnLine(clock)
    s = SafetySettings(max_charge_per_s_uc=10.0)
    g = Governor(s)
    sched = Scheduler(SchedulerSettings(), g, [out], clock)
    out.open()
    out.arm()
    g.arm()
    g.set_calibrated(True)
    big = PulseSpec(modality="electrical", shape="biphasic", amplitude=1.0,
                    phase_width_s=100e-6, train_count=1000, train_interval_s=0.001)
    small = dataclasses.replace(big, train_count=3, train_interval_s=0.01)
    rules = []
    for k in range(30):
        now = clock.now()
        g.observe_chunk(now - 0.25 + 1 / RATE_HZ, now, 250, RATE_HZ)
        d = g.review(Intent("ripple", big if k < 15 else small, now, now, now + 0.002), now)
        rules.append(d.rule)
        if d.approved:
            sched.submit(d.pulse)
        sched.advance_to(now + 0.25)
        clock.sleep_until(now + 0.25)
        out.poll()
    out.close()
    assert rules[:15] == ["rate"] * 15
    played = out.played()
    assert len(played) == 3 * rules.count("approved") and 0 < len(played) <= 12
    assert_limits_held(played, s, "electrical", tol=2e-6)


# ------------------------------------------------------------------ wall clock, real pty
def test_trains_through_the_real_driver_and_emulator_on_a_pty():
    """The same in real time: the threaded scheduler, the real PulsePal driver on a pty,
    the emulator's thread. Asserts on the emulator's own edge list (host seconds); windows
    shrink by the spread of send delays the machine's load produced."""
    clock = HostClock()
    s = SafetySettings()           # 3/s and 60/min, refractory 0.2 s
    g = Governor(s)
    spec = PulseSpec(modality="electrical", shape="biphasic", amplitude=1.0,
                     phase_width_s=100e-6, train_count=3, train_interval_s=0.01)
    with PulsePalEmulator() as emu:
        pp = PulsePal(emu.port)
        pp.open()
        sched = Scheduler(SchedulerSettings(budget_s=0.3), g, [pp], clock)
        try:
            pp.arm()
            g.arm()
            g.set_calibrated(True)
            sched.start()
            approved = []
            t0 = last = clock.now()
            g.observe_chunk(last - 0.25 + 1 / RATE_HZ, last, 250, RATE_HZ)
            for k in range(12):       # an intent every 0.25 s for 3 s
                target = t0 + 0.25 * k
                while clock.now() < target:
                    time.sleep(0.002)
                # samples up to now, contiguous with the last chunk (however late this
                # iteration woke up, no gap is seen)
                n = max(1, int((clock.now() - last) * RATE_HZ))
                g.observe_chunk(last + 1 / RATE_HZ, last + n / RATE_HZ, n, RATE_HZ)
                last += n / RATE_HZ
                now = clock.now()
                # a generous deadline: a loaded machine may send late, never early
                d = g.review(Intent("ripple", spec, now, now + 0.01, now + 0.3), now)
                if d.approved:
                    approved.append(d.pulse)
                    sched.submit(d.pulse)
            end = clock.now() + 0.5
            while clock.now() < end:
                time.sleep(0.01)
            assert sched.error is None
        finally:
            sched.stop()
            pp.close()
        deliveries = [dl for _, dl in sched.drain()]
    acked = [dl.pulse_id for dl in deliveries if dl.status == "acked"]
    played = [{"t": t, "index": e.params["index"],
               "phases": [(e.params["phase1_v"], e.params["phase1_us"] * 1e-6),
                          (e.params["phase2_v"], e.params["phase2_us"] * 1e-6)],
               "dur": (e.params["phase1_us"] + e.params["phase2_us"]) * 1e-6}
              for t, e in emu.edges]
    assert len(played) == 3 * len(acked) and 3 <= len(played) <= 12
    firsts = [tr[0]["t"] for tr in trains_of(played)]
    by_id = {p.pulse_id: p.intended_s for p in approved}
    delays = np.array(firsts) - np.array([by_id[i] for i in sorted(acked)])
    assert delays.min() > 0
    assert_limits_held(played, s, "electrical", tol=float(np.ptp(delays)) + 1e-4)
