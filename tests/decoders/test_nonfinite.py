"""Non-finite samples (an electrode pop, a disconnection, a driver glitch) end nothing:
the loop on the real simulator with NaN/Inf injected into its chunks, against the same run
without them and the simulator's ground truth; the recording read back with pyxdf."""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import pyxdf

from engramloop.controller.build import build_loop
from engramloop.controller.config import SHIPPED_DIR, load_config
from engramloop.controller.nonfinite import SETTLE_S, NonFiniteGuard, stage_channels
from engramloop.core.chunk import Chunk
from engramloop.decoders.ripple import RippleDetector, RippleSettings
from engramloop.sim.source import SimSource


class BadSamples:
    """The real SimSource, with ``value`` (NaN or Inf) written over channels ``channels``
    for samples whose time is in [start_s, stop_s) (times from the first sample)."""

    def __init__(self, inner, start_s: float, stop_s: float, channels=None,
                 value: float = math.nan) -> None:
        self.inner, self.start_s, self.stop_s = inner, start_s, stop_s
        self.bad_channels, self.value = channels, value
        self.rate_hz, self.channels = inner.rate_hz, inner.channels
        self._t0 = None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def start(self):
        self.inner.start()

    def stop(self):
        self.inner.stop()

    def read(self, timeout_s):
        c = self.inner.read(timeout_s)
        if c is None or c.n_samples == 0:
            return c
        if self._t0 is None:
            self._t0 = float(c.timestamps[0])
        rel = c.timestamps - self._t0
        rows = (rel >= self.start_s) & (rel < self.stop_s)
        if not rows.any():
            return c
        x = c.samples.copy()
        cols = [c.channels.index(n) for n in (self.bad_channels or c.channels)]
        x[np.ix_(rows, cols)] = self.value
        return Chunk(x, c.timestamps, c.rate_hz, c.channels, c.arrival_s, c.first_index,
                     c.gap_before, c.units, c.meta)


def _sim(cfg, duration_s):
    return SimSource(cfg.sim, seed=cfg.seed, chunk_samples=cfg.source.chunk_samples,
                     duration_s=duration_s)


