"""The robust running baseline against NumPy medians of the same decimated history, and
its chunk-size independence."""
from __future__ import annotations

import numpy as np
import pytest

from engramloop.decoders.baseline import MAD_TO_SD, RobustBaseline, TimeRing


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


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_hold_is_the_running_max_of_the_update_points(chunk: int | None) -> None:
    """With hold_s, the statistics in force are the largest median and SD of the last
    hold_s seconds of update points of the same baseline without hold (the exclusion
    follows the current statistics, so both keep the same history): a drop of the feature
    -- wake or REM after NREM, for a sigma envelope -- lowers them only once it has lasted
    hold_s. Checked against a NumPy running max of the unheld baseline's update points."""
    fs, n = 100.0, 12000
    rng = np.random.default_rng(4)
    level = np.where(np.arange(n) < 6000, 1.0, 0.3)          # NREM, then a quiet stretch
    x = np.abs(rng.standard_normal((n, 2))) * level[:, None]
    kw = dict(history_s=10.0, step_s=0.05, update_s=1.0, update_phase=0.3)
    m0, s0 = np.empty_like(x), np.empty_like(x)
    RobustBaseline(2, fs, **kw).process(x, m0, s0)
    b = RobustBaseline(2, fs, hold_s=20.0, **kw)
    m, s = np.empty_like(x), np.empty_like(x)
    step = chunk or n
    for i in range(0, n, step):
        b.process(x[i:i + step], m[i:i + step], s[i:i + step])
    # the update points: where the unheld statistics may change (rows after each)
    upd = np.arange(n)[(np.arange(n) + 1 - b._offset) % b.update_every == 0]
    for row_ref, row_got in ((m0, m), (s0, s)):
        stats = row_ref[np.minimum(upd + 1, n - 1)]           # in force after each point
        for k, u in enumerate(upd[:-1]):
            window = stats[max(0, k + 1 - b.hold_n):k + 1]
            want = np.nanmax(window, axis=0) if not np.isnan(window).all() else np.nan
            np.testing.assert_array_equal(row_got[u + 1], want)
    # 20 s of hold + ~5 s for the 10 s running median to follow: still the NREM level at
    # 20 s into the quiet stretch, the quiet level after 30 s
    # (median of |N(0, 1)|: 0.67 in NREM, 0.2 quiet)
    assert np.all(m[6000 + 2000] > 0.45) and np.all(m[6000 + 3000] < 0.3)
    assert np.all(m0[6000 + 1000] < 0.3)


def test_time_ring() -> None:
    r = TimeRing(5)
    r.write(np.arange(3.0))
    r.write(np.arange(3.0, 12.0))               # longer than the ring
    assert r.at(11) == 11.0 and r.at(7) == 7.0
    assert r.at(2) == 7.0                        # older than kept: the oldest kept one


def test_make_detectors_refuses_missing_channels_unless_told_to_skip() -> None:
    """An enabled detector whose channels the source lacks is an error naming it (issue
    18 point 2); offline tools may ask to leave such detectors out instead."""
    from engramloop.controller.config import loads_config
    from engramloop.core.schema import ConfigError
    from engramloop.decoders.detectors import make_detectors

    cfg = loads_config('[source]\nchannels = ["Fp1", "C3"]\n'
                       '[detectors.so]\nchannels = ["Fp1"]\n')
    with pytest.raises(ConfigError, match=r"detectors.ripple.channels: the ripple detector "
                                          r"needs channel\(s\) 'CA1'.*it has Fp1, C3"):
        make_detectors(cfg)
    assert [type(d).__name__ for d in make_detectors(cfg, missing="skip")] == [
        "SlowOscDetector"]
    cfg = loads_config('[detectors.spindle]\nenabled = false\n')
    assert [type(d).__name__ for d in make_detectors(cfg)] == ["RippleDetector",
                                                               "SlowOscDetector"]
    names = [type(d).__name__ for d in make_detectors(cfg, channels=("CA1",),
                                                      missing="skip")]
    assert names == ["RippleDetector"]
    cfg = loads_config('[detectors.spindle]\nenabled = false\n[detectors.so]\n'
                       'enabled = false\n')
    assert [type(d).__name__ for d in make_detectors(cfg, channels=("CA1",))] == [
        "RippleDetector"]


