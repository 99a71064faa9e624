"""Online phase estimators: ECHT kernel against an FFT-based ECHT written here from the
paper's recipe, phase convention and accuracy on sinusoids, chunking, time_to_phase, and
theta phase against the simulator's noise-free generator phase."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal as ss
import twins

from engramloop.analysis.scoring import circular_mean_sd
from engramloop.core.angles import wrap_deg
from engramloop.core.chunk import Chunk
from engramloop.decoders.phase import (
    ArPhase,
    EchtKernel,
    EchtPhase,
    PhaseEstimate,
    PhaseSettings,
    make_phase_estimator,
)


@pytest.fixture(params=twins.PLAN_IMPLEMENTATIONS)
def plans(request, monkeypatch) -> str:
    """The test runs on the C plans and again on their NumPy twins (tests/twins.py)."""
    if request.param == "numpy twin":
        twins.install_plan_twins(monkeypatch)
    return request.param


def feed(est, x: np.ndarray, t: np.ndarray, fs: float, chunk: int, every: int = 0):
    """Feed a 1-D signal; return estimates taken every ``every`` samples (0: only last)."""
    out = []
    for i in range(0, x.size, chunk):
        est.update(Chunk(np.ascontiguousarray(x[i:i + chunk, None]), t[i:i + chunk], fs,
                         ("Cz",), 0.0))
        if every and (i // chunk) % every == 0:
            out.append(est.estimate())
    return out or [est.estimate()]


def fft_echt_endpoint(x: np.ndarray, fs: float, band: tuple[float, float]) -> complex:
    """ECHT (Schreglmann et al. 2021): FFT, one-sided spectrum, times the causal
    band-pass's frequency response, inverse FFT; the last sample."""
    n = x.size
    spec = np.fft.fft(x)
    h = np.zeros(n)
    h[0] = 1
    h[1:(n + 1) // 2] = 2
    if n % 2 == 0:
        h[n // 2] = 1
    sos = ss.butter(2, band, btype="bandpass", fs=fs, output="sos")
    _, resp = ss.sosfreqz(sos, worN=n, whole=True)
    return complex(np.fft.ifft(spec * h * resp)[-1])


def test_echt_kernel_equals_fft_echt() -> None:
    fs, band = 250.0, (0.5, 1.25)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 2)).cumsum(axis=0) * 1e-6
    k = EchtKernel(fs, band, 4.0, 2, compensate=False)
    for i in range(0, 1000, 13):
        k.write(x[i:i + 13])
    ph, _, amp = k.analytic()
    for c in range(2):
        ref = fft_echt_endpoint(x[-k.n:, c], fs, band)
        assert amp[c] == pytest.approx(abs(ref), rel=1e-9)
        assert ph[c] == pytest.approx(math.degrees(math.atan2(ref.imag, ref.real)), abs=1e-7)