def _log(xdf):
    streams, _ = pyxdf.load_xdf(str(xdf), dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    log = [json.loads(m[0]) for m in by["engramloop.log"]["time_series"]]
    return by, log


@pytest.mark.parametrize("value,which,length_s", [
    (math.nan, ["CA1"], 0.010),          # 10 ms on the detection channel
    (math.inf, None, 1.0),               # 1 s on every channel
])
def test_ripple_detection_resumes_after_non_finite_samples(tmp_path, value, which,
                                                           length_s):
    cfg = load_config(SHIPPED_DIR / "sim-ripple.toml")
    # sham: pulses do not change the simulated brain, so both runs see the same ripples
    cfg = dataclasses.replace(cfg, policy=dataclasses.replace(cfg.policy, condition="sham"))
    dur, at = 50.0, 20.0
    ref = build_loop(cfg, speed="max", source=_sim(cfg, dur)).run(dur)
    xdf = tmp_path / "nan.xdf"
    loop = build_loop(cfg, speed="max", record=str(xdf),
                      source=BadSamples(_sim(cfg, dur), at, at + length_s, which, value))
    res = loop.run(dur)
    t0 = res.t0_s
    back = t0 + at + length_s + 2.0     # at most 2 s after clean data returns

    def ripples(r, lo, hi):
        return [e for e in r.events if e.kind == "ripple" and lo <= e.detect_s < hi]

    late_ref = ripples(ref, back, math.inf)
    late = ripples(res, back, math.inf)
    assert len(late_ref) > 10
    # the same ripples as the run without the bad samples, once the detector settled
    # (the baseline never saw them: same thresholds, same events, up to a few at the edge)
    assert abs(len(late) - len(late_ref)) <= 2, (len(late), len(late_ref))
    # nothing from the paused channel during the artefact
    assert not ripples(res, t0 + at, t0 + at + length_s)
    by, log = _log(xdf)
    starts = [m for m in log if m.get("kind") == "artefact_start"]
    ends = [m for m in log if m.get("kind") == "artefact_end"]
    assert len(starts) == 1 and len(ends) == 1
    want = set(which or cfg_channels(loop))
    assert set(ends[0]["channels"]) == want
    assert ends[0]["duration_s"] == pytest.approx(length_s, abs=0.006)
    assert ends[0]["start_s"] == pytest.approx(t0 + at, abs=0.001)
    # the raw recording keeps the samples as they came
    raw = by["engramloop.raw"]["time_series"]
    bad = ~np.isfinite(raw)
    assert bad.any(axis=0).sum() == len(want)
    assert abs(bad.any(axis=1).sum() - length_s * 2000) <= 1
    # no pulse approved during the artefact
    for d in res.decisions:
        if t0 + at <= d.t_s < t0 + at + length_s:
            assert not d.approved and d.rule == "artefact", d


def cfg_channels(loop):
    return loop.source.channels


def test_restart_keeps_the_calibration():
    rng = np.random.default_rng(0)
    det = RippleDetector(RippleSettings(channels=("CA1",), calibration_s=1.0))
    x = rng.normal(0, 20e-6, (2000 * 12, 1)) + 5e-3   # a large DC offset (primed away)
    for i in range(0, 2000 * 8, 10):
        det.process(Chunk(x[i:i + 10].copy(), np.arange(i, i + 10) / 2000.0, 2000.0,
                          ("CA1",), 0.0))
    assert not det.calibrating
    thr = det.threshold.copy()
    det.restart()
    events = []
    for i in range(2000 * 9, 2000 * 12, 10):
        events += det.process(Chunk(x[i:i + 10].copy(), np.arange(i, i + 10) / 2000.0,
                                    2000.0, ("CA1",), 0.0))
    assert not det.calibrating and np.allclose(det.threshold, thr, rtol=0.2)
    # primed in steady state: the 5 mV offset makes no step transient, so no event
    assert not [e for e in events if e.kind == "ripple"]


def test_guard_pauses_only_the_stages_reading_the_bad_channel():
    a = RippleDetector(RippleSettings(channels=("CA1",), theta_gate=False))
    b = RippleDetector(RippleSettings(channels=("CA3",), theta_gate=False))
    assert stage_channels(a) == ("CA1",)
    g = NonFiniteGuard([a, b])
    x = np.zeros((10, 2))
    t = np.arange(10) / 1000.0
    assert g.screen(Chunk(x, t, 1000.0, ("CA1", "CA3"), 0.0)) is None
    x2 = x.copy()
    x2[3, 0] = np.nan
    assert g.screen(Chunk(x2, t + 0.01, 1000.0, ("CA1", "CA3"), 0.0)) == [False, True]
    assert g.episode is not None and g.inhibit_until() == math.inf
    assert g.screen(Chunk(x, t + 0.02, 1000.0, ("CA1", "CA3"), 0.0)) == [True, True]
    assert g.ended and g.ended[0].channels == {"CA1"}
    # a 10 ms hole: the state carries on (no restart), only the jump over it settles
    assert g.n_restarts == 0 and g.inhibit_until() == pytest.approx(0.02 + 0.01)
    # a hole longer than SHORT_HOLE_S restarts the stage and settles for its kind
    for k in range(3, 30):
        g.screen(Chunk(x2, t + k * 0.01, 1000.0, ("CA1", "CA3"), 0.0))
    assert g.screen(Chunk(x, t + 0.30, 1000.0, ("CA1", "CA3"), 0.0)) == [True, True]
    assert g.n_restarts == 1 and g.inhibit_until() == pytest.approx(0.30 + SETTLE_S["ripple"])


def truth_err(est, f_hz: float) -> float:
    """Estimated minus true cosine phase (deg) of cos(2 pi f t) at the estimate's time."""
    true = (360.0 * f_hz * est.t_s) % 360.0
    return ((est.phase_deg - true + 180.0) % 360.0) - 180.0


@pytest.mark.parametrize("hole_s", [0.2, 0.001])
def test_phase_estimator_comes_back_after_non_finite_samples(hole_s):
    """ECHT phase of an 8 Hz rhythm through the guard: NaN for 0.2 s (or one sample: a
    window with a hole gives a wrong phase, so the estimator restarts after any hole),
    then estimates are NaN until its window refills from clean data, and after that as
    close to the rhythm's true phase as the run that never saw the NaN."""
    from engramloop.decoders.phase import EchtPhase, PhaseSettings

    fs, f = 1000.0, 8.0
    rng = np.random.default_rng(1)
    n = int(fs * 8)
    t = np.arange(n) / fs
    x = (np.cos(2 * np.pi * f * t) * 50e-6 + rng.normal(0, 5e-6, n))[:, None]
    xb = x.copy()
    xb[int(3.0 * fs):int((3.0 + hole_s) * fs)] = np.nan
    settings = PhaseSettings(channel="CA1", band_hz=(6.0, 10.0), window_s=1.0)
    clean, est = EchtPhase(settings), EchtPhase(settings)
    guard = NonFiniteGuard([est])
    out = []
    for i in range(0, n, 10):
        c0 = Chunk(np.ascontiguousarray(x[i:i + 10]), t[i:i + 10], fs, ("CA1",), 0.0)
        c1 = Chunk(np.ascontiguousarray(xb[i:i + 10]), t[i:i + 10], fs, ("CA1",), 0.0)
        ref = clean.process(c0)
        feed = guard.screen(c1)
        got = est.process(c1) if feed is None or feed[0] else None
        # each against the rhythm's true cosine phase at the sample it is for (the
        # restarted estimator decimates on another grid: its newest sample may differ)
        out.append((t[i + 9], truth_err(ref, f),
                    None if got is None else
                    (np.nan if not np.isfinite(got.phase_deg) else truth_err(got, f))))
    end = 3.0 + max(hole_s, 0.01)       # the chunk holding the NaN is withheld whole
    during = [g for tt, _, g in out if 3.0 <= tt < end]
    assert during and all(g is None for g in during)
    # the window (1 s) refilled from clean data: as accurate as the clean run
    after = [(r, g) for tt, r, g in out if tt >= end + 1.0 + 0.1]
    ref_err = np.abs([r for r, _ in after])
    got_err = np.abs([g for _, g in after])
    assert np.all(np.isfinite(got_err))
    assert np.max(got_err) <= np.max(ref_err) + 2.0, (np.max(got_err), np.max(ref_err))
    # and it had no estimate (NaN) while refilling, never a stale one
    refill = [g for tt, _, g in out if end <= tt < end + 0.9]
    assert refill and all(not np.isfinite(g) for g in refill[:50])


def _guarded(stages, x, t, rate, names, chunk=20):
    guard = NonFiniteGuard(stages)
    events = []
    for i in range(0, x.shape[0], chunk):
        c = Chunk(x[i:i + chunk], t[i:i + chunk], rate, names, 0.0, first_index=i)
        feed = guard.screen(c)
        for j, st in enumerate(stages):
            if feed is None:
                events.extend(st.process(c))
            elif feed[j]:
                events.extend(guard.keep(j, st.process(c)))
    return events


def test_spindle_and_so_detection_resume_after_nan_on_every_channel():
    """The simulator's N2 and N3 (default hypnogram), all three detectors: 1 s of NaN on
    every channel in N2, 3 s in N3 (every detector restarts: longer than any kept hole);
    2 s after clean data returns the detectors find the same events as without it (the
    simulator's truth is the same signal)."""
    from engramloop.decoders.detectors import DetectorsSettings, make_detectors
    from engramloop.sim.generate import simulate

    x, t, truth = simulate(seed=0, duration_s=260.0)
    x = np.ascontiguousarray(x, dtype=np.float64)
    names, rate = tuple(truth.channels), float(truth.rate_hz)
    ref = _guarded(make_detectors(DetectorsSettings(), names), x, t, rate, names)
    holes = ((60.0, 1.0), (200.0, 3.0))
    bad_at = [truth.stage_at(s) for s, _ in holes]
    xb = x.copy()
    for s, length in holes:
        i = int(s * rate)
        xb[i:i + int(length * rate)] = np.nan
    got = _guarded(make_detectors(DetectorsSettings(), names), xb, t, rate, names)
    seen = {"spindle": 0, "so": 0, "ripple": 0}
    for kind in ("spindle", "so", "ripple"):
        for s, length in holes:
            lo, hi = t[0] + s + length + 2.0, t[0] + s + 40.0
            a = [e.detect_s for e in ref if e.kind == kind and lo <= e.detect_s < hi]
            b = [e.detect_s for e in got if e.kind == kind and lo <= e.detect_s < hi]
            assert abs(len(a) - len(b)) <= 1, (kind, s, bad_at, len(a), len(b))
            seen[kind] += len(a)
    assert all(v >= 5 for v in seen.values()), seen
