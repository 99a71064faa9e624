"""Stimulation policy: targets, Ngo two-click timing, conditions, and policy/safety checks."""
from __future__ import annotations

import math

import pytest

from engramloop.controller.config import loads_config
from engramloop.controller.governor import SafetySettings
from engramloop.controller.policy import (
    NGO_CLICK_INTERVAL_S,
    NGO_PAUSE_S,
    Policy,
    PolicySettings,
    PulseSettings,
    check_against_safety,
)
from engramloop.core.events import Event
from engramloop.core.schema import ConfigError, build
from engramloop.decoders.phase import PhaseEstimate

BUDGET = 0.002


def ripple(t: float, peak: float = math.nan) -> Event:
    return Event("ripple", "CA1", t - 0.01, t, peak_s=peak)


def so(t: float, up: float) -> Event:
    return Event("so", "Cz", t - 0.3, t, predicted_s=up)


def test_ripple_fires_at_detection_with_budget_deadline():
    p = Policy(PolicySettings(), BUDGET)
    assert p.step([], 1.0) == []
    assert p.step([Event("spindle", "Cz", 0.9, 1.0)], 1.0) == []
    [i] = p.step([ripple(1.0, peak=1.005)], 1.0)
    assert (i.target, i.intended_s, i.deadline_s, i.detect_s, i.event_peak_s) == \
        ("ripple", 1.0, 1.0 + BUDGET, 1.0, 1.005)
    assert i.condition == "stim" and i.spec.modality == "ttl"
    [j] = Policy(PolicySettings(fire_delay_s=0.01), BUDGET).step([ripple(1.0)], 1.002)
    assert j.intended_s == pytest.approx(1.01)


def test_late_ripple_detection_is_skipped():
    p = Policy(PolicySettings(ripple_max_age_s=0.03), BUDGET)
    late = Event("ripple", "CA1", onset_s=0.95, detect_s=1.0)  # 50 ms after onset
    assert p.step([late], 1.0) == [] and p.n_too_late == 1
    assert len(p.step([Event("ripple", "CA1", onset_s=1.99, detect_s=2.0)], 2.0)) == 1


def test_min_interval():
    p = Policy(PolicySettings(min_interval_s=0.5), BUDGET)
    assert len(p.step([ripple(1.0)], 1.0)) == 1
    assert p.step([ripple(1.2)], 1.2) == []
    assert len(p.step([ripple(1.6)], 1.6)) == 1
    # the dropped detection is counted (run summary, recording), not silent; a chunk
    # without a detection of the target in the refractory time is not counted
    assert p.step([], 1.7) == []
    assert p.passed_over["min_interval"] == 1


def test_so_phase_target():
    s = PolicySettings(target="so_upstate", so_phase_deg=-90.0, so_period_s=1.0,
                       pulse=PulseSettings(modality="auditory", amplitude=50.0,
                                           phase_width_s=0.05))
    [i] = Policy(s, BUDGET).step([so(10.0, up=10.5)], 10.0)
    assert i.intended_s == pytest.approx(10.25)  # quarter cycle before the up-state peak
    # target phase already passed: aim at the same phase of the next cycle
    [j] = Policy(s, BUDGET).step([so(10.0, up=10.1)], 10.0)
    assert j.intended_s == pytest.approx(10.85)
    # passed only after the detector decided (its chunk arrived after the target, as with
    # the SO detector's fire-time check just before the up state): now, not a cycle late
    [k] = Policy(s, BUDGET).step([so(10.0, up=10.27)], 10.04)
    assert k.intended_s == pytest.approx(10.04)
    # a prediction too far ahead is ignored, a NaN prediction too
    assert Policy(s, BUDGET).step([so(10.0, up=13.0)], 10.0) == []
    assert Policy(s, BUDGET).step([so(10.0, up=math.nan)], 10.0) == []
    # a down state without a prediction earlier in the chunk does not hide a released one
    [m] = Policy(s, BUDGET).step([so(9.9, up=math.nan), so(10.0, up=10.5)], 10.0)
    assert m.intended_s == pytest.approx(10.25)


