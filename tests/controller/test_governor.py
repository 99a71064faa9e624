"""Safety governor: every refusal path, config validation, and a property test that no
sequence of intents ever yields approved pulses that break refractory / rate / cap."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engramloop.controller.config import loads_config
from engramloop.controller.governor import (
    RULES,
    SHANNON_K_LIMIT,
    Governor,
    Intent,
    PulseLog,
    SafetySettings,
    electrical_dose,
)
from engramloop.core.pulse import PulseSpec
from engramloop.core.schema import ConfigError, build

RATE = 2000.0
TTL = PulseSpec()
ELEC = PulseSpec(modality="electrical", shape="biphasic", amplitude=1.0,
                 phase_width_s=100e-6, interphase_s=50e-6)
CLICK = PulseSpec(modality="auditory", shape="monophasic", amplitude=50.0,
                  phase_width_s=0.05)
LIGHT = PulseSpec(modality="optogenetic", amplitude=10.0, phase_width_s=0.01)


def ready(**kw) -> Governor:
    """An armed, calibrated governor that has just seen a chunk ending at t = 1.0 s."""
    g = Governor(SafetySettings(**kw))
    g.arm()
    g.set_calibrated(True)
    g.observe_chunk(0.0, 1.0, 2001, RATE)
    return g


def intent(t: float, spec: PulseSpec = TTL, **kw) -> Intent:
    return Intent(target="ripple", spec=spec, detect_s=t, intended_s=t,
                  deadline_s=kw.pop("deadline_s", t + 0.01), **kw)


def feed(g: Governor, t: float) -> None:
    """Keep data fresh up to time t: a chunk continuing the previous one without a gap
    (its nominal interval is 10 samples, which sets the staleness limit)."""
    last = getattr(g, "_test_last_s", 1.0)
    # every sample up to t arrives (a gap is samples missing by count, not a time step):
    # the bulk first, then a last chunk of 10 samples ending at t
    n = int(round((t - last) * RATE))
    if n > 10:
        g.observe_chunk(last + 1 / RATE, t - 10 / RATE, n - 10, RATE)
        last = t - 10 / RATE
        n = 10
    g.observe_chunk(last + 1 / RATE, t, max(n, 1), RATE)
    g._test_last_s = t


def test_starts_disarmed_and_every_rule_listed():
    g = Governor(SafetySettings())
    g.set_calibrated(True)
    g.observe_chunk(0.0, 1.0, 2001, RATE)
    d = g.review(intent(1.0), 1.0)
    assert not d.approved and d.rule == "disarmed" and d.pulse is None
    assert set(g.refusals) == set(RULES) and g.refusals["disarmed"] == 1
    g.arm()
    assert g.review(intent(1.0), 1.0).approved
    g.disarm()
    assert g.review(intent(2.0), 1.0).rule == "disarmed"


def test_calibration():
    g = Governor(SafetySettings(calibration_s=5.0))
    g.arm()
    g.observe_chunk(0.0, 1.0, 2001, RATE)
    assert g.review(intent(1.0), 1.0).rule == "calibrating"
    g.set_calibrated(True)
    assert g.review(intent(1.0), 1.0).rule == "calibrating"  # only ~1 s of data seen
    for k in range(1, 5):
        g.observe_chunk(k + 1 / RATE, k + 1.0, 2000, RATE)
    assert g.review(intent(5.0), 5.0).approved


def test_stale_data():
    g = ready()
    feed(g, 2.0)  # chunk interval is now 10 samples = 5 ms; stale after 10 ms
    assert g.review(intent(2.0105), 2.0105).rule == "stale_data"
    assert g.review(intent(2.009), 2.009).approved
    assert Governor(SafetySettings()).review(intent(0.0), 0.0).rule == "disarmed"
    g2 = Governor(SafetySettings())
    g2.arm()
    g2.set_calibrated(True)
    assert g2.review(intent(0.0), 0.0).rule == "stale_data"  # no data at all yet


def test_gap_blocks_one_refractory_period():
    g = ready(refractory_s=0.2)
    t = 1.0
    for _ in range(30):  # a jitter-free source for a while: its losses are known at once
        assert not g.observe_chunk(t + 1 / RATE, t + 10 / RATE, 10, RATE)
        t += 10 / RATE
    # three samples missing: timestamp step of 4 periods
    assert g.observe_chunk(t + 4 / RATE, t + 13 / RATE, 10, RATE)
    t = t + 13 / RATE
    g._test_last_s = t
    assert g.review(intent(t), t).rule == "gap"
    feed(g, t + 0.19)
    assert g.review(intent(t + 0.19), t + 0.19).rule == "gap"
    feed(g, t + 0.201)
    assert g.review(intent(t + 0.201), t + 0.201).approved
    # the source flagging a gap (packet counter jump) blocks the same way
    g.observe_chunk(t + 0.202, t + 0.207, 10, RATE, gap_before=True)
    assert g.review(intent(t + 0.5, deadline_s=t + 0.6), t + 0.207).rule == "gap"


def test_deadline():
    g = ready()
    assert g.review(intent(0.99, deadline_s=0.995), 1.0).rule == "deadline"
    assert g.review(intent(1.0, deadline_s=0.999), 1.0).rule == "deadline"


def test_modality_and_waveform():
    g = ready(modalities=("ttl",))
    assert g.review(intent(1.0, ELEC), 1.0).rule == "modality"
    g = ready()
    mono = dataclasses.replace(ELEC, shape="monophasic")
    assert g.review(intent(1.0, mono), 1.0).rule == "waveform"
    assert g.review(intent(1.0, ELEC), 1.0).approved


def test_electrical_dose_rules_against_hand_computation():
    s = SafetySettings(current_per_volt_ma=1.0, electrode_area_cm2=0.01)
    q, d, k = electrical_dose(ELEC, s)
    # 1 V -> 1 mA; 1 mA x 100 us = 0.1 uC; / 0.01 cm^2 = 10 uC/cm^2; k = -1 + 1 = 0
    assert q == pytest.approx(0.1) and d == pytest.approx(10.0) and k == pytest.approx(0.0)
    big = dataclasses.replace(ELEC, amplitude=20.0)  # 2 uC/phase
    assert ready().review(intent(1.0, big), 1.0).rule == "charge"
    dense = dataclasses.replace(ELEC, amplitude=5.0)  # 0.5 uC, 50 uC/cm^2
    assert ready().review(intent(1.0, dense), 1.0).rule == "charge_density"
    # 0.25 uC at 0.01 cm^2 -> D = 25, k = log10(0.25) + log10(25) = 0.796
    mid = dataclasses.replace(ELEC, amplitude=2.5)
    assert ready(shannon_k_max=0.75).review(intent(1.0, mid), 1.0).rule == "shannon"
    assert ready(shannon_k_max=0.8).review(intent(1.0, mid), 1.0).approved


def test_optogenetic_power_caps():
    g = ready(opto_max_power_mw=5.0)
    assert g.review(intent(1.0, LIGHT), 1.0).rule == "opto_power"
    # 10 mW x 10 ms = 0.1 mJ per pulse; cap 0.035 mW over 10 s = 0.35 mJ -> 3 pulses fit
    g = ready(opto_max_mean_power_mw=0.035, opto_window_s=10.0, refractory_s=0.2,
              rate_window_s=(1.0,), rate_max_pulses=(100,))
    ok = []
    for i in range(5):
        t = 1.0 + 0.5 * i
        feed(g, t)
        ok.append(g.review(intent(t, LIGHT), t).rule)
    assert ok == ["approved"] * 3 + ["opto_power"] * 2
    t = 11.6  # first pulse (t = 1.0) has left the window
    feed(g, t)
    assert g.review(intent(t, LIGHT), t).approved


def test_auditory_level_and_lockout_after_train():
    g = ready(auditory_max_db_spl=40.0)
    assert g.review(intent(1.0, CLICK), 1.0).rule == "auditory_level"
    g = ready(auditory_lockout_s=2.5, refractory_s=0.2)
    assert g.review(intent(1.0, CLICK, ends_train=False), 1.0).approved
    assert g.review(intent(2.075, CLICK, deadline_s=2.08), 1.0).approved  # 2nd click
    # train ended at 2.075 + 0.05: no click until 4.625
    assert g.review(intent(4.6, CLICK, deadline_s=4.61), 1.0).rule == "auditory_lockout"
    assert g.review(intent(4.6), 1.0).approved  # other modalities are not locked out
    assert g.review(intent(4.9, CLICK, deadline_s=4.91), 1.0).approved


def test_auditory_lockout_even_if_policy_never_ends_a_train():
    g = ready(auditory_lockout_s=2.5, auditory_max_train_clicks=2)
    assert g.review(intent(1.0, CLICK, ends_train=False), 1.0).approved
    assert g.review(intent(2.0, CLICK, ends_train=False, deadline_s=2.1), 1.0).approved
    d = g.review(intent(3.0, CLICK, ends_train=False, deadline_s=3.1), 1.0)
    assert d.rule == "auditory_lockout"


def test_refractory_rate_and_session_cap():
    g = ready(refractory_s=0.1, rate_window_s=(1.0,), rate_max_pulses=(3,),
              max_pulses_per_session=5)
    rules = [g.review(intent(t, deadline_s=t + 1), 1.0).rule
             for t in (1.0, 1.05, 1.11, 1.22, 1.33, 2.05, 2.16, 3.5, 2.2)]
    assert rules == ["approved", "refractory", "approved", "approved", "rate", "approved",
                     "approved", "session_cap", "refractory"]
    assert g.n_approved == 5 and g.refusals["rate"] == 1 and g.refusals["refractory"] == 2


def test_issued_identifies_only_governor_pulses():
    g = ready()
    d = g.review(intent(1.0), 1.0)
    assert g.issued(d.pulse)
    assert not g.issued(dataclasses.replace(d.pulse))  # an equal copy is not approved
    g.forget(d.pulse.pulse_id)
    assert not g.issued(d.pulse)
    rec = d.to_dict()
    assert rec["approved"] and rec["pulse_id"] == d.pulse.pulse_id and rec["rule"] == "approved"


def test_config_validation():
    cfg = loads_config("[safety]\nrefractory_s = 0.5\n")
    assert cfg.safety.refractory_s == 0.5
    with pytest.raises(ConfigError, match=r"safety\.shannon_k_max: must be <= 1\.85"):
        loads_config("[safety]\nshannon_k_max = 2.0\n")
    assert SHANNON_K_LIMIT == 1.85
    with pytest.raises(ConfigError, match=r"safety\.rate_max_pulses: has 1 entries"):
        loads_config("[safety]\nrate_window_s = [1.0, 60.0]\nrate_max_pulses = [3]\n")
    with pytest.raises(ConfigError, match=r"safety\.modalities: unknown modality 'laser'"):
        loads_config('[safety]\nmodalities = ["laser"]\n')
    with pytest.raises(ConfigError, match=r"opto_max_mean_power_mw"):
        build(SafetySettings, {"opto_max_power_mw": 1.0, "opto_max_mean_power_mw": 2.0})
    with pytest.raises(ConfigError, match=r"safety\.refractory_s: must be >= 0\.05"):
        loads_config("[safety]\nrefractory_s = -1\n")


# ---------------------------------------------------------------- property test
SPECS = (TTL, ELEC, CLICK, LIGHT, dataclasses.replace(ELEC, amplitude=50.0),
         dataclasses.replace(TTL, train_count=4, train_interval_s=0.1),
         dataclasses.replace(ELEC, train_count=20, train_interval_s=0.01),
         dataclasses.replace(LIGHT, train_count=3, train_interval_s=0.05))
step = st.tuples(
    st.floats(min_value=0.0, max_value=0.4),           # time advance of the clock
    st.floats(min_value=-0.3, max_value=1.5),           # intended_s relative to now
    st.floats(min_value=0.0, max_value=0.05),           # deadline after intended
    st.integers(min_value=0, max_value=len(SPECS) - 1),
    st.booleans(),                                       # ends_train
    st.integers(min_value=0, max_value=20),              # 0 -> a gap before the chunk
)
limits = st.tuples(st.floats(min_value=0.05, max_value=0.5),
                   st.lists(st.tuples(st.floats(min_value=0.1, max_value=5.0),
                                      st.integers(min_value=1, max_value=30)),
                            min_size=0, max_size=2),
                   st.integers(min_value=0, max_value=100),
                   st.tuples(st.floats(min_value=1.0, max_value=5.0),   # the >= 1 s window
                             st.integers(min_value=1, max_value=40)))


@settings(max_examples=300, deadline=None, derandomize=True)
@given(limits, st.lists(step, min_size=1, max_size=120))
def test_no_intent_sequence_breaks_refractory_rate_or_cap(lim, steps):
    refractory, windows, cap, floor_window = lim
    windows = [floor_window, *windows]
    s = SafetySettings(refractory_s=refractory,
                       rate_window_s=tuple(w for w, _ in windows),
                       rate_max_pulses=tuple(n for _, n in windows),
                       max_pulses_per_session=cap,
                       opto_max_mean_power_mw=0.2, opto_window_s=2.0)
    g = Governor(s)
    g.arm()
    g.set_calibrated(True)
    now = 1.0
    g.observe_chunk(0.0, now, 2001, RATE)
    approved = []
    for dt, rel, dl, k, ends, gap in steps:
        now += dt
        first = now - 9 / RATE
        if gap == 0:
            first -= 0.01
        g.observe_chunk(first, now, 10, RATE)
        it = Intent("ripple", SPECS[k], now, now + rel, now + rel + dl, ends_train=ends)
        d = g.review(it, now)
        if d.approved:
            approved.append(d.pulse)
            assert d.pulse.intended_s >= now - 1e-12 or d.pulse.deadline_s >= now
    # every pulse of every train, as the device plays it (hand-expanded here)
    pulses = [(p.intended_s + k * p.spec.train_interval_s, p)
              for p in approved for k in range(p.spec.train_count)]
    times = [t for t, _ in pulses]
    assert len(times) <= cap
    for a, b in zip(approved, approved[1:], strict=False):  # trains never overlap
        last = a.intended_s + (a.spec.train_count - 1) * a.spec.train_interval_s
        assert b.intended_s - last >= refractory - 1e-9
        assert b.intended_s >= a.intended_s + a.spec.duration_s - 1e-9
    for w, n in windows:
        for t in times:  # any window (t - w, t] holds at most n pulses
            assert sum(1 for u in times if t - w < u <= t) <= n
    # optogenetic mean power never exceeds the cap in any window ending at a pulse
    opto = [(t, p.spec.amplitude * p.spec.phase_width_s) for t, p in pulses
            if p.spec.modality == "optogenetic"]
    for t, _ in opto:
        assert sum(e for u, e in opto if t - 2.0 < u <= t) / 2.0 <= 0.2 + 1e-9
    # charge per second (|Q| of both phases) never above the cap in any 1 s window
    elec = [(t, 2 * electrical_dose(p.spec, s)[0]) for t, p in pulses
            if p.spec.modality == "electrical"]
    for t, _ in elec:
        assert sum(q for u, q in elec if t - 1.0 < u <= t) <= s.max_charge_per_s_uc + 1e-9
    # no electrical pulse above the dose caps, no monophasic electrical pulse
    for p in approved:
        if p.spec.modality == "electrical":
            q, dens, k = electrical_dose(p.spec, s)
            assert p.spec.shape == "biphasic" and q <= s.max_charge_per_phase_uc
            assert dens <= s.max_charge_density_uc_cm2 and k <= s.shannon_k_max
    assert not math.isnan(sum(times)) if times else True


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(st.tuples(st.floats(0.0, 0.5), st.integers(1, 30), st.floats(0.001, 0.05),
                          st.floats(0.0, 2.0)), min_size=1, max_size=60),
       st.floats(0.05, 3.0), st.floats(0.5, 5.0))
def test_pulse_log_windows_match_brute_force(trains, w, horizon):
    """PulseLog (preallocated, pruned, compacted) against summing every pulse by hand."""
    log, every, t = PulseLog(capacity=4), [], 0.0
    for gap, count, interval, q in trains:
        t += gap + 1e-3
        new = t + np.arange(count) * interval
        if w <= horizon:  # the log keeps the horizon, so windows up to it are exact
            allp = every + [(x, q) for x in new]
            want_n = max(sum(1 for u, _ in allp if e - w < u <= e) for e in new)
            want_q = max(sum(c for u, c in allp if e - w < u <= e) for e in new)
            assert log.window_max(new, w) == want_n
            assert log.window_max(new, w, "charge", q) == pytest.approx(want_q, abs=1e-9)
        log.prune(t - horizon)
        log.append(new, q, 0.0)
        every = [(u, c) for u, c in every if u > t - horizon] + [(x, q) for x in new]
        t = new[-1]
        assert np.array_equal(log.onsets(), np.array([u for u, _ in every]))