@pytest.mark.parametrize("fs,max_rate", [(2000.0, 250.0), (500.0, 0.0)])
def test_echt_phase_equals_fft_echt_of_the_decimated_window(fs: float, max_rate: float) -> None:
    """EchtPhase end to end (the C buffer and estimate) against scipy's anti-alias filter
    and decimation plus the FFT ECHT above, at several points of a random walk."""
    rng = np.random.default_rng(2)
    band = (6.0, 10.0)
    n = int(6 * fs)
    x = rng.standard_normal(n).cumsum() * 1e-6 + 20e-6 * np.sin(2 * np.pi * 7.5 * np.arange(n) / fs)
    t = np.arange(n) / fs
    s = PhaseSettings(channel="Cz", band_hz=band, window_s=1.0, max_rate_hz=max_rate,
                      echt_compensate=False)
    est = EchtPhase(s)
    q = max(1, int(fs // max(max_rate, 5 * band[1]))) if max_rate > 0 else 1
    if q > 1:
        sos = ss.butter(4, 0.4 * fs / q, btype="lowpass", fs=fs, output="sos")
        y = ss.sosfilt(sos, x, zi=ss.sosfilt_zi(sos) * x[0])[0]
    else:
        y = x
    checked = 0
    for i in range(0, n, 37):
        e = est.process(Chunk(np.ascontiguousarray(x[i:i + 37, None]), t[i:i + 37], fs,
                              ("Cz",), 0.0))
        end = min(i + 37, n)
        kept = np.flatnonzero(np.arange(end) % q == q - 1)
        big_n = int(round(1.0 * fs / q))
        if kept.size < big_n or i % (37 * 9):
            continue
        win = y[kept[-big_n:]]
        ref = fft_echt_endpoint(win, fs / q, band)
        assert e.t_s == t[kept[-1]]
        assert e.amplitude == pytest.approx(abs(ref), rel=1e-9)
        assert e.phase_deg == pytest.approx(math.degrees(math.atan2(ref.imag, ref.real)),
                                            abs=1e-7)
        assert e.confidence == pytest.approx(min(1.0, abs(ref) / (math.sqrt(2) * win.std())),
                                             rel=1e-9)
        checked += 1
    assert checked >= 8


def test_echt_phase_compensated_equals_the_numpy_kernel() -> None:
    """The C estimate's filter compensation (phase and gain interpolated at the estimated
    frequency) against EchtKernel.analytic, the NumPy path, on the same window."""
    fs = 250.0
    rng = np.random.default_rng(5)
    x = rng.standard_normal(1000) * 1e-5 + 3e-5 * np.cos(2 * np.pi * 8.7 * np.arange(1000) / fs)
    est = EchtPhase(PhaseSettings(channel="Cz", band_hz=(6.0, 10.0), window_s=1.0,
                                  max_rate_hz=0.0))
    k = EchtKernel(fs, (6.0, 10.0), 1.0, 1)
    for i in range(0, 1000, 10):
        e = est.process(Chunk(np.ascontiguousarray(x[i:i + 10, None]),
                              np.arange(i, i + 10) / fs, fs, ("Cz",), 0.0))
        k.write(x[i:i + 10, None])
        if k.count >= k.n:
            ph, f, amp = k.analytic()
            assert e.phase_deg == pytest.approx(float(wrap_deg(ph[0])), abs=1e-7)
            assert e.frequency_hz == pytest.approx(float(f[0]), rel=1e-9)
            assert e.amplitude == pytest.approx(float(amp[0]), rel=1e-9)


def test_a_nan_sample_gives_no_estimate_while_in_the_window(plans: str) -> None:
    """A NaN sample (a dropped packet a source passed through) makes the ECHT estimate NaN
    with confidence 0 -- no phase to time a pulse by -- until it has left the window."""
    fs = 250.0
    t = np.arange(1000) / fs
    x = np.cos(2 * np.pi * 8.0 * t)
    x[400] = np.nan
    est = EchtPhase(PhaseSettings(channel="Cz", band_hz=(6.0, 10.0), window_s=1.0,
                                  max_rate_hz=0.0))
    got = {}
    for i in range(0, 1000, 10):
        e = est.process(Chunk(np.ascontiguousarray(x[i:i + 10, None]), t[i:i + 10], fs,
                              ("Cz",), 0.0))
        got[i + 10] = e
    assert math.isfinite(got[400].phase_deg)
    for end in (410, 500, 650):            # the window (250 samples) holds sample 400
        e = got[end]
        assert math.isnan(e.phase_deg) and math.isnan(e.frequency_hz) and e.confidence == 0
        assert math.isnan(e.time_to_phase(0.0))
    assert math.isfinite(got[660].phase_deg) and got[660].confidence > 0.9


def test_echt_plan_rejects_bad_arguments() -> None:
    """Building an EchtPlan checks every bound argument once; push checks the chunk and
    the bound state (Python code could write into it); each refusal names the argument."""
    from engramloop.decoders._filters import EchtPlan, FilterBank

    x = np.zeros((10, 3))
    k = np.zeros((5, 8))

    def build(col=0, aa=None, q=1, st=None, ring=None, kernels=k, rate=250.0, lag=3, lo=6.0,
              hi=10.0, pr=None, g=None):
        st = np.zeros(3, dtype=np.int64) if st is None else st
        ring = np.zeros(16) if ring is None else ring
        return EchtPlan(col, aa, q, st, ring, kernels, rate, lag, lo, hi, pr, g)

    with pytest.raises(ValueError, match="EchtPlan.push: samples must be 2-D .* col 3"):
        build(col=3).push(x)
    with pytest.raises(ValueError, match="EchtPlan: col must be >= 0, q >= 1"):
        build(q=0)
    with pytest.raises(TypeError, match="EchtPlan: aa must be a FilterBank or None, got str"):
        build(aa="lowpass", q=2)
    with pytest.raises(ValueError, match="EchtPlan: aa must be a FilterBank of 1 channel"):
        build(aa=FilterBank(np.array([[1.0, 0, 0, 1, 0, 0]]), 2), q=2)
    with pytest.raises(ValueError, match="EchtPlan: ring must be 1-D and hold 2N"):
        build(ring=np.zeros(15))
    with pytest.raises(ValueError, match="state must have shape"):
        build(st=np.zeros(2, dtype=np.int64))
    with pytest.raises(TypeError, match="state must have dtype int64"):
        build(st=np.zeros(3))
    st = np.zeros(3, dtype=np.int64)
    plan = build(st=st)
    st[1] = 9
    with pytest.raises(ValueError, match=r"EchtPlan.push: state must be \[seen >= 0, 0 <= w "
                                         r"< 8, written\], got \[0, 9, 0\]"):
        plan.push(x)
    with pytest.raises(ValueError, match=r"EchtPlan.estimate: state must be .* \[0, 9, 0\]"):
        plan.estimate()
    st[1] = 0
    with pytest.raises(ValueError, match="kernels must have shape"):
        build(kernels=np.zeros((4, 8)))
    with pytest.raises(ValueError, match="gain must have shape"):
        build(pr=np.zeros(5), g=np.zeros(4))
    with pytest.raises(ValueError, match="phase_rad and gain need >= 2 grid points"):
        build(pr=np.zeros(1), g=np.zeros(1))
    with pytest.raises(ValueError, match="EchtPlan: col must be >= 0, q >= 1, rate_hz > 0, "
                                         "lag >= 1"):
        build(lag=0)
    with pytest.raises(ValueError, match="lo_hz < hi_hz, both finite"):
        build(lo=-np.inf, pr=np.zeros(5), g=np.ones(5))
    with pytest.raises(TypeError, match="EchtPlan: lo_hz must be a number, got str"):
        build(lo="6")
    with pytest.raises(TypeError, match="takes 12 arguments"):
        EchtPlan(0, None, 1)
    ring = np.zeros(16)
    with pytest.raises(ValueError, match="EchtPlan: state and ring share memory"):
        build(st=ring[:3].view(np.int64), ring=ring)
    with pytest.raises(ValueError, match="samples must not share memory with the plan's"):
        build(ring=ring).push(ring[:12].reshape(4, 3))
    with pytest.raises(RuntimeError, match="EchtPlan.__init__ was not called"):
        EchtPlan.__new__(EchtPlan).push(x)
    # a flat window: zero amplitude and confidence, a finite phase
    ph, f, amp, conf = plan.estimate()
    assert amp == 0.0 and conf == 0.0 and -180.0 < ph <= 180.0 and 6.0 <= f <= 10.0
    assert plan.n == 8 and plan.push(x) == 9


def test_phase_convention_cosine_peak_is_zero() -> None:
    fs, f = 500.0, 8.0
    t = np.arange(int(3 * fs)) / fs
    est = EchtPhase(PhaseSettings(channel="Cz", band_hz=(6.0, 10.0), window_s=1.0))
    # a signal ending exactly on a positive peak reads 0 deg; one ending a quarter cycle
    # after its peak reads +90 deg (cosine phase advances with time)
    x = np.cos(2 * np.pi * f * (t - t[-1]))
    e = feed(est, x, t, fs, 25)[-1]
    assert abs(wrap_deg(e.phase_deg)) < 3.0
    x2 = np.cos(2 * np.pi * f * (t - t[-1]) + np.pi / 2)
    e2 = feed(EchtPhase(PhaseSettings(channel="Cz", band_hz=(6.0, 10.0), window_s=1.0)),
              x2, t, fs, 25)[-1]
    assert e2.phase_deg == pytest.approx(90.0, abs=3.0)
    assert e.frequency_hz == pytest.approx(8.0, abs=0.2) and e.confidence > 0.9


@pytest.mark.parametrize("method,tol_deg", [("echt", 12.0), ("ar", 30.0)])
@pytest.mark.parametrize("f", [0.7, 0.9, 1.1])
def test_noisy_slow_oscillation_phase(method: str, tol_deg: float, f: float) -> None:
    fs = 250.0
    rng = np.random.default_rng(int(f * 10))
    t = np.arange(int(40 * fs)) / fs
    x = 50e-6 * np.cos(2 * np.pi * f * t + 0.3) + 10e-6 * rng.standard_normal(t.size)
    s = PhaseSettings(method=method, channel="Cz", band_hz=(0.5, 1.25),
                      window_s=8.0 if method == "ar" else 4.0)
    est = make_phase_estimator(s)
    ests = feed(est, x, t, fs, 10, every=25)
    got = [(e.phase_deg, e.t_s) for e in ests if math.isfinite(e.phase_deg)]
    err = [wrap_deg(p - math.degrees(2 * np.pi * f * ts + 0.3)) for p, ts in got]
    mean, sd, _ = circular_mean_sd(err)
    assert abs(mean) <= tol_deg and sd <= tol_deg, (mean, sd)


def test_echt_chunk_size_independent(plans: str) -> None:
    fs = 500.0
    rng = np.random.default_rng(1)
    t = np.arange(4000) / fs
    x = rng.standard_normal(4000)
    s = PhaseSettings(channel="Cz", band_hz=(6.0, 10.0), window_s=1.0)
    ref = feed(EchtPhase(s), x, t, fs, 4000)[-1]
    for chunk in (1, 7, 64):
        assert feed(EchtPhase(s), x, t, fs, chunk)[-1] == ref


def test_time_to_phase() -> None:
    e = PhaseEstimate(t_s=10.0, phase_deg=-90.0, frequency_hz=8.0, amplitude=1.0,
                      confidence=1.0)
    assert e.time_to_phase(0.0) == pytest.approx(0.25 / 8.0)
    assert e.time_to_phase(180.0) == pytest.approx(0.75 / 8.0)
    assert e.time_to_phase(-90.0) == 0.0
    assert e.time_of_phase(0.0) == pytest.approx(10.03125)
    nan = PhaseEstimate(0.0, float("nan"), float("nan"), float("nan"), 0.0)
    assert math.isnan(nan.time_to_phase(0.0))
    assert wrap_deg(-180.0) == 180.0 and wrap_deg(540.0) == 180.0 and wrap_deg(-190.0) == 170.0


def test_before_window_fills_and_bad_settings() -> None:
    est = EchtPhase(PhaseSettings(channel="Cz"))
    assert math.isnan(est.estimate().phase_deg)
    t = np.arange(10) / 500.0
    e = est.process(Chunk(np.zeros((10, 1)), t, 500.0, ("Cz",), 0.0))
    assert math.isnan(e.phase_deg) and math.isnan(est.time_to_phase(0.0))
    with pytest.raises(ValueError, match="phase.channel"):
        EchtPhase(PhaseSettings(channel="Fz")).process(
            Chunk(np.zeros((10, 1)), t, 500.0, ("Cz",), 0.0))
    from engramloop.controller.config import loads_config
    from engramloop.core.schema import ConfigError

    with pytest.raises(ConfigError, match="phase.window_s"):
        loads_config("[phase]\nband_hz = [0.5, 1.25]\nwindow_s = 1.0\n")


def test_theta_phase_on_the_simulator(plans: str) -> None:
    """Theta on CA1 during simulated REM vs the noise-free generator phase."""
    from engramloop.sim.generate import simulate
    from engramloop.sim.settings import HypnogramSettings, SimSettings

    sim = SimSettings(channels=("CA1", "Cz"), hypnogram=HypnogramSettings(
        mode="fixed", schedule=("REM:30",)))
    x, t, truth = simulate(sim, seed=3, duration_s=30.0)
    est = EchtPhase(PhaseSettings(channel="CA1", band_hz=(6.0, 10.0), window_s=1.0))
    errs = []
    for i in range(0, x.shape[0], 20):
        e = est.process(Chunk(np.ascontiguousarray(x[i:i + 20]), t[i:i + 20],
                              truth.rate_hz, tuple(truth.channels), 0.0))
        if i % 400 == 0 and math.isfinite(e.phase_deg):
            errs.append(wrap_deg(e.phase_deg - float(truth.phase("theta", e.t_s))))
    errs = [v for v in errs if math.isfinite(v)]
    mean, sd, _ = circular_mean_sd(errs)
    assert len(errs) > 50
    assert abs(mean) <= 20.0 and sd <= 35.0, (mean, sd)


def test_ar_estimator_runs_on_demand_only() -> None:
    fs = 500.0
    t = np.arange(2500) / fs
    x = np.cos(2 * np.pi * 8.0 * t)
    est = ArPhase(PhaseSettings(method="ar", channel="Cz", band_hz=(6.0, 10.0), window_s=1.0))
    feed(est, x, t, fs, 50)
    e = est.estimate()
    assert est.estimate() is e          # cached until new samples arrive
    assert abs(wrap_deg(e.phase_deg - math.degrees(2 * np.pi * 8.0 * t[-1]))) < 20.0
