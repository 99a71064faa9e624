"""Spindle detector: real human N2 (YASA's reference spindles) and N3 (no spindles),
chunk-size independence, the max-duration rule, the simulator's truth, and the whole
detector against an independent NumPy reference (the two thresholds, the duration rules)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from shared_data import DATA, require_data  # noqa: E402

from engramloop.analysis.scoring import intervals, replay, score_detections
from engramloop.core.chunk import Chunk
from engramloop.decoders.spindle import SpindleDetector, SpindleSettings

# The excerpts are 15 s and 30 s long: the detector's 10 s default calibration would eat
# most of them, so these tests calibrate for 2 s and refresh the baseline every 0.5 s
# (settings, documented in the report), and keep 60 s of history (the default 120 s needs
# baseline_min_fill x 120 = 6 s of it before its first statistics).
SHORT = dict(channels=("EEG",), calibration_s=2.0, baseline_update_s=0.5, baseline_s=60.0)


def load(name: str) -> tuple[np.ndarray, np.ndarray, float]:
    path = DATA / name
    require_data(path)
    fs = 200.0 if "200Hz" in name else 100.0
    x = np.loadtxt(path)[:, None] * 1e-6          # microvolts -> volts
    return np.ascontiguousarray(x), np.arange(x.shape[0]) / fs, fs


def s_min_dur() -> float:
    return SpindleSettings().min_duration_s


def spindles(ev: list) -> list:
    return [e for e in ev if e.kind == "spindle"]


def test_real_n2_finds_the_reference_spindles() -> None:
    """YASA (offline) puts spindles near 3.3 s and 13.3 s in this excerpt."""
    x, t, fs = load("data_N2_spindles_15sec_200Hz.txt")
    sp = spindles(replay([SpindleDetector(SpindleSettings(**SHORT))], x, t, fs, ("EEG",), 10))
    for ref in (3.3, 13.3):
        assert any(abs(e.onset_s - ref) <= 0.5 for e in sp), (ref, sp)
    assert len(sp) <= 3
    for e in sp:  # online: decided within a few hundred ms of the run's start (the run
        # must last min_duration_s, 0.15 s since issue 20, and reach the high threshold)
        assert s_min_dur() <= e.detect_s - e.onset_s <= 0.4


def test_real_n3_at_most_one_false_spindle() -> None:
    x, t, fs = load("data_N3_no-spindles_30sec_100Hz.txt")
    sp = spindles(replay([SpindleDetector(SpindleSettings(**SHORT))], x, t, fs, ("EEG",), 10))
    assert len(sp) <= 1


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_chunk_size_independent(chunk: int | None) -> None:
    x, t, fs = load("data_N2_spindles_15sec_200Hz.txt")
    s = SpindleSettings(**SHORT)
    ref = replay([SpindleDetector(s)], x, t, fs, ("EEG",), x.shape[0])
    got = replay([SpindleDetector(s)], x, t, fs, ("EEG",), chunk or x.shape[0])
    assert len(spindles(ref)) >= 2 and got == ref


def test_too_long_sigma_run_is_rejected() -> None:
    """A 5 s sigma tone (e.g. alpha/artefact) fires once, then spindle_rejected."""
    fs = 200.0
    rng = np.random.default_rng(2)
    t = np.arange(int(20 * fs)) / fs
    x = rng.standard_normal(t.size) * 5e-6
    on = (t >= 10) & (t < 15)
    x[on] += 30e-6 * np.sin(2 * np.pi * 13 * t[on])
    ev = replay([SpindleDetector(SpindleSettings(channels=("Cz",), calibration_s=3.0))],
                np.ascontiguousarray(x[:, None]), t, fs, ("Cz",), 10)
    kinds = [(e.kind, round(e.onset_s, 1)) for e in ev
             if e.kind.startswith("spindle") and e.detect_s >= 9.5]
    assert [k for k, _ in kinds] == ["spindle", "spindle_rejected"]
    assert kinds[0][1] == kinds[1][1]
    rej = ev[[e.kind for e in ev].index("spindle_rejected")]
    assert rej.detect_s - rej.onset_s == pytest.approx(2.5, abs=0.01)


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_a_short_run_is_released_then_rejected(chunk: int) -> None:
    """With the confirmation on (confirm_duration_s 0.4; off by default), a 0.3 s sigma
    burst fires at once (the release does not wait), and when its run ends before
    confirm_duration_s a spindle_rejected with the same onset marks that sample; a 1.5 s
    spindle is confirmed (no rejection). At the defaults the burst stays a spindle and
    nothing is counted as unconfirmed; the released events are the same either way."""
    fs = 200.0
    rng = np.random.default_rng(3)
    t = np.arange(int(30 * fs)) / fs
    x = rng.standard_normal(t.size) * 5e-6
    for on, dur in ((12.0, 0.3), (20.0, 1.5)):
        m = (t >= on) & (t < on + dur)
        x[m] += 30e-6 * np.sin(np.pi * (t[m] - on) / dur) ** 2 * np.sin(2 * np.pi * 13 * t[m])
    x = np.ascontiguousarray(x[:, None])
    s = SpindleSettings(channels=("Cz",), calibration_s=3.0)
    assert s.confirm_duration_s == 0.0
    on = dataclasses.replace(s, confirm_duration_s=0.4)
    det = SpindleDetector(on)
    ev = [e for e in replay([det], x, t, fs, ("Cz",), chunk) if e.kind.startswith("spindle")]
    assert [(e.kind, round(e.onset_s)) for e in ev] == [
        ("spindle", 12), ("spindle_rejected", 12), ("spindle", 20)]
    # counted for the run summary, with what the gates passed over
    assert det.passed_over["unconfirmed"] == 1
    fired, rejected = ev[0], ev[1]
    assert rejected.onset_s == fired.onset_s and rejected.detect_s > fired.detect_s
    assert rejected.detect_s - rejected.onset_s < on.confirm_duration_s
    # the rejection marks the first sample below the low threshold
    assert rejected.amplitude <= rejected.threshold
    default = SpindleDetector(s)
    ev0 = [e for e in replay([default], x, t, fs, ("Cz",), chunk) if e.kind.startswith("spindle")]
    assert [e.kind for e in ev0] == ["spindle", "spindle"]
    assert "unconfirmed" not in default.passed_over
    # the option changes no release (what a pulse follows)
    assert ev0 == [e for e in ev if e.kind == "spindle"]


def test_confirm_duration_must_be_below_max_duration() -> None:
    with pytest.raises(ValueError, match="max_duration_s: must be greater than "
                                         "confirm_duration_s"):
        SpindleSettings(channels=("Cz",), confirm_duration_s=1.0, max_duration_s=0.8).validate()


def test_simulator_ground_truth() -> None:
    from engramloop.sim.generate import simulate

    x, t, truth = simulate(seed=4, duration_s=200.0)
    names = tuple(truth.channels)
    ev = replay([SpindleDetector()], x, t, truth.rate_hz, names, x.shape[0])
    cal = next(e.detect_s for e in ev if e.kind == "calibration_done")
    tr = [e for e in truth.events("spindle") if e.onset_s >= cal]
    sc = score_detections([e.detect_s for e in spindles(ev)], intervals(tr), t[-1] - cal)
    assert sc.f1 >= 0.8 and sc.latency_onset_median_s <= 0.6, sc


# ---------------------------------------------------------------- independent reference

def _reference(x: np.ndarray, t: np.ndarray, fs: float, s: SpindleSettings) -> list:
    """The detector written out in NumPy on the whole signal: scipy filters, cumulative-sum
    moving windows, the rules as formulas, and runs / events from the run segments (only
    RobustBaseline is shared: it has its own tests). Returns (kind, onset_s, detect_s)."""
    from scipy.signal import sosfilt
    from twins import moving_rms

    from engramloop.decoders.baseline import RobustBaseline
    from engramloop.decoders.filters import butter_bandpass

    def rms(v: np.ndarray, win_s: float) -> np.ndarray:
        return moving_rms(v[:, None], max(1, int(round(win_s * fs))))[:, 0]

    def mean(v: np.ndarray, win_s: float) -> np.ndarray:
        w = max(1, int(round(win_s * fs)))
        c = np.concatenate([[0.0], np.cumsum(v)])
        i = np.arange(1, v.size + 1)
        lo = np.maximum(i - w, 0)
        return (c[i] - c[lo]) / (i - lo)

    xb = sosfilt(butter_bandpass(*s.broad_band_hz, fs, s.filter_order), x)
    xs = sosfilt(butter_bandpass(*s.sigma_band_hz, fs, s.filter_order), xb)
    xa = sosfilt(butter_bandpass(*s.alpha_band_hz, fs, s.alpha_filter_order), xb)
    w0 = 2 * np.pi * np.sqrt(s.sigma_band_hz[0] * s.sigma_band_hz[1]) / fs
    prev = np.concatenate([[0.0], xs[:-1]])
    q = (xs - prev) / (2 * np.sin(w0 / 2))           # quadrature of xs at the centre
    i_ = (xs + prev) / (2 * np.cos(w0 / 2))          # in phase, same instant as q
    env = np.sqrt(mean((i_ ** 2 + q ** 2) / 2, s.envelope_window_s))
    es, eb, ea = rms(xs, s.window_s), rms(xb, s.window_s), rms(xa, s.window_s)
    corr2 = mean(xs * xb, s.window_s) ** 2 + mean(q * xb, s.window_s) ** 2
    base = RobustBaseline(1, fs, history_s=s.baseline_s, step_s=s.baseline_step_s,
                          update_s=s.baseline_update_s, exclude_sd=s.exclude_sd,
                          min_fill=s.baseline_min_fill, update_phase=0.33,
                          hold_s=s.baseline_hold_s)
    med, sd = np.empty((x.size, 1)), np.empty((x.size, 1))
    base.process(np.ascontiguousarray(env[:, None]), med, sd)
    med, sd = med[:, 0], sd[:, 0]
    # artefacts: an amplitude beyond artefact_sd SDs holds the detector for the
    # artefact_hold_s (in samples) after the last such sample
    art = env > med + s.artefact_sd * sd
    idx = np.arange(env.size)
    until = np.maximum.accumulate(np.where(art, idx + round(s.artefact_hold_s * fs), -1))
    held = art | (idx <= until)
    low = (env > med + s.low_threshold_frac * s.threshold_sd * sd) & ~held
    rules = ((env > med + s.threshold_sd * sd) & (env ** 2 >= s.rel_power_min * eb ** 2)
             & (corr2 >= s.corr_min * abs(s.corr_min) * (es * eb) ** 2)) & ~held
    if s.alpha_ratio_max > 0:
        rules &= ea <= s.alpha_ratio_max * env
    start = max(base.ready_index, int(np.searchsorted(t, t[0] + s.calibration_s)))
    min_n = max(1, int(round(s.min_duration_s * fs)) + 1)
    max_n = max(min_n + 1, int(round(s.max_duration_s * fs)) + 1)
    edges = np.diff(np.concatenate([[0], low.astype(np.int8), [0]]))
    out, rearm = [], -np.inf
    for a, b in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1), strict=True):
        # a run [a, b) can fire after calibration, once min_n long, if the channel re-armed
        # (a sample below the low threshold at or after the refractory end) before it
        if b <= start or (a > start and t[a - 1] < rearm):
            continue
        # ... and only while it is shorter than max_n: a run that outlasts max_duration_s
        # before its high crossing is no spindle
        j0, j1 = max(a + min_n - 1, start), min(b, a + max_n - 1)
        hits = np.flatnonzero(rules[j0:j1]) if j0 < j1 else []
        if len(hits) == 0:
            continue
        j = j0 + int(hits[0])
        out.append(("spindle", t[a], t[j]))
        if b - a >= max_n:
            out.append(("spindle_rejected", t[a], t[a + max_n - 1]))
        elif b < low.size and b - a < round(s.confirm_duration_s * fs):
            # a fired run that ended (sample b, the first below the low threshold) before
            # confirm_duration_s
            out.append(("spindle_rejected", t[a], t[b]))
        rearm = t[j] + s.refractory_s
    return out


def _test_signal(fs: float, seed: int, steps: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """90 s of red background with ongoing sigma-band noise, waxing-waning spindles of many
    sizes and lengths (some too small for the high threshold), brief sigma clicks (60 ms:
    the filter stretches them, and the large ones pass as spindle onsets -- online a
    spindle's length is unknown when it fires), a stretch of 9.5 Hz alpha, a 4 s sigma
    tone (too long: rejected), spindles back to back (the refractory) and steps (broadband
    transients with sigma-band energy, for the relative-power and correlation rules; they
    ring in the sigma band at once, and the large ones pass as spindles too)."""
    from scipy.signal import lfilter, sosfilt

    from engramloop.decoders.filters import butter_bandpass

    rng = np.random.default_rng(seed)
    t = np.arange(int(90 * fs)) / fs
    x = lfilter([1.0], [1.0, -0.97], rng.standard_normal(t.size))   # red background
    x *= 12e-6 / x.std()
    sig = sosfilt(butter_bandpass(10.0, 16.0, fs, 2), rng.standard_normal(t.size))
    x += sig * (2e-6 / sig.std()) + rng.standard_normal(t.size) * 0.5e-6
    for on in np.arange(12.0, 70.0, 3.1):
        dur, amp, f = rng.uniform(0.4, 1.8), rng.uniform(4e-6, 30e-6), rng.uniform(11, 16)
        m = (t >= on) & (t < on + dur)
        x[m] += amp * np.sin(np.pi * (t[m] - on) / dur) ** 2 * np.cos(2 * np.pi * f * t[m])
    for on in (25.3, 41.7, 55.9):                       # 60 ms clicks
        m = (t >= on) & (t < on + 0.06)
        x[m] += 25e-6 * np.sin(np.pi * (t[m] - on) / 0.06) * np.cos(2 * np.pi * 13 * t[m])
    m = (t >= 72) & (t < 78)
    x[m] += 20e-6 * np.cos(2 * np.pi * 9.5 * t[m])
    m = (t >= 80) & (t < 84)
    x[m] += 25e-6 * np.cos(2 * np.pi * 13.0 * t[m])
    for on in (84.6, 85.25, 85.9, 86.55):               # back to back (the refractory)
        m = (t >= on) & (t < on + 0.6)
        x[m] += 20e-6 * np.sin(np.pi * (t[m] - on) / 0.6) ** 2 * np.cos(2 * np.pi * 14 * t[m])
    for on in np.arange(13.3, 88.0, 2.3) if steps else ():   # broadband, not spindles
        x[t >= on] += rng.choice([-1, 1]) * rng.uniform(20e-6, 80e-6)
    return np.ascontiguousarray(x[:, None]), t


@pytest.mark.parametrize("variant", [
    {},                                                  # the defaults
    dict(min_duration_s=0.15, low_threshold_frac=0.6),   # longer duration rule
    dict(low_threshold_frac=1.0, alpha_ratio_max=0.0, filter_order=2),  # one threshold
    dict(rel_power_min=0.2, corr_min=0.65, refractory_s=1.0,   # YASA's rel. power, corr.
         confirm_duration_s=0.4),                        # short released runs rejected
])
@pytest.mark.parametrize("fs", [250.0, 1000.0])
def test_matches_numpy_reference(variant: dict, fs: float) -> None:
    """Events (kind, onset, detection time) equal the NumPy reference's, in chunks of 7."""
    x, t = _test_signal(fs, seed=int(fs))
    s = SpindleSettings(channels=("Cz",), calibration_s=5.0, **variant)
    ref = _reference(x[:, 0], t, fs, s)
    got = [(e.kind, e.onset_s, e.detect_s)
           for e in replay([SpindleDetector(s)], x, t, fs, ("Cz",), 7)
           if e.kind.startswith("spindle")]
    assert got == ref
    kinds = [k for k, _, _ in ref]
    assert kinds.count("spindle") >= 8 and "spindle_rejected" in kinds
    # both reasons for a rejection occur when confirmation is on
    short = [d - o < s.confirm_duration_s for k, o, d in ref if k == "spindle_rejected"]
    assert any(short) == (s.confirm_duration_s > 0) and not all(short)


@pytest.mark.parametrize("chunk", [1, 10, 64])
def test_a_run_too_long_before_its_high_crossing_is_no_spindle(chunk: int) -> None:
    """A sigma rhythm between the two thresholds for longer than max_duration_s that then
    grows past the high one is not a spindle (it was already too long): no event, and so
    no onset looked up beyond the detector's memory; a spindle after it is found as usual.
    Same events as the NumPy reference, whatever the chunking."""
    fs = 250.0
    rng = np.random.default_rng(3)
    t = np.arange(int(60 * fs)) / fs
    x = rng.standard_normal(t.size) * 2e-6                  # background (white)
    # from 29 s the background all but stops, so the rhythm's amplitude stays between the
    # thresholds the baseline learnt (~0.8 and ~1.45 uV RMS): one unbroken run
    x[t >= 29.0] *= 0.03
    m = (t >= 30.0) & (t < 34.0)                            # 4 s: 3 s flat, then growing
    ramp = np.clip((t[m] - 33.0) / 0.5, 0.0, 1.0)
    x[m] += (1.6e-6 + 30e-6 * ramp) * np.cos(2 * np.pi * 13.3 * t[m])
    m = (t >= 45.0) & (t < 45.8)                            # an ordinary spindle
    x[m] += 25e-6 * np.sin(np.pi * (t[m] - 45.0) / 0.8) ** 2 * np.cos(2 * np.pi * 13.3 * t[m])
    x = np.ascontiguousarray(x[:, None])
    s = SpindleSettings(channels=("Cz",), calibration_s=5.0)
    ev = [(e.kind, e.onset_s, e.detect_s)
          for e in replay([SpindleDetector(s)], x, t, fs, ("Cz",), chunk)
          if e.kind.startswith("spindle")]
    assert ev == _reference(x[:, 0], t, fs, s)
    assert not [e for e in ev if 29.5 < e[2] < 35.0]        # the long rhythm: nothing
    assert [e[0] for e in ev if 45.0 < e[2] < 45.8] == ["spindle"]


def _saturate(x: np.ndarray, t: np.ndarray, at_s: float, rail_v: float = 0.1875) -> None:
    """An amplifier saturation as the simulator draws one (sim.rhythms Pop with twice the
    input range): a step of 2 x rail that decays back over 0.5 s, clipped at the rail."""
    m = t >= at_s
    x[m, 0] += 2 * rail_v * np.exp(-(t[m] - at_s) / 0.5)
    np.clip(x, -rail_v, rail_v, out=x)


@pytest.mark.parametrize("chunk", [1, 10, 64])
def test_saturation_is_no_spindle(chunk: int) -> None:
    """A saturation rings the sigma band-pass at thousands of SDs, and again when the
    channel leaves the rail: before the artefact rule each fired a 'spindle' of tens of
    millivolts (seen in the forecaster's training data). Now nothing fires while the
    amplitude is beyond artefact_sd SDs nor for artefact_hold_s after; spindles away from
    it are found, and the events equal the NumPy reference's whatever the chunking."""
    fs = 250.0
    x, t = _test_signal(fs, seed=11, steps=False)
    s = SpindleSettings(channels=("Cz",), calibration_s=5.0)
    clean = [e for e in replay([SpindleDetector(s)], x, t, fs, ("Cz",), chunk)
             if e.kind == "spindle"]
    y = x.copy()
    for at in (30.05, 60.05):
        _saturate(y, t, at)
    # the rules before issue 20 (looser relative power, correlation and duration), with and
    # without the artefact rule: the defaults' stricter rules alone already reject these
    # saturations, so the artefact rule is shown on the looser ones
    loose = dataclasses.replace(s, rel_power_min=0.05, corr_min=0.4, min_duration_s=0.03)
    old = dataclasses.replace(loose, artefact_sd=1e12)      # the rule off
    before = [e for e in replay([SpindleDetector(old)], y, t, fs, ("Cz",), chunk)
              if e.kind == "spindle"]
    held = [e for e in replay([SpindleDetector(loose)], y, t, fs, ("Cz",), chunk)
            if e.kind == "spindle"]
    ev = [e for e in replay([SpindleDetector(s)], y, t, fs, ("Cz",), chunk)
          if e.kind.startswith("spindle")]
    assert [(e.kind, e.onset_s, e.detect_s) for e in ev] == _reference(y[:, 0], t, fs, s)

    def near(evs: list) -> list:
        return [e for e in evs if any(at <= e.detect_s < at + 2.5 for at in (30.05, 60.05))]

    assert near(before) and max(e.amplitude for e in near(before)) > 1e-3
    assert near([e for e in ev if e.kind == "spindle"]) == [] and near(held) == []
    # away from the saturations the spindles are still found (the flat rail enters the
    # baseline and moves the thresholds a little, so not always at the same sample)
    far = [e.detect_s for e in clean if not near([e])]
    got = [e.detect_s for e in ev if e.kind == "spindle"]
    assert len(far) >= 8
    assert sum(any(abs(d - g) < 0.05 for g in got) for d in far) >= 0.85 * len(far)


def test_hysteresis_onset_and_duration() -> None:
    """A run starts at the low threshold and fires at the high one once it is long enough:
    the detection comes at least min_duration_s after the onset and above the high
    threshold, the onset comes well before (a single threshold would put them
    min_duration_s apart), and a longer minimum duration rejects the shorter runs."""
    fs = 250.0
    x, t = _test_signal(fs, seed=5, steps=False)
    # a short minimum duration (the default before issue 20), so the lead is the low
    # threshold's, not the duration rule's
    s = SpindleSettings(channels=("Cz",), calibration_s=5.0, min_duration_s=0.03)
    ev = [e for e in replay([SpindleDetector(s)], x, t, fs, ("Cz",), 10)
          if e.kind == "spindle"]
    assert len(ev) >= 8
    for e in ev:
        assert e.detect_s - e.onset_s >= s.min_duration_s - 1e-9
        assert e.score > s.threshold_sd and e.amplitude > e.threshold
    lead = np.array([e.detect_s - e.onset_s for e in ev])
    assert np.median(lead) > 2 * s.min_duration_s
    longer = dataclasses.replace(s, min_duration_s=0.4)
    ev2 = [e for e in replay([SpindleDetector(longer)], x, t, fs, ("Cz",), 10)
           if e.kind == "spindle"]
    assert 0 < len(ev2) < len(ev)
    assert all(e.detect_s - e.onset_s >= 0.4 - 1e-9 for e in ev2)


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_chunk_size_independent_three_channels(chunk: int | None) -> None:
    """Channels scanned side by side (open runs, refractory, max-duration rejections on
    each at different times) give the same events whatever the chunking."""
    fs = 250.0
    x, t = _test_signal(fs, seed=7)
    rng = np.random.default_rng(8)
    xs = np.ascontiguousarray(np.hstack([x, 0.8 * x + rng.normal(0, 2e-6, x.shape),
                                         np.roll(x, int(0.7 * fs))]))
    names = ("C3", "Cz", "C4")
    s = SpindleSettings(channels=names, calibration_s=5.0, max_duration_s=0.6)
    ref = replay([SpindleDetector(s)], xs, t, fs, names, xs.shape[0])
    kinds = [e.kind for e in ref]
    assert kinds.count("spindle") >= 20 and kinds.count("spindle_rejected") >= 3
    assert replay([SpindleDetector(s)], xs, t, fs, names, chunk or xs.shape[0]) == ref


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_fused_kernel_equals_the_steps(chunk: int) -> None:
    """process runs a chunk in one C call (SpindlePlan.run) unless a baseline update point
    falls in it; a detector made to take the step-by-step path every chunk (the baseline
    in Python, then spindle_runs) gives the same events and the same buffers and state bit
    for bit: three channels picked out of order, calibration, spindles, rejections, the
    refractory and an artefact hold."""
    fs = 250.0
    x, t = _test_signal(fs, seed=9)
    _saturate(x, t, 60.05)
    rng = np.random.default_rng(10)
    xs = np.ascontiguousarray(np.hstack([np.roll(x, int(0.7 * fs)), rng.normal(0, 3e-6, x.shape),
                                         x, 0.8 * x + rng.normal(0, 2e-6, x.shape)]))
    names = ("C4", "Fz", "C3", "Cz")
    s = SpindleSettings(channels=("C3", "Cz", "C4"), calibration_s=5.0, max_duration_s=0.6)
    fused, steps = SpindleDetector(s), SpindleDetector(s)
    from engramloop.core.chunk import Chunk
    from engramloop.decoders.baseline import RobustBaseline

    n_fused = 0
    ev_fused, ev_steps = [], []
    for a in range(0, xs.shape[0], chunk):
        c = Chunk(xs[a:a + chunk], t[a:a + chunk], fs, names, float(t[a]))
        if a:
            fb = fused._base
            n_fused += fb.index + c.n_samples <= fb._next_upd
            steps._base.claim_block = lambda n: False       # never fused
        ev_fused += fused.process(c)
        ev_steps += steps.process(c)
        n = c.n_samples
        for name in ("_xb", "_eb", "_xs", "_es", "_sum", "_pmo", "_amp", "_e", "_xa", "_ea",
                     "_med", "_sd", "_runs", "_fire"):
            assert np.array_equal(getattr(fused, name)[:n], getattr(steps, name)[:n],
                                  equal_nan=True), (a, name)
        for name in ("_xs_last", "_runstate", "_armed", "_open", "_rearm_t"):
            assert np.array_equal(getattr(fused, name), getattr(steps, name)), (a, name)
        assert fused._any_open == steps._open.any() and fused._all_armed == steps._armed.all()
    for name in ("_ring", "_pos", "_count", "median", "sd"):
        np.testing.assert_array_equal(getattr(fused._base, name), getattr(steps._base, name))
    assert isinstance(steps._base, RobustBaseline) and n_fused > 0.8 * (xs.shape[0] // chunk)
    assert ev_fused == ev_steps
    kinds = [e.kind for e in ev_fused]
    assert kinds.count("spindle") >= 20 and kinds.count("spindle_rejected") >= 3


def test_a_nan_rearm_time_does_not_hold_the_other_channels() -> None:
    """A spindle fired at a NaN timestamp leaves a NaN re-arm time on its channel: a quiet
    chunk never re-arms that channel (NaN compares False) but still re-arms the others."""
    d = SpindleDetector(SpindleSettings(channels=("C3", "C4")))
    t = np.arange(10) / 2000.0
    d.process(Chunk(np.zeros((10, 2)), t, 2000.0, ("C3", "C4"), 0.0))
    d._calibrating = False
    d._armed[:] = False
    d._rearm_t[:] = [np.nan, 0.001]
    d._flags()
    d._quiet(t + 5.0, 0)
    assert d._armed.tolist() == [False, True]
