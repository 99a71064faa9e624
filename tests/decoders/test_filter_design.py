"""Our Butterworth design and SOS arithmetic (decoders/filter_design.py, and the offline
window helpers in decoders/filters.py) against scipy.signal, the reference they replace
on the loop's path; and a real replay process that shows scipy.signal stays unloaded."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.signal as ss
from shared_data import DATA, require_data

from engramloop.decoders.filter_design import butter_sos, sos_response, sos_steady_state
from engramloop.decoders.filters import (
    SosFilter,
    ZeroPhase,
    analytic_signal,
    butter_bandpass,
    butter_highpass,
    butter_lowpass,
    zero_phase,
)

RATES = (100.0, 250.0, 256.0, 1000.0, 2000.0, 30000.0)
BANDS = ((0.2, 1.5), (0.5, 2.0), (11.0, 16.0), (7.0, 10.0), (4.0, 30.0), (1.0, 30.0),
         (0.5, 4.0), (150.0, 250.0), (0.3, 45.0))


def _designs():
    for fs in RATES:
        for order in range(1, 7):
            for lo, hi in BANDS:
                if hi < fs / 2:
                    yield fs, order, "bandpass", (lo, hi)
            for f in (0.5, 10.0, 40.0):
                yield fs, order, "lowpass", (f,)
                yield fs, order, "highpass", (f,)


DESIGNS = list(_designs())


def _noise(n: int, c: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, c)) * 1e-5 + 2e-5


def test_butterworth_coefficients_match_scipy():
    """Every design's sections equal scipy.signal.butter(..., output="sos") to 1e-12
    (same section order and gain placement; in practice all but a few are bit-equal)."""
    worst, bit_equal = 0.0, 0
    for fs, order, btype, edges in DESIGNS:
        ours = butter_sos(order, edges, btype, fs)
        ref = ss.butter(order, edges if btype == "bandpass" else edges[0], btype, fs=fs,
                        output="sos")
        assert ours.shape == ref.shape and ours.flags.c_contiguous
        worst = max(worst, float(np.max(np.abs(ours - ref))))
        bit_equal += bool(np.array_equal(ours, ref))
    assert worst <= 1e-12
    assert bit_equal >= 0.95 * len(DESIGNS)


@pytest.mark.parametrize("fs,order,btype,edges",
                         [d for d in DESIGNS if d[0] in (250.0, 2000.0)][::7])
def test_filtered_signal_matches_scipy_sosfilt(fs, order, btype, edges):
    """What a detector sees: our design on our C bank against scipy's design and
    scipy.signal.sosfilt, relative error <= 1e-12."""
    x = _noise(4000)
    ref = ss.sosfilt(ss.butter(order, edges if btype == "bandpass" else edges[0], btype,
                               fs=fs, output="sos"), x, axis=0)
    got = SosFilter(butter_sos(order, edges, btype, fs), 1).process(x)
    assert np.max(np.abs(got - ref)) <= 1e-12 * np.max(np.abs(ref))


def test_the_helpers_are_the_same_designs():
    assert np.array_equal(butter_bandpass(11.0, 16.0, 250.0, 1),
                          butter_sos(1, (11.0, 16.0), "bandpass", 250.0))
    np.testing.assert_allclose(butter_lowpass(40.0, 1000.0), ss.butter(
        4, 40.0, "lowpass", fs=1000.0, output="sos"), rtol=0, atol=1e-12)
    np.testing.assert_allclose(butter_highpass(0.5, 250.0, 3), ss.butter(
        3, 0.5, "highpass", fs=250.0, output="sos"), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="high_hz"):
        butter_bandpass(10.0, 200.0, 250.0)
    with pytest.raises(ValueError, match="btype"):
        butter_sos(2, (1.0,), "bandstop", 250.0)
    with pytest.raises(ValueError, match="order"):
        butter_sos(0, (1.0,), "lowpass", 250.0)


@pytest.mark.parametrize("order", [1, 2, 4])
def test_frequency_response_matches_sosfreqz(order):
    sos = ss.butter(order, (0.2, 1.5), "bandpass", fs=250.0, output="sos")
    f = np.linspace(0.05, 30.0, 700)
    _, ref = ss.sosfreqz(sos, worN=f, fs=250.0)
    assert np.max(np.abs(sos_response(sos, f, 250.0) - ref)) <= 1e-12


@pytest.mark.parametrize("order", [1, 2, 3, 6])
def test_steady_state_matches_sosfilt_zi(order):
    sos = ss.butter(order, (0.5, 4.0), "bandpass", fs=250.0, output="sos")
    np.testing.assert_allclose(sos_steady_state(sos), ss.sosfilt_zi(sos), rtol=1e-12,
                               atol=1e-12)
    # and what it is for: a constant input passes with no step transient
    f = SosFilter(ss.butter(order, 4.0, "lowpass", fs=250.0, output="sos"), 1)
    f.reset(np.array([3e-5]))
    np.testing.assert_allclose(f.process(np.full((50, 1), 3e-5)), 3e-5, rtol=1e-9)


@pytest.mark.parametrize("n", [200, 601, 1000])
def test_zero_phase_matches_sosfiltfilt(n):
    sos = ss.butter(2, (0.5, 1.5), "bandpass", fs=50.0, output="sos")
    x = _noise(n, seed=n)[:, 0]
    ref = ss.sosfiltfilt(sos, x)
    assert np.max(np.abs(zero_phase(sos, x) - ref)) <= 1e-12 * np.max(np.abs(ref))
    with pytest.raises(ValueError, match="longer than"):
        zero_phase(sos, x[:10])
    # one ZeroPhase reused (as the SO detector does) carries nothing between calls
    zp, y = ZeroPhase(sos), _noise(n, seed=n + 1)[:, 0]
    for sig in (x, y, x):
        ref = ss.sosfiltfilt(sos, sig)
        assert np.max(np.abs(zp(sig) - ref)) <= 1e-12 * np.max(np.abs(ref))


@pytest.mark.parametrize("n", [1, 2, 599, 600])
def test_analytic_signal_matches_hilbert(n):
    x = _noise(n, seed=n)[:, 0]
    ref = ss.hilbert(x)
    assert np.max(np.abs(analytic_signal(x) - ref)) <= 1e-12 * np.max(np.abs(ref))


def test_a_replay_with_spindle_and_so_detectors_does_not_load_scipy(tmp_path: Path):
    """A real ``engramloop replay`` of a DREAMS excerpt (expert-scored sleep EEG) with
    both detectors, the SO's phase learning on: Python's own import log (-X importtime)
    names no scipy module -- the 0.5-2 s scipy.signal import is not on this path."""
    edf = require_data(DATA / "dreams_dev" / "excerpt1.edf")
    cfg = tmp_path / "night.toml"
    cfg.write_text('name = "no-scipy"\n[source]\nkind = "file"\n[detectors.ripple]\n'
                   'enabled = false\n[detectors.spindle]\nchannels = ["C3-A1"]\n'
                   '[detectors.so]\nchannels = ["C3-A1"]\nlearn_phase = true\n'
                   '[policy]\ntarget = "so_upstate"\ncondition = "sham"\n')
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.run([sys.executable, "-X", "importtime", "-m", "engramloop", "replay",
                        str(cfg), str(edf), "--speed", "max", "--quiet", "--duration", "600"],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "events:" in p.stdout and "'so'" in p.stdout
    imported = [ln.rsplit("|", 1)[-1].strip() for ln in p.stderr.splitlines()
                if ln.startswith("import time:")]
    assert "engramloop.decoders.slow_osc" in imported
    assert [m for m in imported if m.split(".")[0] == "scipy"] == []
