"""Slow-oscillation up-state targeting on real human sleep EEG, against an offline
zero-phase reference we did not design: 0.5-1.5 Hz Butterworth (order 2 per edge) applied
forward and backward (scipy ``sosfiltfilt``), then scipy ``hilbert``; cosine phase, 0 deg =
up-state peak. Recordings: the DREAMS development excerpts (C3-A1, Devuyst et al. 2011) and
the YASA N3 excerpt in shared/data. bench/real_eeg.py prints the same figures per excerpt.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy.signal import butter, hilbert, sosfiltfilt
from shared_data import DATA, require_data  # noqa: E402
from so_release import check_release

from engramloop.analysis.scoring import replay, score_phase
from engramloop.decoders.slow_osc import SlowOscDetector, SlowOscSettings

DREAMS = DATA / "dreams_dev"
N3 = DATA / "data_N3_no-spindles_30sec_100Hz.txt"


def _edf(ex: int) -> tuple[np.ndarray, np.ndarray, float]:
    import pyedflib

    path = DREAMS / f"excerpt{ex}.edf"
    require_data(path)
    with pyedflib.EdfReader(str(path)) as r:
        assert r.getPhysicalDimension(0).strip() == "uV"
        fs = float(r.getSampleFrequency(0))
        x = r.readSignal(0) * 1e-6
    return x, np.arange(x.size) / fs, fs


def _reference_phase(x: np.ndarray, t: np.ndarray, fs: float, at: np.ndarray) -> np.ndarray:
    sos = butter(2, (0.5, 1.5), btype="bandpass", fs=fs, output="sos")
    u = np.unwrap(np.angle(hilbert(sosfiltfilt(sos, x - x.mean()))))
    return np.mod(np.degrees(np.interp(at, t, u)) + 180.0, 360.0) - 180.0


def _triggers(x: np.ndarray, t: np.ndarray, fs: float, chunk: int = 0, **kw) -> np.ndarray:
    """The predicted up states inside the recording, replayed in chunks of ``chunk``
    samples (0: 20 ms, shorter than ``confirm_lead_s``, so the fire-time check is made at
    its due sample; tests/cli/test_so_pulses_land_on_time.py takes longer chunks)."""
    chunk = chunk or max(1, int(round(0.02 * fs)))
    s = SlowOscSettings(channels=("EEG",), **kw)
    ev = replay([SlowOscDetector(s)], np.ascontiguousarray(x[:, None]), t, fs, ("EEG",), chunk)
    pred = np.array([e.predicted_s for e in ev if e.kind == "so"], dtype=float)
    return pred[np.isfinite(pred) & (pred <= t[-1])]


@pytest.fixture(scope="module")
def dreams_phases() -> dict:
    out = {}
    for learn in (False, True):
        ph = []
        for ex in (1, 3, 5, 7):
            x, t, fs = _edf(ex)
            ph.append(_reference_phase(x, t, fs, _triggers(x, t, fs, learn_phase=learn)))
        out[learn] = score_phase(np.concatenate(ph), 0.0)
    return out


def test_dreams_up_state_without_a_systematic_lead(dreams_phases) -> None:
    """The half-wave rule alone aims early on real slow waves (pooled circular mean about
    -28 deg); learning each recording's own timing removes that lead (issue 20 target:
    within +-15 deg) and keeps >= 85 % of the triggers in the up-phase."""
    raw, learned = dreams_phases[False], dreams_phases[True]
    # (the fire-time check releases a prediction by where the wave is at its time, so the
    # two sets differ a little: 155 and 151)
    assert raw.n >= 120 and abs(learned.n - raw.n) <= 0.1 * raw.n
    assert raw.mean_phase_deg < -15.0, raw
    assert abs(learned.mean_phase_deg) <= 15.0, learned
    assert learned.fraction_in_target_half >= 0.85, learned
    # issue 20: circular SD <= 35 deg. Predictions only from sharp down states in
    # slow-wave sleep (predict_min_hz = 1 Hz, sws_gate_ratio = 2.5) gave 38.4 deg; the
    # fire-time check (confirm_rising) 34.5 deg (31-42 per excerpt; 52 deg before both)
    # in 20 ms chunks; in 10-sample chunks (100-200 ms on excerpts 1 and 3, so the check
    # extrapolates up to ~0.2 s) 35.8 deg (bench/so_fired.py)
    assert learned.sd_phase_deg <= 35.0, learned


def test_fire_time_check_releases_rising_up_states_only() -> None:
    """Each event the fire-time check released has the band-passed signal still rising at
    its due time (``predicted_s - confirm_lead_s``) as judged at its check (``detect_s``:
    the due sample, or the last sample of the chunk before it, extrapolated by the slope
    and the slope's change), each it held back (``predicted_s`` NaN, counted as
    unconfirmed) not -- checked on scipy's causal Butterworth (``sosfilt``, started in
    steady state at the first sample, as the detector starts), on DREAMS excerpt 5 in
    7-sample chunks (35 ms: longer than the 30 ms lead, so most checks extrapolate); and
    the released triggers scatter less against the zero-phase reference than all of
    them."""
    from scipy.signal import sosfilt, sosfilt_zi

    x, t, fs = _edf(5)
    s = SlowOscSettings(channels=("EEG",))
    det = SlowOscDetector(s)
    ev = [e for e in replay([det], np.ascontiguousarray(x[:, None]), t, fs, ("EEG",), 7)
          if e.kind == "so"]
    sos = butter(s.filter_order, s.band_hz, btype="bandpass", fs=fs, output="sos")
    y = sosfilt(sos, x, zi=sosfilt_zi(sos) * x[0])[0]
    ends = {e.onset_s: e for e in replay([SlowOscDetector(dataclasses.replace(
        s, confirm_rising=False))], np.ascontiguousarray(x[:, None]), t, fs, ("EEG",), 7)
        if e.kind == "so"}
    released = [e for e in ev if np.isfinite(e.predicted_s)]
    held = det.passed_over["unconfirmed"]
    assert len(released) >= 20 and held >= 1

    def rising(e) -> bool:
        j = int(np.searchsorted(t, e.detect_s))
        due = ends[e.onset_s].predicted_s - s.confirm_lead_s
        d1, d0 = y[j] - y[j - 1], y[j - 1] - y[j - 2]
        return bool(d1 + (d1 - d0) * max(0.0, (due - t[j]) * fs) > 0)

    assert all(rising(e) for e in released)
    extrapolated = [e for e in released if e.detect_s < e.predicted_s - s.confirm_lead_s]
    assert len(extrapolated) >= len(released) // 2
    # the held-back ones: at their check (after the down state's end) it was not rising
    back = [e for e in ev if e.detect_s > ends[e.onset_s].detect_s
            and not np.isfinite(e.predicted_s)]
    assert len(back) == held and not any(rising(e) for e in back)
    every = np.array([e.predicted_s for e in ends.values() if np.isfinite(e.predicted_s)])
    assert every.size == len(released) + held
    ph_all = _reference_phase(x, t, fs, every)
    ph_rel = _reference_phase(x, t, fs, np.array([e.predicted_s for e in released]))
    assert score_phase(ph_rel, 0.0).sd_phase_deg < score_phase(ph_all, 0.0).sd_phase_deg


def test_real_n3_excerpt_gets_triggers() -> None:
    """The YASA N3 excerpt (30 s, slow waves of 15-45 uV after the band-pass): the fixed
    -40 uV threshold of the old default finds no predictable down state; the adaptive
    default triggers at least once per minute of N3, in the up-phase. (One trigger in the
    25 s after calibration, from the one down state of three whose half-wave frequency,
    1.02 Hz, passes predict_min_hz: a small margin.)"""
    require_data(N3)
    x = np.loadtxt(N3) * 1e-6
    t = np.arange(x.size) / 100.0
    assert _triggers(x, t, 100.0, threshold_mode="fixed", threshold_v=-40e-6).size == 0
    trig = _triggers(x, t, 100.0)
    minutes = (t[-1] - SlowOscSettings().calibration_s) / 60.0
    assert trig.size / minutes >= 1.0, trig
    ph = _reference_phase(x, t, 100.0, trig)
    assert np.all(np.abs(ph) < 90.0), ph


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_learned_timing_is_chunk_size_independent(chunk: int) -> None:
    """With the learned timing at work (corrections in force after the first events) and
    the slow-wave-sleep gate on, a real recording in chunks of 1, 7, 64
    samples gives the events of one pass; with the fire-time check, the release of each
    prediction follows the chunks (tests/so_release.py). (Excerpt 7 from 1300 s to
    1700 s: its slow-wave sleep, where most of its down states pass the gate.)"""
    x, t, fs = _edf(7)
    a, b = int(1300 * fs), int(1700 * fs)
    x, t = x[a:b], t[a:b]
    n = b - a
    loose = SlowOscSettings(channels=("EEG",), confirm_rising=False)
    det = SlowOscDetector(loose)
    ref = replay([det], np.ascontiguousarray(x[:, None]), t, fs, ("EEG",), n)
    assert det.timing_correction_s[0] != 0.0            # the learning was applied
    assert sum(e.kind == "so" for e in ref) >= 10
    got = replay([SlowOscDetector(loose)], np.ascontiguousarray(x[:, None]), t, fs,
                 ("EEG",), chunk)
    assert [repr(e) for e in got] == [repr(e) for e in ref]
    s = dataclasses.replace(loose, confirm_rising=True)
    checked = replay([SlowOscDetector(s)], np.ascontiguousarray(x[:, None]), t, fs,
                     ("EEG",), chunk)
    check_release(checked, got, t, fs, chunk, s.confirm_lead_s)
