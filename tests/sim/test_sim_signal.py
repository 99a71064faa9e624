"""The simulated signal against independent references (scipy filters, Hilbert phase):
spectral content, event statistics, coupling, stage schedule, amplitudes, artefacts."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import signal

from engramloop.sim.generate import simulate
from engramloop.sim.settings import ArtefactSettings, HypnogramSettings, SimSettings

FS = 2000.0


def _settings(*schedule: str, **kw) -> SimSettings:
    return SimSettings(hypnogram=HypnogramSettings(schedule=tuple(schedule)), **kw)


# random artefacts off in the shared fixtures (they have their own test), eye movements on
QUIET = ArtefactSettings(movement_rate_hz=0.0, pop_rate_hz=0.0, dropout_rate_hz=0.0,
                         saturation_rate_hz=0.0)


@pytest.fixture(scope="module")
def n3():
    s = _settings("N3:240", artefacts=QUIET)
    x, t, truth = simulate(s, seed=11, duration_s=240.0)
    return s, x, t, truth


@pytest.fixture(scope="module")
def mixed():
    s = _settings("N2:40", "REM:40", "N3:40", "wake:40", artefacts=QUIET)
    x, t, truth = simulate(s, seed=12, duration_s=160.0)
    return s, x, t, truth


def _bp(x: np.ndarray, lo: float, hi: float, order: int = 4) -> np.ndarray:
    sos = signal.butter(order, [lo, hi], "bandpass", fs=FS, output="sos")
    return signal.sosfiltfilt(sos, x, axis=0)


def _mask(t: np.ndarray, events, pad: float) -> np.ndarray:
    m = np.zeros(t.size, bool)
    for e in events:
        m[(t >= e.onset_s - pad) & (t < e.offset_s + pad)] = True
    return m


def _circ_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.degrees(np.angle(np.exp(1j * np.radians(a - b))))


def _col(s: SimSettings, name: str) -> int:
    return list(s.channels).index(name)


def test_amplitudes_are_physiological(n3):
    s, x, t, _ = n3
    sd = x.std(axis=0)
    for i, name in enumerate(s.channels):
        if s.is_lfp(name):
            assert 50e-6 < sd[i] < 1e-3, (name, sd[i])     # LFP: hundreds of microvolts
        else:
            assert 10e-6 < sd[i] < 150e-6, (name, sd[i])   # EEG: tens of microvolts


def test_ripple_band_power_during_ripples(n3):
    s, x, t, truth = n3
    rb = _bp(x[:, _col(s, "CA1")], 150, 250)
    rip = truth.events("ripple")
    inside = np.zeros(t.size, bool)
    for e in rip:       # middle half of each ripple, where the envelope is high
        q = 0.25 * e.duration_s
        inside[(t >= e.onset_s + q) & (t < e.offset_s - q)] = True
    base = ~_mask(t, rip, 0.05)
    ratio = np.mean(rb[inside] ** 2) / np.mean(rb[base] ** 2)
    assert ratio > 10.0
    # EEG channels carry no ripples
    eb = _bp(x[:, _col(s, "Cz")], 150, 250)
    assert np.mean(eb[inside] ** 2) / np.mean(eb[base] ** 2) < 1.5


def test_ripple_statistics_within_configured_ranges(n3):
    s, x, t, truth = n3
    rip = truth.events("ripple")
    dur = np.array([e.duration_s for e in rip])
    f = np.array([e.meta["frequency_hz"] for e in rip])
    lo, hi = s.ripple.duration_s
    assert np.all((dur >= lo - 1e-9) & (dur <= hi + 1e-9))
    assert np.all((f >= s.ripple.freq_hz[0]) & (f <= s.ripple.freq_hz[1]))
    rate = len(rip) / 240.0
    # Poisson ripples at rate_n3_hz plus spindle-trough ripples, minus overlap rejections
    assert 0.7 * s.ripple.rate_n3_hz < rate < 1.5 * s.ripple.rate_n3_hz
    # the dominant frequency inside each long ripple matches its carrier (independent FFT)
    errs = []
    for e in rip:
        if e.duration_s < 0.06:
            continue
        seg = x[(t >= e.onset_s) & (t < e.offset_s), _col(s, "CA1")]
        seg = _bp(seg, 100, 300, order=2) * np.hanning(seg.size)
        spec = np.abs(np.fft.rfft(seg, 8192))
        freqs = np.fft.rfftfreq(8192, 1 / FS)
        errs.append(freqs[np.argmax(spec)] - e.meta["frequency_hz"])
    assert len(errs) > 20 and np.median(np.abs(errs)) < 10.0


def test_spindle_peak_frequency_and_durations(n3):
    s, x, t, truth = n3
    sp = truth.events("spindle")
    assert len(sp) > 20
    cz = x[:, _col(s, "Cz")]
    errs = []
    for e in sp:
        assert s.spindle.duration_s[0] - 1e-9 <= e.duration_s <= s.spindle.duration_s[1] + 1e-9
        assert s.spindle.freq_hz[0] <= e.meta["frequency_hz"] <= s.spindle.freq_hz[1]
        seg = cz[(t >= e.onset_s) & (t < e.offset_s)]
        f, p = signal.welch(seg, fs=FS, nperseg=seg.size, nfft=1 << 15, window="hann")
        band = (f > 9) & (f < 18)
        errs.append(f[band][np.argmax(p[band])] - e.meta["frequency_hz"])
    assert np.median(np.abs(errs)) < 0.7


def test_so_statistics(n3):
    s, x, t, truth = n3
    so = truth.events("so")
    f = np.array([e.meta["frequency_hz"] for e in so])
    assert np.all((f >= s.so.freq_hz[0]) & (f <= s.so.freq_hz[1]))
    occ = sum(e.duration_s for e in so) / 240.0
    assert abs(occ - s.so.n3_occupancy) < 0.2
    # down state negative, up state positive on the low-passed frontal EEG (surface polarity)
    fz = _bp(x[:, _col(s, "Fz")], 0.2, 4.0, order=2)
    so = [e for e in so if e.offset_s < t[-1]]
    tr = np.array([fz[np.searchsorted(t, e.meta["trough_s"])] for e in so])
    pk = np.array([fz[np.searchsorted(t, e.peak_s)] for e in so])
    assert np.median(tr) < -30e-6 and np.median(pk) > 15e-6


def test_so_trains_keep_their_frequency(n3):
    """Inside an N3 train consecutive cycles vary by ~train_cycle_cv (log-normal factor
    around the train's first cycle), while trains differ across the whole range."""
    s, _, _, truth = n3
    so = truth.events("so")
    f = np.array([e.meta["frequency_hz"] for e in so])
    on = np.array([e.onset_s for e in so])
    off = np.array([e.offset_s for e in so])
    cont = np.isclose(on[1:], off[:-1])            # next cycle starts where this one ends
    assert cont.sum() > 50
    step = np.log(f[1:][cont] / f[:-1][cont])
    # first->second cycle: one factor (sigma cv); later pairs: difference of two (sqrt 2)
    assert 0.5 * s.so.train_cycle_cv < np.std(step) < 1.6 * s.so.train_cycle_cv
    assert np.corrcoef(f[:-1][cont], f[1:][cont])[0, 1] > 0.7
    assert np.std(f) > 1.5 * np.std(step) * np.mean(f)   # trains spread over the range


def test_spindles_cluster_at_so_upstate(n3):
    s, x, t, truth = n3
    coupled = [e for e in truth.events("spindle") if e.meta["so_coupled"]]
    assert len(coupled) > 15
    ph = truth.phase("so", np.array([e.peak_s for e in coupled]))
    assert np.all(np.isfinite(ph))
    z = np.mean(np.exp(1j * np.radians(ph)))
    assert abs(z) > 0.7                                   # tightly locked
    assert abs(_circ_diff(np.degrees(np.angle(z)), s.spindle.so_phase_deg)) < 20
    assert np.all(np.abs(ph) < 90)                        # all in the up state


def test_coupled_ripples_sit_in_spindle_troughs(n3):
    s, x, t, truth = n3
    rip = [e for e in truth.events("ripple") if e.meta["spindle_eid"] >= 0]
    assert len(rip) > 10
    ph = truth.phase("spindle", np.array([e.peak_s for e in rip]))
    assert np.all(np.abs(_circ_diff(ph, 180.0)) < 1.0)


def test_ripples_gather_in_so_upstates(n3):
    s, x, t, truth = n3
    ph = truth.phase("so", np.array([e.peak_s for e in truth.events("ripple")]))
    ph = ph[np.isfinite(ph)]
    z = np.mean(np.exp(1j * np.radians(ph)))
    assert abs(z) > 0.1 and abs(np.degrees(np.angle(z))) < 45
    up = np.mean(np.abs(ph) < 90)
    assert up > 0.6


def test_eye_movements_in_rem_and_wake_only_and_frontal(mixed):
    s, x, t, truth = mixed
    eye = [e for e in truth.events("artefact") if e.meta["type"] == "eye"]
    assert len(eye) > 5
    assert {truth.stages(e.peak_s) for e in eye} <= {"REM", "wake"}
    assert all(e.channel == "Fz" for e in eye)
    fz, oz = _col(s, "Fz"), _col(s, "Oz")
    big = [e for e in eye if abs(e.meta["amplitude_v"]) > 60e-6]
    # summed over five movements: one short movement can drown in the REM background
    front = back = 0.0
    for e in big[:5]:
        i = np.searchsorted(t, e.peak_s)
        lp = _bp(x[max(0, i - 4000):i + 4000], 0.3, 4.0, order=2)
        front += np.abs(lp[4000, fz])
        back += np.abs(lp[4000, oz])
    assert front > 2 * back


def test_truth_phase_matches_hilbert_phase_of_the_signal(n3, mixed):
    """The phase convention (cosine phase, 0 = positive peak) checked against the Hilbert
    phase of the band-passed signal, an independent estimate."""
    s, x, t, truth = n3
    fz = signal.hilbert(_bp(x[:, _col(s, "Fz")], 0.4, 1.6, order=2))
    ph = truth.phase("so", t[::50])
    ok = np.isfinite(ph)
    d = _circ_diff(np.degrees(np.angle(fz[::50]))[ok], ph[ok])
    assert np.median(np.abs(d)) < 30
    cz = signal.hilbert(_bp(x[:, _col(s, "Cz")], 10.5, 16.5))
    ph = truth.phase("spindle", t[::5])
    strong = np.isfinite(ph) & (np.abs(cz[::5]) > 8e-6)
    d = _circ_diff(np.degrees(np.angle(cz[::5]))[strong], ph[strong])
    assert strong.sum() > 1000 and np.median(np.abs(d)) < 25
    s2, x2, t2, truth2 = mixed
    ca1 = signal.hilbert(_bp(x2[:, _col(s2, "CA1")], 5.0, 11.0, order=2))
    ph = truth2.phase("theta", t2[::20])
    ok = np.isfinite(ph) & (np.abs(ca1[::20]) > 100e-6)
    d = _circ_diff(np.degrees(np.angle(ca1[::20]))[ok], ph[ok])
    assert ok.sum() > 500 and np.median(np.abs(d)) < 30


def test_stage_schedule_sets_the_rhythms(mixed):
    s, x, t, truth = mixed
    st = truth.stages(t)
    for lo, stage in ((0, "N2"), (40, "REM"), (80, "N3"), (120, "wake")):
        sel = (t >= lo) & (t < lo + 40)
        assert set(st[sel]) == {stage}
    for e in truth.events("spindle") + truth.events("so"):
        assert truth.stages(e.onset_s) in ("N2", "N3")
    for e in truth.events("ripple"):
        assert truth.stages(e.peak_s) in ("N2", "N3", "wake")
    bursts = truth.events("theta_burst")
    assert [e.meta["stage"] for e in bursts] == ["REM", "wake"]
    # theta dominates CA1 in REM/wake, not in NREM (independent band-power check)
    th = _bp(x[:, _col(s, "CA1")], 6, 10) ** 2
    rem = (t > 45) & (t < 75)
    nrem = (t > 85) & (t < 115)
    assert th[rem].mean() > 10 * th[nrem].mean()
    assert np.all(np.isnan(truth.phase("theta", np.array([10.0, 90.0]))))
    assert np.all(np.isfinite(truth.phase("theta", np.array([50.0, 130.0]))))
    # N3 has far more slow-oscillation cycles than N2
    n_so = [sum(1 for e in truth.events("so") if lo <= e.onset_s < lo + 40) for lo in (0, 80)]
    assert n_so[1] > 3 * max(n_so[0], 1)


def test_wake_alpha_is_posterior_and_wake_only(mixed):
    s, x, t, truth = mixed
    al = _bp(x, 8.0, 12.0) ** 2
    wake = (t > 125) & (t < 155)
    n2 = (t > 5) & (t < 35)
    oz, fz = _col(s, "Oz"), _col(s, "Fz")
    assert al[wake, oz].mean() > 4 * al[n2, oz].mean()
    assert al[wake, oz].mean() > 2 * al[wake, fz].mean()


def test_line_noise_and_aperiodic_slope(n3):
    s, x, t, _ = n3
    f, p = signal.welch(x[:, _col(s, "Oz")], fs=FS, nperseg=int(4 * FS))
    line = p[np.argmin(np.abs(f - s.noise.line_hz))]
    near = np.median(p[(f > 45) & (f < 55) & (np.abs(f - 50) > 1)])
    assert line > 10 * near
    sel = (f > 20) & (f < 45)
    slope = np.polyfit(np.log10(f[sel]), np.log10(p[sel]), 1)[0]
    assert -s.noise.aperiodic_exponent - 0.5 < slope < -s.noise.aperiodic_exponent + 0.5


def test_artefacts_dropout_pops_movement_and_clipping():
    art = ArtefactSettings(movement_rate_hz=0.1, pop_rate_hz=0.2, dropout_rate_hz=0.1,
                           saturation_rate_hz=0.1, clip_v=2e-3)
    s = _settings("N2:60", artefacts=art)
    x, t, truth = simulate(s, seed=3, duration_s=60.0)
    ev = truth.events("artefact")
    kinds = {e.meta["type"] for e in ev}
    assert {"movement", "pop", "dropout", "saturation"} <= kinds
    assert np.max(np.abs(x)) <= 2e-3
    for e in ev:
        if e.meta["type"] == "saturation":              # on the rail for ~tau*ln2
            ch = list(s.channels).index(e.channel)
            i0 = np.searchsorted(t, e.onset_s) + 1
            n = int(0.5 * e.meta["decay_s"] * np.log(2) * FS)
            assert np.all(np.abs(x[i0:i0 + n, ch]) == 2e-3)
    for e in ev:
        if e.meta["type"] == "dropout":
            ch = list(s.channels).index(e.channel)
            i0, i1 = np.searchsorted(t, [e.onset_s, e.offset_s])
            seg = x[i0 + 2:i1 - 2, ch]
            assert seg.size and np.all(seg == 0.0)


def test_rate_and_channels_are_configurable():
    s = dataclasses.replace(_settings("N3:5"), rate_hz=30000.0, channels=("CA1", "Cz"))
    x, t, truth = simulate(s, seed=0, duration_s=1.0, chunk_samples=3000)
    assert x.shape == (30000, 2)
    assert t[1] - t[0] == pytest.approx(1 / 30000)
    s = dataclasses.replace(_settings("N3:5"), channels=("C3", "Cz"))   # EEG only
    x, t, truth = simulate(s, seed=0, duration_s=2.0)
    assert x.shape[1] == 2
