"""The Python API's detectors refuse arrays they would otherwise read wrongly, silently.

Each case below returned an empty or plausible-looking table before: an MNE-style
(n_channels, n_times) array was read as thousands of 2-sample channels; a signal shorter
than the detector's calibration returned no events without saying the detector never
armed; a NumPy masked array lost its mask (the masked samples were detected on); a
complex array lost its imaginary part with only a NumPy warning; ``fs=True`` was read as
1 Hz; a NaN ``t0_s`` put every event at NaN seconds; duplicate ``ch_names`` made the
``channel`` column ambiguous.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

import engramloop

FS = 200.0


def signal(seconds: float = 30.0, n_ch: int = 1) -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.standard_normal((int(seconds * FS), n_ch)) * 20e-6


def test_an_mne_style_channels_by_times_array_is_refused_naming_the_transpose():
    x = signal(30.0, 2).T  # (2, 6000): what mne.io.Raw.get_data() returns
    with pytest.raises(ValueError, match=r"x\.T"):
        engramloop.detect_spindles(x, FS)


def test_a_signal_shorter_than_the_calibration_is_an_error_not_an_empty_table():
    x = signal(4.0)  # spindle calibration_s is 10 s by default
    with pytest.raises(ValueError, match="calibrat"):
        engramloop.detect_spindles(x, FS)
    # long enough: a (possibly empty) table, no error
    engramloop.detect_spindles(signal(12.0), FS)


def test_a_masked_array_is_refused_rather_than_unmasked():
    x = signal()[:, 0]
    m = np.ma.masked_array(x, mask=np.zeros(x.shape, bool))
    m[100:200] = np.ma.masked
    with pytest.raises(ValueError, match="masked"):
        engramloop.detect_spindles(m, FS)


def test_a_complex_array_is_refused():
    with pytest.raises(ValueError, match="complex"):
        engramloop.detect_spindles(signal().astype(complex), FS)


@pytest.mark.parametrize("fs", [True, np.bool_(True)])
def test_a_boolean_sampling_rate_is_refused(fs):
    with pytest.raises(ValueError, match="fs"):
        engramloop.detect_spindles(signal(), fs)


@pytest.mark.parametrize("t0", [math.nan, math.inf, "0"])
def test_a_non_finite_or_non_numeric_t0_is_refused(t0):
    with pytest.raises(ValueError, match="t0_s"):
        engramloop.detect_spindles(signal(), FS, t0_s=t0)


def test_duplicate_channel_names_are_refused():
    with pytest.raises(ValueError, match="ch_names"):
        engramloop.detect_spindles(signal(30.0, 2), FS, ch_names=["Cz", "Cz"])
