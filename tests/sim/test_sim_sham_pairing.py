"""The sham twin stays paired: a stim run and its sham twin (same seed) share every
spontaneous event, for every closed-loop effect.

Each test picks pulse times from the sham run's truth (the spontaneous events are the
same in both runs, so they are the stim run's too), runs the stim twin delivering them
through ``SimSource.stimulate`` while reading, and checks against the simulator's truth
(an independent record of what was generated, not the detectors): every event of the sham
run is in the stim run with the same kind and onset within one sample, or listed in the
stim run's truth as "suppressed" with the event that blocked it. And the effect happened.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from sham_twins import CLICK, ELEC, OPTO, run, settings, so_at_phase

from engramloop.sim.settings import EffectSettings, SimSettings
from engramloop.sim.source import SimSource


def unpaired(stim: SimSource, sham: SimSource) -> tuple[list, int]:
    """Sham events missing from the stim run and not listed there as suppressed, and the
    number listed as suppressed."""
    tol = 1.0 / sham.rate_hz + 1e-9
    sup = stim.truth.events("suppressed")
    by_kind: dict[str, np.ndarray] = {}
    for e in stim.truth.events():
        if e.kind not in ("stim", "suppressed") and e.meta.get("type") != "stim":
            by_kind.setdefault(e.kind, []).append(e.onset_s)
    by_kind = {k: np.sort(v) for k, v in by_kind.items()}
    missing, n_sup = [], 0
    for e in sham.truth.events():
        ons = by_kind.get(e.kind, np.empty(0))
        if ons.size and np.min(np.abs(ons - e.onset_s)) <= tol:
            continue
        if any(s.meta["kind"] == e.kind and abs(s.onset_s - e.onset_s) <= tol for s in sup):
            n_sup += 1
            continue
        missing.append((e.kind, round(e.onset_s, 4)))
    return missing, n_sup


def twins(s: SimSettings, seed: int, seconds: float, pick) -> tuple[SimSource, SimSource]:
    sham = run(s, seed, seconds)
    pulses = pick(sham.truth)
    assert pulses, "the scenario produced no pulse times"
    return run(s, seed, seconds, pulses), sham


def effects(stim: SimSource) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in stim.truth.events("stim"):
        out[p.meta["effect"]] = out.get(p.meta["effect"], 0) + 1
    return out


@pytest.mark.parametrize("seed", [3, 4])
def test_click_at_upstate_keeps_the_twin_paired(seed):
    # clicks induce spindles, and an induced spindle can block a later spontaneous one
    # (refractory period; seed 3 has one): that one must be listed as suppressed
    # (every cycle clicked at its up-state peak, every helpful click inducing a spindle
    # where the up-state has none)
    s = settings("N3:120", effects=EffectSettings(click_spindle_prob=1.0))
    stim, sham = twins(s, seed, 120.0, lambda tr: [(t, CLICK, "so_upstate")
                                                   for t in so_at_phase(tr, 0.0, every=1)])
    missing, n_sup = unpaired(stim, sham)
    assert missing == []
    assert effects(stim).get("so_enhanced", 0) >= 40
    induced = [e for e in stim.truth.events("spindle") if e.meta["induced"]]
    assert induced, "no click induced a spindle: the test would not exercise blocking"
    for e in stim.truth.events("suppressed"):
        assert e.meta["reason"] and e.meta["by_eid"] >= 0
    if seed == 3:
        assert n_sup >= 1, "expected a spontaneous spindle blocked by an induced one"


def test_click_at_downstate_keeps_the_twin_paired():
    s = settings("N3:120")
    stim, sham = twins(s, 2, 120.0, lambda tr: [(t, CLICK, "so_upstate")
                                                for t in so_at_phase(tr, 180.0)])
    assert unpaired(stim, sham) == ([], 0)
    assert effects(stim).get("so_suppressed", 0) >= 10


@pytest.mark.parametrize(("spec", "effect"), [(OPTO, "ripple_prolong"),
                                              (ELEC, "ripple_disrupt")])
def test_ripple_pulses_keep_the_twin_paired(spec, effect):
    s = settings("N3:90")
    stim, sham = twins(s, 3, 90.0, lambda tr: [(e.peak_s, spec, "ripple")
                                               for e in tr.events("ripple")])
    assert unpaired(stim, sham) == ([], 0)
    assert effects(stim).get(effect, 0) >= 30
    # the same ripples replay: each ripple draws its replay content from its own stream,
    # so the stim run's extra or changed ripples do not reshuffle the others' draws
    same = sum(a.meta.get("memory") == b.meta.get("memory")
               for a, b in zip(stim.truth.events("ripple"), sham.truth.events("ripple"),
                               strict=True))
    assert same >= 0.8 * len(sham.truth.events("ripple"))


def test_theta_pulses_keep_the_twin_paired():
    s = settings("REM:60")
    sham = run(s, 5, 60.0)
    t = np.arange(5.0, 55.0, 0.001)
    ph = sham.truth.phase("theta", t)
    peaks = t[1:][(np.diff(np.abs(ph)) > 0) & (np.abs(ph[:-1]) < 3.0)]   # phase ~0 crossings
    times = [float(x) for x in peaks[::4]]
    stim = run(s, 5, 60.0, [(x, ELEC, "theta_peak") for x in times])
    assert unpaired(stim, sham) == ([], 0)
    assert effects(stim).get("theta_plasticity", 0) >= 20


@pytest.mark.parametrize("spec", [OPTO, ELEC])
def test_spindle_locked_pulses_keep_the_twin_paired(spec):
    # light induces a ripple in the spindle's next trough (which can block a spontaneous
    # ripple: listed as suppressed); an electrical pulse there leaves the rhythms alone
    s = settings("N3:120")
    stim, sham = twins(s, 6, 120.0, lambda tr: [(e.peak_s, spec, "spindle")
                                                for e in tr.events("spindle")])
    missing, _ = unpaired(stim, sham)
    assert missing == []
    n = effects(stim).get("spindle_ripple_induced", 0)
    if spec is OPTO:
        assert n >= 10
        assert len([e for e in stim.truth.events("ripple") if e.meta.get("induced")]) == n
    else:
        assert n == 0 and len(stim.truth.events("stim")) >= 10


def test_an_unpaired_stream_would_be_caught():
    """The check itself can fail: a different seed shares (almost) nothing."""
    s = settings("N3:30")
    a, b = run(s, 1, 30.0), run(s, 2, 30.0)
    missing, _ = unpaired(a, b)
    assert len(missing) > 0.8 * len(b.truth.events())
    assert not math.isnan(len(missing))
