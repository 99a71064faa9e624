"""The robust running baseline against NumPy medians of the same decimated history, and
its chunk-size independence."""
from __future__ import annotations

import numpy as np
import pytest

from decoders.baseline import MAD_TO_SD, RobustBaseline, TimeRing


def test_statistics_equal_numpy_median_of_kept_samples() -> None:
    fs, n = 100.0, 3000
    x = np.abs(np.random.default_rng(0).standard_normal((n, 2)))
    b = RobustBaseline(2, fs, history_s=5.0, step_s=0.05, update_s=1.0, exclude_sd=1e9,
                       min_fill=1.0)
    med, sd = np.empty((n, 2)), np.empty((n, 2))
    b.process(x, med, sd)
    kept = x[::5]                  # one sample per 0.05 s
    # stats computed at update point u (index 99, 199, ...) apply from u + 1
    for u in (599, 1299, 2999):
        hist = kept[(u // 5) + 1 - 100:(u // 5) + 1]
        ref_med = np.median(hist, axis=0)
        ref_sd = np.median(np.abs(hist - ref_med), axis=0) * MAD_TO_SD
        got_med = med[u + 1] if u + 1 < n else b.median
        got_sd = sd[u + 1] if u + 1 < n else b.sd
        assert np.allclose(got_med, ref_med, rtol=0, atol=1e-15)
        assert np.allclose(got_sd, ref_sd, rtol=0, atol=1e-15)
    assert np.all(np.isnan(med[:500]))          # history not yet full (min_fill=1)


def test_exclusion_keeps_events_out() -> None:
    fs = 100.0
    rng = np.random.default_rng(1)
    x = np.abs(rng.standard_normal((4000, 1)))
    x[2000:3000:7] += 50.0                       # an "event" burst
    b = RobustBaseline(1, fs, history_s=10.0, step_s=0.01, update_s=0.5, exclude_sd=3.0)
    med, sd = np.empty_like(x), np.empty_like(x)
    b.process(x, med, sd)
    assert med[-1, 0] < 1.0 and sd[-1, 0] < 1.0  # the burst did not inflate the baseline


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunk_size_independent(chunk: int) -> None:
    fs = 200.0
    x = np.abs(np.random.default_rng(2).standard_normal((3000, 3)))
    ref_m, ref_s = np.empty_like(x), np.empty_like(x)
    RobustBaseline(3, fs, history_s=4.0, update_s=0.5, update_phase=0.3).process(
        x, ref_m, ref_s)
    b = RobustBaseline(3, fs, history_s=4.0, update_s=0.5, update_phase=0.3)
    m, s = np.empty_like(x), np.empty_like(x)
    for i in range(0, 3000, chunk):
        b.process(x[i:i + chunk], m[i:i + chunk], s[i:i + chunk])
    np.testing.assert_array_equal(m, ref_m)
    np.testing.assert_array_equal(s, ref_s)


def test_time_ring() -> None:
    r = TimeRing(5)
    r.write(np.arange(3.0))
    r.write(np.arange(3.0, 12.0))               # longer than the ring
    assert r.at(11) == 11.0 and r.at(7) == 7.0
    assert r.at(2) == 7.0                        # older than kept: the oldest kept one


def test_make_detectors_leaves_out_detectors_without_channels() -> None:
    from controller.config import loads_config
    from decoders.detectors import make_detectors

    cfg = loads_config('[source]\nchannels = ["Fp1", "C3"]\n'
                       '[detectors.so]\nchannels = ["Fp1"]\n')
    assert [type(d).__name__ for d in make_detectors(cfg)] == ["SlowOscDetector"]
    cfg = loads_config('[detectors.spindle]\nenabled = false\n')
    assert [type(d).__name__ for d in make_detectors(cfg)] == ["RippleDetector",
                                                               "SlowOscDetector"]
    names = [type(d).__name__ for d in make_detectors(cfg, channels=("CA1",))]
    assert names == ["RippleDetector"]
