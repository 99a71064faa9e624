"""Non-finite samples reaching the forecaster's feature stage.

The loop's NonFiniteGuard screens the detectors, but the forecaster worker is fed every
chunk as it came (the raw recording and the worker see the same data). Before this test,
one NaN sample entered the feature stage's band-pass filters and stayed in their state:
every later epoch's EEG band powers were NaN, and ``Forecaster.predict`` replaced NaN
features by the training mean (``nan_to_num``) -- forecasts kept coming for the rest of
the night, made from invented features, without a word.

Reference: the band power of the clean signal computed with scipy (independent of our
C filter), and the same stage on the signal without the bad samples.
"""
from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import butter, sosfilt

from engramloop.core.chunk import Chunk
from engramloop.decoders.features import EpochFeatures, FeatureSettings

FS = 250.0
CH = ("CA1", "Cz")
SETTINGS = FeatureSettings(epoch_s=10.0, hop_s=10.0, eeg_channel="Cz", lfp_channel="CA1")


def _signal(seconds: float = 60.0):
    rng = np.random.default_rng(11)
    n = int(seconds * FS)
    t = np.arange(n) / FS
    x = 20e-6 * rng.standard_normal((n, 2))
    x[:, 1] += 40e-6 * np.sin(2 * np.pi * 1.0 * t)     # delta on the EEG channel
    return t, x


def _run(t, x, size=125):
    fe = EpochFeatures(SETTINGS)
    out = []
    for a in range(0, len(t), size):
        b = min(len(t), a + size)
        out += fe.process(Chunk(np.ascontiguousarray(x[a:b]), t[a:b].copy(), FS, CH,
                                arrival_s=t[b - 1]))
    return fe, out


@pytest.mark.parametrize("value", [np.nan, np.inf])
@pytest.mark.parametrize("bad_s", [1 / FS, 0.01, 1.0])
@pytest.mark.parametrize("which", ["eeg", "both"])
def test_forecaster_features_recover_after_non_finite_samples(value, bad_s, which):
    t, x = _signal()
    clean_fe, clean = _run(t, x)
    bad = x.copy()
    a = int(15.3 * FS)
    n_bad = max(1, int(round(bad_s * FS)))
    cols = [1] if which == "eeg" else [0, 1]
    bad[a:a + n_bad, cols] = value
    fe, got = _run(t, bad)
    assert len(got) == len(clean)
    for v in got:   # never a NaN feature (which predict would silently replace)
        assert np.isfinite(v.values).all(), (v.t_start_s, v.to_dict())
    cov = [v["coverage"] for v in got]
    # the epoch holding the bad samples says they are missing; the others are whole
    assert cov[1] == pytest.approx(1 - n_bad / (10 * FS))
    assert all(c == pytest.approx(1.0) for i, c in enumerate(cov) if i != 1)
    assert fe.n_nonfinite_samples == n_bad * len(cols)
    # epochs after the bad one: band powers as on the clean signal (the filters came back)
    for v, w in zip(got[2:], clean[2:], strict=True):
        for name in ("logp_eeg_delta", "logp_eeg_sigma", "logp_eeg_beta", "logp_lfp_theta"):
            assert v[name] == pytest.approx(w[name], abs=0.02), name


def test_clean_band_power_matches_scipy():
    """The reference for the test above: the stage's clean band power is scipy's."""
    t, x = _signal()
    _, got = _run(t, x)
    sos = butter(2, [11.0, 16.0], btype="bandpass", fs=FS, output="sos")
    y = sosfilt(sos, x[:, 1])
    n = int(10 * FS)
    for k, v in enumerate(got[1:], start=1):
        ref = np.log10(np.mean(y[k * n:(k + 1) * n] ** 2) + 1e-20)
        assert v["logp_eeg_sigma"] == pytest.approx(ref, abs=0.05)


def test_predict_refuses_a_non_finite_feature(tmp_path):
    """``Forecaster.predict`` used to replace a NaN feature by the training mean
    (``nan_to_num`` after normalising) and forecast as if nothing were wrong; the worker
    now fails loudly instead (the loop prints one line and stops, recording kept)."""
    from engramloop.analysis import training as ft
    from engramloop.decoders.forecaster import Forecaster

    nights = [ft.synthetic_night(s, n_epochs=30, epoch_s=10.0) for s in range(3)]
    ck = ft.train(nights, ft.TrainSettings(window_epochs=3, horizon_epochs=3, hidden=8,
                                           epochs=1, seed=1), epoch_s=10.0, hop_s=10.0,
                  model_version="nan-test")
    fc = Forecaster.load(ck.save(tmp_path / "f.pt"))
    t, x = _signal()
    _, vecs = _run(t, x)
    ok = fc.predict(vecs)
    assert np.isfinite(ok.p_below_median)
    bad = vecs[-1].values.copy()
    i = vecs[-1].names.index("logp_eeg_sigma")
    bad[i] = np.nan
    vecs[-1] = type(vecs[-1])(vecs[-1].t_start_s, vecs[-1].t_end_s, bad)
    with pytest.raises(ValueError, match="logp_eeg_sigma"):
        fc.predict(vecs)
