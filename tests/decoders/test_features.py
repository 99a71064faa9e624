"""Epoch features: chunk-size independence, band power vs scipy, event statistics."""
from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy.signal import sosfilt

from engramloop.core.chunk import Chunk
from engramloop.core.events import Event
from engramloop.decoders.features import (
    BAND_NAMES,
    FEATURE_NAMES,
    EpochFeatures,
    FeatureSettings,
    feature_matrix,
)
from engramloop.decoders.filters import butter_bandpass

FS = 500.0
CHANNELS = ("CA1", "Cz")


def _signal(duration_s: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(int(duration_s * FS)) / FS
    x = np.empty((t.size, 2))
    x[:, 0] = 50e-6 * np.sin(2 * np.pi * 8 * t) + 10e-6 * rng.standard_normal(t.size)
    x[:, 1] = (40e-6 * np.sin(2 * np.pi * 1.0 * t) * (t > duration_s / 2)
               + 5e-6 * np.sin(2 * np.pi * 13 * t) + 8e-6 * rng.standard_normal(t.size))
    return np.ascontiguousarray(x), t


def _events() -> list[Event]:
    evs = []
    # SO down-states every 2 s from 31 s, each with a coupled spindle peaking 0.25 s after
    # the trough (half way to the predicted up-state 0.5 s later: phase -90 deg)
    for k in range(12):
        trough = 31.0 + 2 * k
        evs.append(Event("so", "Cz", trough - 0.2, trough + 0.05, trough, -80e-6, 5, 40e-6,
                         trough + 0.5))
        evs.append(Event("spindle", "Cz", trough - 0.2, trough + 0.4, trough + 0.25, 20e-6,
                         4, 10e-6))
    # ripples: 10 in the first epoch, 4 of them inside spindles of epoch 2
    for k in range(10):
        evs.append(Event("ripple", "CA1", 2.0 + 2 * k, 2.02 + 2 * k, 2.01 + 2 * k, 60e-6, 6,
                         30e-6))
    for k in range(4):
        t0 = 31.0 + 2 * k
        evs.append(Event("ripple", "CA1", t0 + 0.1, t0 + 0.12, t0 + 0.11, 40e-6, 5, 30e-6))
    return sorted(evs, key=lambda e: e.detect_s)


def _run(x, t, events, chunk, settings=None, pulses=()):
    stage = EpochFeatures(settings or FeatureSettings(epoch_s=30.0, hop_s=30.0,
                                                       eeg_channel="Cz", lfp_channel="CA1"))
    out = []
    n = len(t)
    ev_i = 0
    pulses = sorted(pulses)
    p_i = 0
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        c = Chunk(np.ascontiguousarray(x[a:b]), t[a:b].copy(), FS, CHANNELS, arrival_s=t[b - 1])
        # the events a detector would report while processing this chunk
        evs = []
        while ev_i < len(events) and events[ev_i].detect_s <= t[b - 1]:
            evs.append(events[ev_i])
            ev_i += 1
        ps = []
        while p_i < len(pulses) and pulses[p_i] <= t[b - 1]:
            ps.append(pulses[p_i])
            p_i += 1
        out.extend(stage.process(c, evs, ps))
    return out


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunk_size_independence(chunk):
    x, t = _signal(95.0)
    events = _events()
    whole = _run(x, t, events, len(t), pulses=[10.0, 40.0, 41.0])
    parts = _run(x, t, events, chunk, pulses=[10.0, 40.0, 41.0])
    assert len(whole) == len(parts) == 3
    for a, b in zip(whole, parts, strict=True):
        assert (a.t_start_s, a.t_end_s) == (b.t_start_s, b.t_end_s)
        np.testing.assert_allclose(a.values, b.values, rtol=1e-9, atol=1e-12)


def test_band_power_matches_scipy():
    x, t = _signal(95.0)
    vecs = _run(x, t, [], 250)
    for band, ch, (lo, hi) in (("eeg_delta", 1, (0.5, 4.0)), ("eeg_sigma", 1, (11.0, 16.0)),
                               ("lfp_theta", 0, (6.0, 10.0)), ("lfp_ripple", 0, (150.0, 250.0))):
        if hi >= FS / 2:
            # above Nyquist at this rate: band skipped, power at the floor
            assert all(v[f"logp_{band}"] == pytest.approx(-20.0) for v in vecs)
            continue
        y = sosfilt(butter_bandpass(lo, hi, FS), x[:, ch])
        for v in vecs:
            sel = (t >= v.t_start_s) & (t < v.t_end_s)
            ref = math.log10(np.mean(y[sel] ** 2) + 1e-20)
            assert v[f"logp_{band}"] == pytest.approx(ref, abs=1e-9), band
    # the 1 Hz slow wave is switched on half way: delta power and sws_index rise
    assert vecs[2]["logp_eeg_delta"] > vecs[0]["logp_eeg_delta"] + 1.0
    assert vecs[2]["sws_index"] > vecs[0]["sws_index"]


def test_event_statistics_and_coupling():
    x, t = _signal(95.0)
    v0, v1, v2 = _run(x, t, _events(), 100, pulses=[10.0, 40.0, 41.0])
    # epoch 0: 10 ripples of 60 uV, none in a spindle, one pulse
    assert v0["ripple_rate_hz"] == pytest.approx(10 / 30)
    assert v0["ripple_amp_uv"] == pytest.approx(60.0)
    assert v0["ripple_spindle_frac"] == 0.0
    assert v0["pulses"] == 1 and v1["pulses"] == 2
    assert v0["coverage"] == pytest.approx(1.0)
    # epoch 1 (30-60 s): SOs at 31..57 s (14 s step 2): 14 -> but only 12 exist
    n_so = sum(1 for k in range(12) if 30 <= 31 + 2 * k + 0.05 < 60)
    assert v1["so_per_min"] == pytest.approx(n_so * 2.0)
    n_sp = sum(1 for k in range(12) if 30 <= 31 + 2 * k + 0.4 < 60)
    assert v1["spindle_per_min"] == pytest.approx(n_sp * 2.0)
    # every spindle peaks half way from trough (-180) to up-state (0): phase -90 deg,
    # perfectly consistent -> strength 1
    assert v1["so_spindle_strength"] == pytest.approx(1.0)
    assert v1.so_spindle_phase_deg == pytest.approx(-90.0, abs=1e-6)
    # 4 ripples in epoch 1, all inside spindles
    assert v1["ripple_rate_hz"] == pytest.approx(4 / 30)
    assert v1["ripple_spindle_frac"] == pytest.approx(1.0)
    # the last epoch (60-90 s) has no ripples
    assert v2["ripple_rate_hz"] == 0.0 and v2["ripple_spindle_frac"] == 0.0
    assert feature_matrix([v0, v1, v2]).shape == (3, len(FEATURE_NAMES))


def test_sliding_update_equals_block_sums():
    x, t = _signal(95.0)
    events = _events()
    slide = _run(x, t, events, 64, FeatureSettings(epoch_s=30.0, hop_s=10.0,
                                                   eeg_channel="Cz", lfp_channel="CA1"))
    whole = _run(x, t, events, 64)
    assert [v.t_end_s for v in slide][:3] == [10.0, 20.0, 30.0]
    # the sliding vector ending at 60 s summarises the same 30 s as the epoch 30-60 s
    s60 = next(v for v in slide if v.t_end_s == 60.0)
    np.testing.assert_allclose(s60.values, whole[1].values, rtol=1e-9, atol=1e-12)


def test_gap_lowers_coverage_and_settings_errors():
    x, t = _signal(95.0)
    keep = (t < 40.0) | (t >= 45.0)
    vecs = _run(np.ascontiguousarray(x[keep]), t[keep], [], 50)
    assert vecs[1]["coverage"] == pytest.approx(25 / 30, abs=1e-3)
    with pytest.raises(ValueError, match="hop_s"):
        FeatureSettings(epoch_s=30.0, hop_s=7.0).validate()
    stage = EpochFeatures(FeatureSettings(eeg_channel="Fz"))
    with pytest.raises(ValueError, match="eeg_channel"):
        stage.process(Chunk(x[:10].copy(), t[:10].copy(), FS, CHANNELS, arrival_s=0.0))
    assert len(BAND_NAMES) == 6


def test_feature_modules_do_not_import_torch():
    code = ("import sys, engramloop.decoders.features, engramloop.controller.config\n"
            "import engramloop.cli\n"
            "for m in ('engramloop.controller.loop', 'engramloop.decoders.detectors',\n"
            "          'engramloop.controller.forecast_worker'):\n"
            "    try:\n"
            "        __import__(m)\n"
            "    except Exception:\n"
            "        pass\n"
            "print('torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "False"
