"""Online phase estimators: ECHT kernel against an FFT-based ECHT written here from the
paper's recipe, phase convention and accuracy on sinusoids, chunking, time_to_phase, and
theta phase against the simulator's noise-free generator phase."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal as ss

from decoders.phase import (
    ArPhase,
    EchtKernel,
    EchtPhase,
    PhaseEstimate,
    PhaseSettings,
    make_phase_estimator,
    wrap_deg,
)
from decoders.scoring import circular_mean_sd
from drivers.chunk import Chunk


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


def test_echt_chunk_size_independent() -> None:
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
    from controller.config import loads_config
    from controller.schema import ConfigError

    with pytest.raises(ConfigError, match="phase.window_s"):
        loads_config("[phase]\nband_hz = [0.5, 1.25]\nwindow_s = 1.0\n")


def test_theta_phase_on_the_simulator() -> None:
    """Theta on CA1 during simulated REM vs the noise-free generator phase."""
    from sim.generate import simulate
    from sim.settings import HypnogramSettings, SimSettings

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