@pytest.mark.parametrize("chunk", [1, 7, 10, 64])
@pytest.mark.parametrize("n_ch", [1, 3])
def test_process_runs_equals_process_then_threshold_runs(chunk: int, n_ch: int) -> None:
    """The one-call path (C, blocks without an update point) against the two-step one:
    the same statistics, ring, counts, thresholds and run lengths, bit for bit, with
    events that the exclusion keeps out and NaN samples (never kept)."""
    from engramloop.decoders._filters import threshold_runs

    rng = np.random.default_rng(3)
    n = 6000
    x = np.abs(rng.standard_normal((n, n_ch)))
    x[2000:2300] += 6.0                      # an "event": above the exclusion level
    x[4100, :] = np.nan
    kw = dict(history_s=1.0, step_s=0.005, update_s=0.1, exclude_sd=2.0, min_fill=0.2)
    a, b = RobustBaseline(n_ch, 1000.0, **kw), RobustBaseline(n_ch, 1000.0, **kw)
    carry_a, carry_b = np.zeros(n_ch, np.int64), np.zeros(n_ch, np.int64)
    outs = {k: np.empty((n, n_ch)) for k in ("ma", "sa", "ta", "mb", "sb", "tb")}
    runs_a, runs_b = np.empty((n, n_ch), np.int64), np.empty((n, n_ch), np.int64)
    for i in range(0, n, chunk):
        blk = np.ascontiguousarray(x[i:i + chunk])
        s = slice(i, i + blk.shape[0])
        la = a.process_runs(blk, outs["ma"][s], outs["sa"][s], 2.5, carry_a, runs_a[s],
                            outs["ta"][s])
        b.process(blk, outs["mb"][s], outs["sb"][s])
        lb = threshold_runs(blk, outs["mb"][s], outs["sb"][s], 2.5, carry_b, runs_b[s],
                            outs["tb"][s])
        assert la == lb
    for k in ("m", "s", "t"):
        np.testing.assert_array_equal(outs[k + "a"], outs[k + "b"])
    np.testing.assert_array_equal(runs_a, runs_b)
    np.testing.assert_array_equal(a._ring, b._ring)
    np.testing.assert_array_equal(a._count, b._count)
    np.testing.assert_array_equal(a._pos, b._pos)
    assert a.index == b.index == n and a.n_updates == b.n_updates > 10
    assert runs_a.max() > 100                # the event was above threshold


def test_baseline_runs_refuses_a_bad_ring_position() -> None:
    from engramloop.decoders._filters import baseline_runs

    b = RobustBaseline(1, 1000.0, history_s=0.1, step_s=0.01)
    b._pos[0] = b.length                     # corrupted: one past the end
    z = np.zeros((4, 1))
    with pytest.raises(ValueError, match="pos"):
        baseline_runs(z, 0, b.step, b._ring, b._pos, b._count, b._excl, b.median, b.sd, 3.0,
                      np.zeros(1, np.int64), z.copy(), z.copy(), z.copy(),
                      np.zeros((4, 1), np.int64))


def test_first_at_or_after_against_numpy() -> None:
    from engramloop.decoders.baseline import first_at_or_after

    rng = np.random.default_rng(6)
    for _ in range(300):
        n = int(rng.integers(1, 30))
        t = np.sort(rng.random(n)) * 10.0
        if rng.random() < 0.3:
            t[rng.integers(0, n)] = np.nan
        if rng.random() < 0.3:
            rng.shuffle(t)                      # out of order: the first, not the earliest
        at, start = float(rng.random() * 10.0), int(rng.integers(0, n + 2))
        for tt in (t, t.astype(np.float32), np.repeat(t, 2)[::2]):
            ok = np.flatnonzero(tt[start:] >= at)
            want = start + int(ok[0]) if ok.size else -1
            assert first_at_or_after(tt, at, start) == want
    from engramloop.decoders._filters import first_at_or_after as c_first

    with pytest.raises(TypeError, match="t must have dtype float64"):
        c_first(np.zeros(3, dtype=np.float32), 1.0, 0)
    with pytest.raises(TypeError, match="first_at_or_after: time_s must be a number"):
        c_first(np.zeros(3), "1", 0)