def test_so_target_passed_long_ago_is_not_fired_off_phase():
    # the fire-time check 30 ms before the up state, its chunk handed over 400 ms later
    # (a stalled source, a starved loop): "now" is 133 deg past the up-state peak, on the
    # falling slope, outside the up phase (docs/performance: >= 85 % in the up phase)
    s = PolicySettings(target="so_upstate", so_phase_deg=0.0, so_period_s=1.0,
                       pulse=PulseSettings(modality="auditory", amplitude=50.0,
                                           phase_width_s=0.05))
    p = Policy(s, BUDGET)
    [i] = p.step([so(10.0, up=10.03)], 10.4)
    assert i.intended_s == pytest.approx(11.03)     # the next cycle's, as before d26de9b
    # more than a cycle late: no phase left to aim at, counted and shown, not fired now
    p = Policy(s, BUDGET)
    assert p.step([so(10.0, up=10.03)], 11.5) == []
    assert p.passed_over["so_target_passed"] == 1
    assert "passed" in p.status_note


def test_ngo_two_click_and_pause():
    s = PolicySettings(target="so_upstate", so_mode="two_click",
                       pulse=PulseSettings(modality="auditory", amplitude=50.0,
                                           phase_width_s=0.05))
    p = Policy(s, BUDGET)
    a, b = p.step([so(10.0, up=10.4)], 10.0)
    assert a.intended_s == pytest.approx(10.4) and not a.ends_train
    assert b.intended_s - a.intended_s == pytest.approx(NGO_CLICK_INTERVAL_S) and b.ends_train
    assert b.deadline_s == pytest.approx(b.intended_s + BUDGET)
    pause_end = b.intended_s + NGO_PAUSE_S
    assert p.step([so(pause_end - 0.01, up=pause_end + 0.3)], pause_end - 0.01) == []
    assert p.passed_over["so_pause"] == 1 and p.passed_over["min_interval"] == 0
    p.step([so(pause_end - 0.005, up=math.nan)], pause_end - 0.005)
    assert p.passed_over["so_pause"] == 1   # no prediction: nothing the policy could aim at
    assert len(p.step([so(pause_end + 0.01, up=pause_end + 0.3)], pause_end + 0.01)) == 2


def test_spindle_and_theta_targets():
    [i] = Policy(PolicySettings(target="spindle"), BUDGET).step(
        [ripple(1.0), Event("spindle", "Cz", 0.5, 1.0)], 1.0)
    assert i.target == "spindle" and i.intended_s == 1.0

    est = PhaseEstimate(t_s=5.0, phase_deg=-90.0, frequency_hz=8.0, amplitude=1e-4,
                        confidence=0.9)
    # -90 deg at 8 Hz: peak a quarter cycle (31.25 ms) later, trough three quarters later
    [pk] = Policy(PolicySettings(target="theta_peak"), BUDGET).step([], 5.0, est)
    [tr] = Policy(PolicySettings(target="theta_trough"), BUDGET).step([], 5.0, est)
    assert pk.intended_s == pytest.approx(5.03125) and tr.intended_s == pytest.approx(5.09375)
    weak = PhaseEstimate(5.0, -90.0, 8.0, 1e-4, confidence=0.2)
    assert Policy(PolicySettings(target="theta_peak"), BUDGET).step([], 5.0, weak) == []
    assert Policy(PolicySettings(target="theta_peak"), BUDGET).step([], 5.0) == []
    assert Policy(PolicySettings(target="theta_peak"), BUDGET).needs_phase


def test_conditions_sham_and_yoked_random():
    [i] = Policy(PolicySettings(condition="sham"), BUDGET).step([ripple(1.0)], 1.0)
    assert i.condition == "sham" and i.intended_s == 1.0
    s = PolicySettings(condition="yoked-random", yoked_min_delay_s=0.5, yoked_max_delay_s=3.0)
    a = Policy(s, BUDGET, seed=7)
    b = Policy(s, BUDGET, seed=7)
    ta = [a.step([ripple(t)], t) for t in (1.0, 10.0, 20.0)]
    tb = [b.step([ripple(t)], t) for t in (1.0, 10.0, 20.0)]
    assert [x[0].intended_s for x in ta] == [x[0].intended_s for x in tb]  # seeded
    for t, [x] in zip((1.0, 10.0, 20.0), ta, strict=True):
        assert t + 0.5 <= x.intended_s <= t + 3.0 and x.condition == "yoked-random"
        assert x.deadline_s == pytest.approx(x.intended_s + BUDGET)
    # two-click sequences move as a whole, keeping the click interval
    s2 = PolicySettings(target="so_upstate", so_mode="two_click", condition="yoked-random",
                        pulse=PulseSettings(modality="auditory", amplitude=50.0))
    c1, c2 = Policy(s2, BUDGET, seed=1).step([so(10.0, up=10.4)], 10.0)
    assert c2.intended_s - c1.intended_s == pytest.approx(NGO_CLICK_INTERVAL_S)


