"""The detectors run on the C plans and on their NumPy twins (tests/twins.py:
RipplePlanTwin, SoPlanTwin, EchtPlanTwin, put in the plans' place) give the same outputs,
on the simulator and on real recordings from shared/data:

- the ripple detector on the simulated hippocampus and on rat CA1 LFP (theta, no ripples:
  a low threshold makes it fire on theta-nested gamma, which is what is compared here);
- the slow-oscillation detector (adaptive threshold, slow-wave-sleep gate on) on simulated
  N2/N3 sleep and on a DREAMS excerpt (human C3-A1 sleep EEG);
- the ECHT phase estimator on the simulator's CA1 theta and on rat CA1 LFP.

Every chunk's events must be identical field by field (the twins share the detectors'
FilterBanks, so the filtered signals are the same numbers); an ECHT estimate may differ in
the last bits (its sums are added in another order). Each test also checks that the
common chunk went through the plan -- the twin's, in the twin run -- and that there was
something to compare.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import twins
from shared_data import DATA, require_data

from engramloop.analysis.scoring import replay
from engramloop.core.chunk import Chunk
from engramloop.decoders.phase import EchtPhase, PhaseSettings
from engramloop.decoders.ripple import RippleDetector, RippleSettings
from engramloop.decoders.slow_osc import SlowOscDetector, SlowOscSettings

IMPLEMENTATIONS = ("C", "numpy")


def _with(implementation: str, monkeypatch, run):
    """``run()`` on the C plans or on their twins."""
    with monkeypatch.context() as m:
        if implementation == "numpy":
            twins.install_plan_twins(m)
        return run()


def _fields(events) -> list[tuple]:
    return [dataclasses.astuple(e) for e in events]


def _same_events(a: list, b: list) -> None:
    """Field by field, NaN equal to NaN."""
    assert len(a) == len(b)
    for ea, eb in zip(_fields(a), _fields(b), strict=True):
        for fa, fb in zip(ea, eb, strict=True):
            assert fa == fb or (isinstance(fa, float) and math.isnan(fa) and math.isnan(fb)), \
                (ea, eb)


def _simulated(seed: int, duration_s: float, **sim) -> tuple[np.ndarray, np.ndarray, float,
                                                               tuple[str, ...]]:
    from engramloop.sim.generate import simulate
    from engramloop.sim.settings import HypnogramSettings, SimSettings

    settings = SimSettings(**sim) if sim else None
    if "hypnogram" in sim:
        settings = SimSettings(hypnogram=HypnogramSettings(**sim["hypnogram"]))
    x, t, truth = simulate(settings, seed=seed, duration_s=duration_s)
    return x, t, truth.rate_hz, tuple(truth.channels)


def _rat_ca1() -> tuple[np.ndarray, np.ndarray, float, tuple[str, ...]]:
    """60 s of rat CA1 LFP at 1250 Hz (bycycle example data; arbitrary units, scaled)."""
    x = np.load(require_data(DATA / "rat_ca1_theta_1250hz.npy")).astype(np.float64)
    x = np.ascontiguousarray(x[:, None] * 1e-6)
    return x, np.arange(len(x)) / 1250.0, 1250.0, ("CA1",)


def _dreams(seconds: float) -> tuple[np.ndarray, np.ndarray, float, tuple[str, ...]]:
    """The first ``seconds`` of DREAMS excerpt 1 (C3-A1, volts)."""
    import pyedflib

    path = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    with pyedflib.EdfReader(str(path)) as r:
        fs = float(r.getSampleFrequency(0))
        x = r.readSignal(0)[:int(seconds * fs)] * 1e-6
    return np.ascontiguousarray(x[:, None]), np.arange(len(x)) / fs, fs, ("Fz",)


def _plans_used(stage, plan_type) -> None:
    assert isinstance(stage._plan, plan_type), type(stage._plan)


@pytest.mark.parametrize("source", ("simulator", "rat CA1"))
def test_ripple_detector_same_events_on_plan_and_twin(source: str, monkeypatch) -> None:
    if source == "simulator":
        x, t, fs, names = _simulated(seed=1, duration_s=40.0)
        settings = RippleSettings()
    else:
        x, t, fs, names = _rat_ca1()
        # theta-nested gamma crosses a low threshold: events to compare on a real signal
        settings = RippleSettings(channels=("CA1",), threshold_sd=2.0, theta_gate=False)
    out = {}
    for impl in IMPLEMENTATIONS:
        def run():
            det = RippleDetector(settings)
            ev = replay([det], x, t, fs, names, 10)
            from engramloop.decoders import ripple
            _plans_used(det, ripple.RipplePlan)
            return ev
        out[impl] = _with(impl, monkeypatch, run)
    ripples = [e for e in out["C"] if e.kind == "ripple"]
    assert len(ripples) >= 5, len(ripples)
    _same_events(out["C"], out["numpy"])


@pytest.mark.parametrize("source", ("simulator", "DREAMS excerpt 1"))
def test_slow_osc_detector_same_events_on_plan_and_twin(source: str, monkeypatch) -> None:
    # the adaptive threshold (baseline ring pushed in the plan) with the gate on: every
    # step of the fused block
    if source == "simulator":
        x, t, fs, names = _simulated(seed=2, duration_s=150.0, hypnogram=dict(
            mode="fixed", schedule=("N2:50", "N3:100")))
        settings = SlowOscSettings(threshold_mode="adaptive", sws_gate_ratio=8.0)
    else:
        x, t, fs, names = _dreams(600.0)
        # a low floor: the threshold is the adaptive one (median |y| scaled), not the floor
        settings = SlowOscSettings(channels=("Fz",), threshold_mode="adaptive",
                                   sws_gate_ratio=8.0, min_threshold_v=5e-6)
    out = {}
    for impl in IMPLEMENTATIONS:
        def run():
            det = SlowOscDetector(settings)
            ev = replay([det], x, t, fs, names, 10)
            from engramloop.decoders import slow_osc
            _plans_used(det, slow_osc.SoPlan)
            return ev
        out[impl] = _with(impl, monkeypatch, run)
    so = [e for e in out["C"] if e.kind == "so"]
    assert len(so) >= 5
    assert len({e.threshold for e in so}) > 1       # the adaptive threshold moved
    _same_events(out["C"], out["numpy"])


@pytest.mark.parametrize("source", ("simulator", "rat CA1"))
def test_echt_phase_same_estimates_on_plan_and_twin(source: str, monkeypatch) -> None:
    if source == "simulator":
        x, t, fs, names = _simulated(seed=3, duration_s=12.0)   # 2 kHz: decimated by 8
    else:
        x, t, fs, names = _rat_ca1()                              # 1250 Hz: by 5
        x, t = x[:15000], t[:15000]
    out = {}
    for impl in IMPLEMENTATIONS:
        def run():
            est = EchtPhase(PhaseSettings(channel="CA1"))
            got = [est.process(Chunk(x[i:i + 10], t[i:i + 10], fs, names, float(t[i])))
                   for i in range(0, len(x) - 9, 10)]
            from engramloop.decoders import phase
            _plans_used(est, phase.EchtPlan)
            return got
        out[impl] = _with(impl, monkeypatch, run)
    finite = 0
    for a, b in zip(out["C"], out["numpy"], strict=True):
        assert a.t_s == b.t_s or (math.isnan(a.t_s) and math.isnan(b.t_s))
        if math.isnan(a.phase_deg):
            assert math.isnan(b.phase_deg) and a.confidence == b.confidence == 0.0
            continue
        finite += 1
        assert abs(twins.wrap_deg(a.phase_deg - b.phase_deg)) < 1e-9
        assert (a.frequency_hz, a.amplitude) == pytest.approx((b.frequency_hz, b.amplitude),
                                                              rel=1e-12)
        assert a.confidence == pytest.approx(b.confidence, rel=1e-9)
    assert finite > 0.8 * len(out["C"])
