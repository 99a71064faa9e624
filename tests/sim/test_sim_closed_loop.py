"""Closed-loop effects: pulses change what SimSource generates next, depending on timing.

Pulses are triggered from the simulator's ground truth (an oracle detector), so these
tests check the simulated physiology, not any detector.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import signal

from engramloop.core.chunk import EndOfStream
from engramloop.core.clock import HostClock
from engramloop.core.pulse import PulseSpec
from engramloop.sim.settings import ArtefactSettings, HypnogramSettings, SimSettings
from engramloop.sim.source import SimSource

FS = 2000.0
ZAP = PulseSpec(modality="electrical", shape="biphasic", amplitude=1.0, phase_width_s=1e-4)
LIGHT = PulseSpec(modality="optogenetic", amplitude=10.0, phase_width_s=0.05)
CLICK = PulseSpec(modality="auditory", amplitude=50.0, phase_width_s=0.05)


def _settings(*schedule: str) -> SimSettings:
    return SimSettings(hypnogram=HypnogramSettings(schedule=tuple(schedule)))


def _run(s, seed, duration, trigger=None, chunk=10):
    """Read everything; ``trigger(src, chunk) -> list[(t, spec, target)]`` fires pulses."""
    src = SimSource(s, seed=seed, chunk_samples=chunk, duration_s=duration)
    src.start()
    xs, fired = [], []
    while True:
        try:
            c = src.read(0.0)
        except EndOfStream:
            break
        xs.append(c.samples)
        if trigger is not None:
            for t, spec, target in trigger(src, c):
                src.stimulate(t, spec, target)
                fired.append(t)
    src.stop()
    return np.concatenate(xs), src, fired


def _ripple_trigger(spec, delay=0.01, outside=False):
    done = set()

    def trig(src, c):
        now = float(c.timestamps[-1])
        out = []
        for e in src.truth.events("ripple"):
            if e.onset_s in done:
                continue
            if not outside and e.onset_s + delay <= now < e.offset_s:
                done.add(e.onset_s)
                out.append((now, spec, "ripple"))
            elif outside and now > e.offset_s + 0.15 and not any(
                    r.onset_s <= now < r.offset_s for r in src.truth.events("ripple")):
                done.add(e.onset_s)
                out.append((now, spec, "ripple"))
        return out[:1]
    return trig


def _env(x):
    sos = signal.butter(4, [150, 250], "bandpass", fs=FS, output="sos")
    return np.abs(signal.hilbert(signal.sosfiltfilt(sos, x)))


def _mean_after(env, times, a, b):
    return float(np.mean([env[int((t + a) * FS):int((t + b) * FS)].mean() for t in times]))


@pytest.fixture(scope="module")
def ripple_runs():
    # no stimulation artefact here, so the band envelope shows the ripple alone
    s = dataclasses.replace(_settings("N3:60"), artefacts=ArtefactSettings(stim_artefact_v=0.0))
    base = _run(s, 4, 20.0)
    disrupt = _run(s, 4, 20.0, _ripple_trigger(ZAP))
    prolong = _run(s, 4, 20.0, _ripple_trigger(LIGHT))
    return base, disrupt, prolong


def test_pulses_change_only_the_future(ripple_runs):
    (x0, _, _), (x1, _, p1), (x2, _, p2) = ripple_runs
    assert len(p1) > 10 and len(p2) > 10
    for x, p in ((x1, p1), (x2, p2)):
        i = int(round(p[0] * FS))        # sample of the first pulse = last delivered sample
        assert np.array_equal(x0[:i + 1], x[:i + 1])
        assert not np.array_equal(x0[i + 1:], x[i + 1:])


def test_disrupting_pulse_truncates_the_ripple_within_ms(ripple_runs):
    (x0, s0, _), (x1, s1, p1), _ = ripple_runs
    d0 = {round(e.onset_s, 6): e.duration_s for e in s0.truth.events("ripple")}
    cut = [e for e in s1.truth.events("ripple") if e.meta.get("truncated")]
    assert len(cut) == len(p1)
    for e in cut:
        assert e.duration_s < d0[round(e.onset_s, 6)]
    # ripple-band envelope 10-40 ms after the pulse (past the artefact): much lower
    e0, e1 = _env(x0[:, 0]), _env(x1[:, 0])
    assert _mean_after(e1, p1, 0.012, 0.04) < 0.6 * _mean_after(e0, p1, 0.012, 0.04)
    # exactly: the envelope ends cut_latency_s after the first undelivered sample (the
    # pulse is stamped at the last delivered one)
    lat = s1.settings.effects.cut_latency_s
    for e, t in zip(cut, p1, strict=True):
        assert e.offset_s == pytest.approx(t + 1 / FS + lat)


def test_prolonging_pulse_extends_the_ripple(ripple_runs):
    (x0, s0, _), _, (x2, s2, p2) = ripple_runs
    long = [e for e in s2.truth.events("ripple") if e.meta.get("prolonged_by_s", 0) > 0]
    assert len(long) == len(p2)
    assert np.median([e.duration_s for e in long]) > 0.1
    e0, e2 = _env(x0[:, 0]), _env(x2[:, 0])
    assert _mean_after(e2, p2, 0.05, 0.1) > 2.0 * _mean_after(e0, p2, 0.05, 0.1)


def test_mistimed_pulse_leaves_ripples_alone():
    s = _settings("N3:60")
    _, s0, _ = _run(s, 6, 10.0)
    _, s1, p1 = _run(s, 6, 10.0, _ripple_trigger(ZAP, outside=True))
    assert len(p1) > 3
    d0 = [e.duration_s for e in s0.truth.events("ripple")]
    d1 = [e.duration_s for e in s1.truth.events("ripple")]
    assert d0 == d1
    assert all(e.meta["effect"] == "none" for e in s1.truth.events("stim"))


def test_stimulation_artefact_has_configured_size():
    s = _settings("N3:60")
    x0, _, _ = _run(s, 4, 3.0)
    x1, s1, p1 = _run(s, 4, 3.0, _ripple_trigger(ZAP))
    i = int(round(p1[0] * FS))
    jump = np.abs(x1[i:i + 4, 0] - x0[i:i + 4, 0]).max()
    a = s1.settings.artefacts.stim_artefact_v
    assert 0.5 * a < jump < 1.5 * a
    assert s1.truth.events("artefact")[0].meta["type"] == "stim"


def _so_trigger(phase_deg, once=True):
    state = {"n": 0, "last": -10.0}

    def trig(src, c):
        now = float(c.timestamps[-1])
        if (once and state["n"]) or now - state["last"] < 2.5:
            return []
        ph = float(src.truth.phase("so", now))
        if np.isfinite(ph) and abs((ph - phase_deg + 180) % 360 - 180) < 8:
            state["n"] += 1
            state["last"] = now
            return [(now, CLICK, "so_upstate")]
        return []
    return trig


@pytest.mark.parametrize("phase,sign", [(-30.0, 1), (150.0, -1)])
def test_click_effect_depends_on_so_phase(phase, sign):
    """Ngo et al. 2013: up-state clicks enlarge the next SO; down-state clicks shrink it a
    little (out-of-phase clicks were ineffective there: sim.effects.click_down_gain)."""
    s = _settings("N3:100")
    x0, s0, _ = _run(s, 7, 40.0, chunk=20)
    x1, s1, p1 = _run(s, 7, 40.0, _so_trigger(phase, once=False), chunk=20)
    assert len(p1) >= 5
    stims = s1.truth.events("stim")
    eff = {e.meta["effect"] for e in stims}
    assert ("so_enhanced" if sign > 0 else "so_suppressed") in eff
    sos = signal.butter(2, [0.3, 3.0], "bandpass", fs=FS, output="sos")
    f0 = signal.sosfiltfilt(sos, x0[:, 2])
    f1 = signal.sosfiltfilt(sos, x1[:, 2])
    ratios = []
    for e in stims:
        if e.meta["effect"] not in ("so_enhanced", "so_suppressed"):
            continue
        # the next cycle: from the end of the clicked cycle, one second of signal
        cyc = [c for c in s1.truth.events("so") if c.onset_s <= e.onset_s < c.offset_s][0]
        a, b = int(cyc.offset_s * FS), int((cyc.offset_s + 1.0) * FS)
        if b > len(f0):
            continue
        ratios.append(np.ptp(f1[a:b]) / np.ptp(f0[a:b]))
    assert ratios
    if sign > 0:
        assert np.median(ratios) > 1.15
    else:
        assert 0.85 < np.median(ratios) < 0.98


def test_click_outside_nrem_or_so_does_nothing():
    s = _settings("REM:100")
    x0, _, _ = _run(s, 8, 3.0)

    def trig(src, c):
        return [(float(c.timestamps[-1]), CLICK, "so_upstate")] if c.first_index == 2000 else []
    x1, s1, p1 = _run(s, 8, 3.0, trig)
    assert len(p1) == 1
    assert np.array_equal(x0, x1)                   # a click carries no electrical artefact
    assert s1.truth.events("stim")[0].meta["effect"] == "none"


def test_theta_phase_of_pulses_sets_plasticity():
    """Huerta & Lisman 1995 / Hyman 2003: peak -> potentiation, trough -> depression."""
    s = _settings("wake:100")
    results = {}
    for target, want in (("theta_peak", 0.0), ("theta_trough", 180.0)):
        state = {"last": -1.0}

        def trig(src, c, want=want, target=target):
            now = float(c.timestamps[-1])
            ph = float(src.truth.phase("theta", now))
            if (np.isfinite(ph) and now - state["last"] > 0.5
                    and abs((ph - want + 180) % 360 - 180) < 15):
                state["last"] = now
                return [(now, ZAP, target)]
            return []
        _, src, p = _run(s, 9, 12.0, trig)
        assert len(p) > 10
        results[target] = np.mean(src.memory.labile)
    _, base, _ = _run(s, 9, 12.0)
    b = np.mean(base.memory.labile)
    assert results["theta_peak"] > b > results["theta_trough"]


def test_same_seed_same_pulses_same_output():
    s = _settings("N3:60")
    a = _run(s, 5, 6.0, _ripple_trigger(ZAP))
    b = _run(s, 5, 6.0, _ripple_trigger(ZAP))
    assert a[2] == b[2] and np.array_equal(a[0], b[0])


def test_pulses_never_reshuffle_spontaneous_events():
    """Effects draw from their own generator: a stim run keeps every sham-run spindle."""
    s = _settings("N3:100")
    _, s0, _ = _run(s, 7, 30.0, chunk=20)
    _, s1, _ = _run(s, 7, 30.0, _so_trigger(-30.0, once=False), chunk=20)
    sp0 = {round(e.peak_s, 9) for e in s0.truth.events("spindle")}
    sp1 = {round(e.peak_s, 9) for e in s1.truth.events("spindle")
           if not e.meta["induced"]}
    assert sp0 == sp1


def test_paced_run_on_the_host_clock():
    """Paced: a chunk is handed out only once its last sample time has come (ordering
    only, no timing thresholds)."""
    clock = HostClock()
    src = SimSource(_settings("N2:10"), seed=0, clock=clock, paced=True, chunk_samples=20,
                    duration_s=0.05)
    src.start()
    t0 = src.t0_s
    assert src.read(0.0) is None or clock.now() >= t0 + 19 / FS
    got = []
    while True:
        try:
            c = src.read(1.0)
        except EndOfStream:
            break
        if c is not None:
            assert c.arrival_s >= c.timestamps[-1]
            got.append(c)
    ts = np.concatenate([c.timestamps for c in got])
    np.testing.assert_allclose(np.diff(ts), 1 / FS)
    assert ts[0] == t0