def test_policy_config_and_safety_cross_checks():
    cfg = loads_config('[policy]\ntarget = "spindle"\n[policy.pulse]\namplitude = 3.0\n')
    assert cfg.policy.target == "spindle" and cfg.policy.pulse.amplitude == 3.0
    with pytest.raises(ConfigError, match=r"policy\.target: must be one of"):
        loads_config('[policy]\ntarget = "gamma"\n')
    with pytest.raises(ConfigError, match=r"policy\.yoked_max_delay_s"):
        loads_config("[policy]\nyoked_min_delay_s = 2.0\nyoked_max_delay_s = 1.0\n")
    with pytest.raises(ConfigError, match=r"policy\.pulse\.train_interval_s"):
        loads_config("[policy.pulse]\ntrain_count = 3\ntrain_interval_s = 0.00001\n")
    elec = PulseSettings(modality="electrical", shape="biphasic", amplitude=1.0)
    check_against_safety(PolicySettings(pulse=elec), SafetySettings())
    bad = [
        (PolicySettings(pulse=elec), SafetySettings(modalities=("ttl",)), "not enabled"),
        (PolicySettings(pulse=PulseSettings(modality="electrical")), SafetySettings(),
         "biphasic"),
        (PolicySettings(pulse=build(PulseSettings, {"modality": "electrical",
                                                    "shape": "biphasic", "amplitude": 50.0})),
         SafetySettings(), "every pulse would be refused"),
        (PolicySettings(pulse=PulseSettings(modality="optogenetic", amplitude=50.0)),
         SafetySettings(), "opto_max_power_mw"),
        (PolicySettings(pulse=PulseSettings(modality="auditory", amplitude=80.0)),
         SafetySettings(), "auditory_max_db_spl"),
        (PolicySettings(target="so_upstate", so_mode="two_click", click_interval_s=0.1),
         SafetySettings(refractory_s=0.2), "click_interval_s"),
        (PolicySettings(target="so_upstate", so_mode="two_click",
                        pulse=PulseSettings(modality="auditory", amplitude=50.0)),
         SafetySettings(auditory_max_train_clicks=1), "auditory_max_train_clicks"),
        (PolicySettings(), SafetySettings(max_pulses_per_session=0), "sham"),
    ]
    for pol, saf, msg in bad:
        with pytest.raises(ValueError, match=msg):
            check_against_safety(pol, saf)


def test_forecast_gate_plugs_into_the_policy():
    from types import SimpleNamespace

    from engramloop.controller.forecast_worker import ForecasterSettings, ForecastGate
    from engramloop.decoders.features import Forecast

    fc = {"p": 0.2}
    worker = SimpleNamespace(failed=False, latest=lambda: Forecast(
        time_s=0.5, horizon_s=300.0, p_below_median=fc["p"], delta_strength=0.0,
        model_version="test"))
    gate = ForecastGate(worker, ForecasterSettings(p_below_median_threshold=0.5, max_age_s=90.0))
    p = Policy(PolicySettings(), BUDGET, gate=gate)
    assert p.step([ripple(1.0)], 1.0) == []
    assert p.gate_refusals == {"p_below_median_low": 1}
    fc["p"] = 0.8  # high decay risk: the gate opens
    [i] = p.step([ripple(2.0)], 2.0)
    assert i.intended_s == 2.0
    assert p.step([ripple(200.0)], 200.0) == []  # forecast too old
    assert p.gate_refusals["stale_forecast"] == 1
