"""The detector rule kernels in decoders._filters against NumPy twins.

``threshold_runs`` and ``rearm_index`` (ripple), ``spindle_runs`` and ``quadrature_sums``
(spindle) replace chains of small NumPy or Python calls per chunk; here each is compared
with its twin in tests/twins.py (the code it replaced: run lengths, the spindle rules, the
re-arm loop), on random blocks processed in pieces of 1, 7, 64 samples and whole (the run lengths
carry across pieces).
"""
from __future__ import annotations

import numpy as np
import pytest
import twins

from engramloop.decoders._filters import (
    median_mad,
    quadrature_sums,
    rearm_index,
    spindle_runs,
    threshold_runs,
)

SIZES = (1, 7, 64, 500)


@pytest.mark.parametrize("piece", SIZES)
def test_threshold_runs_matches_numpy(piece: int) -> None:
    rng = np.random.default_rng(1)
    n, c = 500, 3
    f = np.abs(rng.normal(size=(n, c)))
    med = np.full((n, c), 0.5)
    sd = rng.uniform(0.1, 0.3, size=(n, c))
    sd[:20, 1] = np.nan                       # statistics not ready yet: never above
    k = 2.5
    thr_ref = med + k * sd
    _, runs_ref, _ = twins.threshold_runs(f, med, sd, k, np.zeros(c, dtype=np.int64))
    runs = np.empty((n, c), dtype=np.int64)
    thr = np.empty((n, c))
    carry = np.zeros(c, dtype=np.int64)
    best = 0
    for a in range(0, n, piece):
        b = min(n, a + piece)
        best = max(best, threshold_runs(f[a:b], med[a:b], sd[a:b], k, carry, runs[a:b],
                                        thr[a:b]))
    np.testing.assert_array_equal(runs, runs_ref)
    np.testing.assert_array_equal(thr, thr_ref)
    assert best == runs_ref.max()
    np.testing.assert_array_equal(carry, runs_ref[-1])


@pytest.mark.parametrize("piece", SIZES)
@pytest.mark.parametrize("alpha", [True, False])
def test_spindle_runs_matches_numpy(piece: int, alpha: bool) -> None:
    rng = np.random.default_rng(2)
    n, c = 500, 2
    # slowly varying positive envelopes so that runs of all rules occur
    env = np.abs(np.cumsum(rng.normal(size=(n, c)), axis=0)) * 0.1 + 0.1
    es = env * rng.uniform(0.8, 1.2, size=(n, c))
    eb = env * rng.uniform(1.0, 3.0, size=(n, c))
    pm = np.abs(rng.normal(size=(n, 4 * c))) + np.tile(env, 4)
    ea = env * rng.uniform(0.0, 1.0, size=(n, c)) if alpha else None
    med = np.full((n, c), 0.2)
    sd = np.full((n, c), 0.05)
    sd[:30, 1] = np.nan                       # statistics not ready yet: never above
    k_lo, k_hi, rel, corr, amax, min_n, max_n = 1.0, 3.0, 0.1, 0.4, 0.6, 4, 40
    # artefacts: a few samples far out on each channel, one across a chunk edge
    env[[100, 101, 300], [0, 0, 1]] = 50.0
    k_art, hold_n = 100.0, 25
    ref_runs, ref_fire = twins.spindle_rules(env, eb, es, pm, ea, med, sd, k_lo, k_hi, rel,
                                             corr, amax, min_n, max_n, k_art, hold_n)
    # the test exercises runs, firing samples, runs that never fire, runs too long to
    # fire on, and held samples where a run would otherwise go on
    assert ref_runs.max() > max_n and 0 < ref_fire.sum() < (ref_runs >= min_n).sum()
    assert not ref_fire[ref_runs >= max_n].any()
    assert (ref_runs[100:127, 0] == 0).all() and (env[100:127, 0] > 0.2 + k_lo * 0.05).any()
    hold = np.zeros(c, dtype=np.int64)
    runs = np.empty((n, c), dtype=np.int64)
    fire = np.empty((n, c), dtype=np.int64)
    carry = np.zeros(c, dtype=np.int64)
    longest = n_fire = 0
    for a in range(0, n, piece):
        b = min(n, a + piece)
        lg, nf = spindle_runs(env[a:b], eb[a:b], es[a:b], pm[a:b],
                              None if ea is None else ea[a:b], med[a:b], sd[a:b], k_lo, k_hi,
                              rel, corr, amax, min_n, max_n, k_art, hold_n, carry, hold,
                              runs[a:b], fire[a:b])
        longest, n_fire = max(longest, lg), n_fire + nf
    np.testing.assert_array_equal(runs, ref_runs)
    np.testing.assert_array_equal(fire, ref_fire)
    assert longest == ref_runs.max() and n_fire == ref_fire.sum()
    np.testing.assert_array_equal(carry, ref_runs[-1])


@pytest.mark.parametrize("piece", SIZES)
def test_quadrature_sums_matches_numpy(piece: int) -> None:
    rng = np.random.default_rng(3)
    n, c, w0 = 500, 2, 0.3
    xs, xb = rng.normal(size=(n, c)), rng.normal(size=(n, c))
    ref, ref_amp = twins.quadrature_sums(xs, xb, w0)
    out = np.empty((n, 4 * c))
    amp = np.empty((n, c))
    last = np.zeros(c)
    for a in range(0, n, piece):
        b = min(n, a + piece)
        quadrature_sums(xs[a:b], xb[a:b], last, w0, out[a:b], amp[a:b])
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(amp, ref_amp, rtol=1e-14, atol=0)
    np.testing.assert_array_equal(last, xs[-1])
    # without the amplitude output the sums are the same
    out2, last2 = np.empty((n, 4 * c)), np.zeros(c)
    quadrature_sums(xs, xb, last2, w0, out2, None)
    np.testing.assert_array_equal(out2, out)


@pytest.mark.parametrize("fs", [100.0, 200.0, 2000.0])
def test_quadrature_amplitude_of_a_sine_is_its_rms(fs: float) -> None:
    """At the centre frequency the midpoint and the scaled difference are an exact
    quadrature pair of the sine's amplitude, so the amplitude is its RMS at every sample,
    also at a low sampling rate (where xs[n] against the difference, half a sample apart,
    would ripple by w0 / 2: 40 % at 100 Hz)."""
    f0, a = 13.27, 3.0
    t = np.arange(int(2 * fs)) / fs
    xs = np.ascontiguousarray((a * np.sin(2 * np.pi * f0 * t + 0.3))[:, None])
    amp = np.empty_like(xs)
    last = np.array([a * np.sin(-2 * np.pi * f0 / fs + 0.3)])
    quadrature_sums(xs, xs, last, 2 * np.pi * f0 / fs, np.empty((t.size, 4)), amp)
    np.testing.assert_allclose(amp[:, 0], a / np.sqrt(2), rtol=1e-12)


def test_kernels_reject_bad_buffers() -> None:
    f = np.zeros((10, 2))
    carry = np.zeros(2, dtype=np.int64)
    runs = np.zeros((10, 2), dtype=np.int64)
    with pytest.raises(TypeError, match="runs must have dtype int64"):
        threshold_runs(f, f, f, 1.0, carry, np.zeros((10, 2)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="median must have shape"):
        threshold_runs(f, np.zeros((9, 2)), f, 1.0, carry, runs, np.zeros((10, 2)))
    with pytest.raises(TypeError, match="thr must be a C-contiguous, writable"):
        ro = np.zeros((10, 2))
        ro.flags.writeable = False
        threshold_runs(f, f, f, 1.0, carry, runs, ro)
    with pytest.raises(ValueError, match="pm must have shape"):
        spindle_runs(f, f, f, f, None, f, f, 1.0, 2.0, 0.1, 0.4, 0.6, 3, 30, 1e9, 0, carry,
                     carry, runs,
                     runs)
    with pytest.raises(TypeError, match="fire must have dtype int64"):
        spindle_runs(f, f, f, np.zeros((10, 8)), None, f, f, 1.0, 2.0, 0.1, 0.4, 0.6, 3, 30,
                     1e9, 0, carry, carry, runs, f)
    with pytest.raises(TypeError, match="takes 20 arguments"):
        spindle_runs(f, f, f, None, f, 0.1, 0.4, 0.6, carry, runs)
    # scalar and length arguments are named too, not only the buffers
    with pytest.raises(TypeError, match="spindle_runs: k_hi must be a number, got str"):
        spindle_runs(f, f, f, np.zeros((10, 8)), None, f, f, 1.0, "2", 0.1, 0.4, 0.6, 3, 30,
                     1e9, 0, carry, carry, runs, runs)
    with pytest.raises(TypeError, match="spindle_runs: max_n must be an int, got float"):
        spindle_runs(f, f, f, np.zeros((10, 8)), None, f, f, 1.0, 2.0, 0.1, 0.4, 0.6, 3, 30.0,
                     1e9, 0, carry, carry, runs, runs)
    with pytest.raises(TypeError, match="spindle_runs: carry must be a 1-D array, got NoneType"):
        spindle_runs(f, f, f, np.zeros((10, 8)), None, f, f, 1.0, 2.0, 0.1, 0.4, 0.6, 3, 30,
                     1e9, 0, None, carry, runs, runs)
    with pytest.raises(TypeError, match="quadrature_sums: xs_last must be a 1-D array, got float"):
        quadrature_sums(f, f, 0.0, 1.0, np.zeros((10, 8)), None)
    with pytest.raises(TypeError, match="threshold_runs: k_sd must be a number, got NoneType"):
        threshold_runs(f, f, f, None, carry, runs, np.zeros((10, 2)))
    with pytest.raises(TypeError, match="rearm_index: start must be an int, got str"):
        rearm_index(np.zeros(10), f, f, f, 2.0, 0.0, "0")
    with pytest.raises(TypeError, match="out must be a C-contiguous"):
        quadrature_sums(f, f, np.zeros(2), 1.0, np.zeros((10, 8))[:, ::2], None)
    with pytest.raises(ValueError, match="amp must have shape"):
        quadrature_sums(f, f, np.zeros(2), 1.0, np.zeros((10, 8)), np.zeros((10, 3)))
    with pytest.raises(ValueError, match=r"w0 must be in \(0, pi\)"):
        quadrature_sums(f, f, np.zeros(2), 3.5, np.zeros((10, 8)), None)


def test_kernels_do_not_leak_references() -> None:
    """Buffers are released and returned objects not over-referenced, also on errors."""
    import sys

    f = np.zeros((10, 2))
    carry = np.zeros(2, dtype=np.int64)
    runs = np.zeros((10, 2), dtype=np.int64)
    thr = np.zeros((10, 2))
    out = np.zeros((10, 8))
    last = np.zeros(2)
    fire = np.zeros((10, 2), dtype=np.int64)
    before = [sys.getrefcount(a) for a in (f, carry, runs, thr, out, last, fire)]
    for _ in range(1000):
        threshold_runs(f, f, f, 1.0, carry, runs, thr)
        spindle_runs(f, f, f, out, f, f, thr, 1.0, 2.0, 0.1, 0.4, 0.6, 3, 30, 1e9, 0, carry,
                     carry, runs,
                     fire)
        spindle_runs(f, f, f, out, None, f, thr, 1.0, 2.0, 0.1, 0.4, 0.6, 3, 30, 1e9, 0, carry,
                     carry, runs,
                     fire)
        quadrature_sums(f, f, last, 1.0, out, thr)
        quadrature_sums(f, f, last, 1.0, out, None)
        rearm_index(thr[:, 0].copy(), f, f, f, 2.0, 0.0, 0)
        with pytest.raises(ValueError):
            rearm_index(last, f, f, f, 2.0, 0.0, 0)
        with pytest.raises(ValueError):
            spindle_runs(f, f, f, out, f, f, np.zeros((9, 2)), 1.0, 2.0, 0.1, 0.4, 0.6, 3,
                         30, 1e9, 0, carry, carry, runs, fire)
        with pytest.raises(ValueError):
            quadrature_sums(f, f, last, 1.0, out, np.zeros((9, 2)))
    after = [sys.getrefcount(a) for a in (f, carry, runs, thr, out, last, fire)]
    assert after == before
    # a buffer still exported would make resizing fail
    out.resize((10, 8), refcheck=False)


@pytest.mark.parametrize("length", (1, 2, 3, 4, 5, 10, 3000, 3001))
def test_median_mad_matches_numpy_median(length: int) -> None:
    """The baseline's quickselect median and MAD equal numpy.median exactly, for odd and
    even counts, partly filled rings, ties, and too-short histories (NaN)."""
    rng = np.random.default_rng(length)
    for trial in range(40):
        c = 3
        ring = rng.standard_normal((c, length))
        if trial % 3 == 0:
            ring = np.round(ring)                       # many ties
        counts = rng.integers(0, 2 * length + 1, c).astype(np.int64)
        min_count = 1 + trial % 3
        med, mad = np.empty(c), np.empty(c)
        median_mad(ring, counts, min_count, np.empty(length), med, mad)
        for j in range(c):
            k = min(int(counts[j]), length)
            if k < min_count:
                assert np.isnan(med[j]) and np.isnan(mad[j])
                continue
            h = ring[j, :k]
            m = np.median(h)
            assert med[j] == m
            assert mad[j] == np.median(np.abs(h - m))


def test_median_mad_refuses_wrong_buffers() -> None:
    ring = np.zeros((2, 10))
    with pytest.raises(ValueError, match="must have shape"):
        median_mad(ring, np.zeros(2, dtype=np.int64), 1, np.empty(9), np.empty(2),
                   np.empty(2))
    with pytest.raises(TypeError, match="counts"):
        median_mad(ring, np.zeros(2), 1, np.empty(10), np.empty(2), np.empty(2))


@pytest.mark.parametrize("cols", (1, 3))
def test_rearm_index_matches_python_loop(cols: int) -> None:
    rng = np.random.default_rng(7)
    for trial in range(400):
        n = int(rng.integers(1, 30))
        t = 10.0 + np.arange(n) / 2000.0
        f = rng.normal(2.0, 1.0, (n, cols))
        f[rng.random((n, cols)) < 0.05] = np.nan
        m = rng.normal(0.0, 0.1, (n, cols))
        sd = rng.uniform(0.5, 1.0, (n, cols))
        k = float(rng.choice([0.5, 2.0, 4.0]))
        after = float(t[0] + rng.uniform(-0.002, n / 2000.0 + 0.002))
        start = int(rng.integers(-1, n + 2))
        got = rearm_index(t, f, m, sd, k, after, start)
        assert got == twins.rearm_index(t, f, m, sd, k, after, start), trial
    # NaN in the feature re-arms (a NaN envelope is not above the re-arm level)
    t = np.arange(3) / 2000.0
    f = np.array([[9.0], [np.nan], [9.0]])
    z = np.zeros((3, 1))
    assert rearm_index(t, f, z, z + 1.0, 2.0, 0.0, 0) == 1
    assert rearm_index(t, f, z, z + 1.0, 2.0, 0.0, 2) == -1


def test_rearm_index_refuses_wrong_buffers() -> None:
    t, f = np.zeros(4), np.zeros((4, 2))
    with pytest.raises(ValueError, match="t must have shape"):
        rearm_index(np.zeros(5), f, f, f, 2.0, 0.0, 0)
    with pytest.raises(ValueError, match="sd must have shape"):
        rearm_index(t, f, f, np.zeros((4, 1)), 2.0, 0.0, 0)
    with pytest.raises(TypeError, match="median must be a C-contiguous"):
        rearm_index(t, f, np.zeros((4, 4))[:, ::2], f, 2.0, 0.0, 0)
    with pytest.raises(ValueError, match="feature must be a 1-D or 2-D array, got 3-D"):
        rearm_index(t, np.zeros((4, 2, 1)), f, f, 2.0, 0.0, 0)
    with pytest.raises(TypeError, match="7 arguments"):
        rearm_index(t, f, f, f, 2.0, 0.0)


# ------------------------------------------------------------------ SpindlePlan

_WORK_WIDTHS = (1, 1, 1, 1, 4, 4, 1, 1, 1, 1, 1, 1)     # xb eb xs es sums pm amp env xa ea med sd


def _work_views(work: np.ndarray, cap: int, k: int) -> list[np.ndarray]:
    """The blocks of a SpindlePlan's work array, as run's docstring lays them out."""
    out, row = [], 0
    for w in _WORK_WIDTHS:
        out.append(work[row:row + w * cap].reshape(cap, w * k))
        row += w * cap
    return out


class _BlockSetup:
    """A SpindlePlan's arguments: banks, work arrays, baseline state."""

    def __init__(self, fs: float, k: int, alpha: bool, cap: int, cols: list[int],
                 excl: float = np.inf) -> None:
        from engramloop.decoders._filters import FilterBank
        from engramloop.decoders.filters import butter_bandpass

        self.fs, self.k, self.cap = fs, k, cap
        self.win, self.ewin = int(0.1 * fs), int(0.015 * fs)
        self.sos = {"broad": butter_bandpass(1.0, 30.0, fs, 1),
                    "sigma": butter_bandpass(11.0, 16.0, fs, 1),
                    "alpha": butter_bandpass(7.0, 10.0, fs, 3)}
        self.broad = FilterBank(self.sos["broad"], k, self.win)
        self.sigma = FilterBank(self.sos["sigma"], k, self.win)
        self.alpha = FilterBank(self.sos["alpha"], k, self.win) if alpha else None
        self.pm = FilterBank(np.zeros((0, 6)), 4 * k, self.win)
        self.env = FilterBank(np.zeros((0, 6)), k, self.ewin)
        self.w0 = 2 * np.pi * np.sqrt(11.0 * 16.0) / fs
        self.cols = np.array(cols, dtype=np.int64)
        self.xs_last = np.zeros(k)
        self.work = np.full((18 * cap, k), np.nan)
        self.iwork = np.full((2 * cap, k), -7, dtype=np.int64)
        self.runstate = np.zeros((2, k), dtype=np.int64)
        self.step, self.length = 5, 64
        self.ring = np.zeros((k, self.length))
        self.pos = np.zeros(k, dtype=np.int64)
        self.count = np.zeros(k, dtype=np.int64)
        self.excl = np.full(k, excl)
        self.median = np.full(k, 1.0e-6)
        self.sd = np.full(k, 0.4e-6)
        self.rules = (1.0, 3.0, 0.05, 0.4, 0.6, 4, 400, 1e3, 10)  # k_lo .. hold_n

    def args(self, alpha_obj: object = "own") -> tuple:
        alpha = self.alpha if alpha_obj == "own" else alpha_obj
        return (self.cols, self.broad, self.sigma, alpha, self.pm, self.env, self.w0,
                self.xs_last, self.work, self.iwork, self.runstate, self.step, self.ring,
                self.pos, self.count, self.excl, self.median, self.sd, *self.rules)


def _spindle_signal(fs: float, n: int, n_cols: int, seed: int) -> np.ndarray:
    """Columns of white noise with 13 Hz bursts (runs and firing samples) and a 9 Hz
    stretch (the alpha veto), microvolt scale, volts."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / fs
    x = rng.normal(0.0, 1e-6, (n, n_cols))
    for c in range(n_cols):
        for on in np.arange(0.5 + 0.3 * c, t[-1] - 0.6, 1.7):
            m = (t >= on) & (t < on + 0.6)
            x[m, c] += 6e-6 * np.sin(np.pi * (t[m] - on) / 0.6) ** 2 * np.sin(2 * np.pi * 13 * t[m])
        m = (t >= 3.0) & (t < 4.5)
        x[m, c] += 5e-6 * np.sin(2 * np.pi * 9.0 * t[m])
    return np.ascontiguousarray(x)


@pytest.mark.parametrize("piece", SIZES)
@pytest.mark.parametrize("alpha", [True, False])
@pytest.mark.parametrize("cols", [[2], [3, 0]])
def test_spindle_plan_matches_numpy(piece: int, alpha: bool, cols: list[int]) -> None:
    """The whole fused chunk (SpindlePlan.run) -- pick, filters, envelopes, quadrature,
    baseline push, rules -- against scipy and NumPy, in pieces of 1, 7, 64 samples and
    whole (the filter, RMS, quadrature, ring and run state carry across pieces)."""
    from engramloop.decoders._filters import SpindlePlan

    fs, n, k = 500.0, 2500, len(cols)
    samples = _spindle_signal(fs, n, 4, seed=len(cols))
    st = _BlockSetup(fs, k, alpha, cap=max(piece, 64), cols=cols, excl=2.5e-6)
    ref = twins.spindle_block(samples[:, cols], st.sos, st.w0, st.win, st.ewin, st.median,
                              st.sd, st.step, st.length, st.excl, st.rules,
                              st.alpha is not None)
    # the test exercises runs, fires, the alpha veto, the exclusion from the baseline
    assert 0 < ref["fire"].sum() < (ref["runs"] >= st.rules[5]).sum()
    assert 0 < ref["count"].min() < n // st.step
    got = {key: np.empty_like(val) for key, val in ref.items() if np.ndim(val) == 2}
    call = SpindlePlan(*st.args()).run
    longest = n_fire = 0
    for a in range(0, n, piece):
        b = min(n, a + piece)
        lg, nf = call(samples[a:b], a, True)
        longest, n_fire = max(longest, lg), n_fire + nf
        v = _work_views(st.work, st.cap, k)
        m = b - a
        for key, view in zip(("xb", "eb", "xs", "es", "sums", "pm", "amp", "env", "xa", "ea",
                              "med", "sd"), v, strict=True):
            if key in got:
                got[key][a:b] = view[:m]
        got["runs"][a:b], got["fire"][a:b] = st.iwork[:m], st.iwork[st.cap:st.cap + m]
    for key in ("xb", "xs", "sums", "amp", "xa"):
        if key in ref:
            np.testing.assert_allclose(got[key], ref[key], rtol=1e-9, atol=1e-18, err_msg=key)
    for key in ("eb", "es", "pm", "env", "ea"):          # running sums vs cumulative sums
        if key in ref:
            np.testing.assert_allclose(got[key], ref[key], rtol=1e-7, atol=1e-15, err_msg=key)
    np.testing.assert_array_equal(got["med"], ref["med"])
    np.testing.assert_array_equal(got["sd"], ref["sd"])
    np.testing.assert_array_equal(got["runs"], ref["runs"])
    np.testing.assert_array_equal(got["fire"], ref["fire"])
    assert longest == ref["runs"].max() and n_fire == ref["fire"].sum()
    np.testing.assert_allclose(st.ring, ref["ring"], rtol=1e-7, atol=1e-15)
    np.testing.assert_array_equal(st.pos, ref["pos"])
    np.testing.assert_array_equal(st.count, ref["count"])
    np.testing.assert_array_equal(st.runstate[0], ref["runs"][-1])
    np.testing.assert_allclose(st.xs_last, ref["xs"][-1], rtol=1e-9, atol=1e-18)


def test_spindle_plan_without_rules_only_filters() -> None:
    """rules=False runs the filters and envelopes exactly as with rules (same banks' state
    afterwards), writes nothing else and returns None."""
    from engramloop.decoders._filters import SpindlePlan

    fs, n = 500.0, 300
    samples = _spindle_signal(fs, n, 3, seed=4)
    a = _BlockSetup(fs, 2, True, cap=64, cols=[2, 1])
    b = _BlockSetup(fs, 2, True, cap=64, cols=[2, 1])
    b.work[16 * 64:] = -1.0                               # med, sd: must stay untouched
    pa, pb = SpindlePlan(*a.args()), SpindlePlan(*b.args())
    for s in range(0, n, 50):
        pa.run(samples[s:s + 50], s, True)
        assert pb.run(samples[s:s + 50], s, False) is None
        np.testing.assert_array_equal(b.work[:16 * 64], a.work[:16 * 64])
    np.testing.assert_array_equal(b.work[16 * 64:], -1.0)
    np.testing.assert_array_equal(b.iwork, -7)
    assert b.count.sum() == 0 and b.runstate.sum() == 0
    np.testing.assert_array_equal(b.xs_last, a.xs_last)


def test_spindle_plan_refuses_wrong_arguments() -> None:
    """Every bound argument is checked and named when the plan is built, the chunk when it
    runs; a refused run leaves the banks usable (none stays marked busy) and changes
    nothing."""
    from engramloop.decoders._filters import FilterBank, SpindlePlan

    st = _BlockSetup(500.0, 1, True, cap=16, cols=[1])
    x = np.zeros((10, 3))

    def call(**kw):
        names = ("cols", "broad", "sigma", "alpha", "pm", "env", "w0", "xs_last", "work",
                 "iwork", "runstate", "step", "ring", "pos", "count", "excl", "median", "sd",
                 "k_lo", "k_hi", "rel_min", "corr_min", "alpha_max", "min_n", "max_n",
                 "k_art", "hold_n")
        args = dict(zip(names, st.args(), strict=True))
        samples, first, rules = kw.pop("samples", x), kw.pop("first", 0), kw.pop("rules", True)
        args.update(kw)
        return SpindlePlan(*args.values()).run(samples, first, rules)

    with pytest.raises(TypeError, match="SpindlePlan.run: first must be an int, got float"):
        call(first=0.0)
    with pytest.raises(TypeError, match="SpindlePlan: k_hi must be a number, got str"):
        call(k_hi="3")
    with pytest.raises(TypeError, match="SpindlePlan: hold_n must be an int, got NoneType"):
        call(hold_n=None)
    with pytest.raises(ValueError, match=r"SpindlePlan: w0 must be in \(0, pi\)"):
        call(w0=4.0)
    with pytest.raises(ValueError, match="SpindlePlan: w0 .* and step >= 1, .* step 0"):
        call(step=0)
    with pytest.raises(TypeError,
                       match="SpindlePlan: broad must be a FilterBank, got numpy.ndarray"):
        call(broad=np.zeros(3))
    with pytest.raises(TypeError, match="SpindlePlan: alpha must be a FilterBank, got int"):
        call(alpha=3)
    with pytest.raises(ValueError, match="SpindlePlan: pm must be a bank of 4 channels"):
        call(pm=FilterBank(np.zeros((0, 6)), 1, 5))
    with pytest.raises(ValueError, match="env must be a bank of 1 channels with an RMS window "
                                         "and no sections"):
        call(env=FilterBank(st.sos["sigma"], 1, 5))
    with pytest.raises(ValueError, match="sigma must be a bank of 1 channels with an RMS window"):
        call(sigma=FilterBank(st.sos["sigma"], 1, 0))
    with pytest.raises(ValueError, match="broad and sigma must be distinct"):
        call(sigma=st.broad)
    with pytest.raises(TypeError, match="cols must be a 1-D int64 array"):
        call(cols=np.array([1.0]))
    with pytest.raises(ValueError, match="SpindlePlan: cols must hold 1 column indices"):
        call(cols=np.array([0, 1]))
    with pytest.raises(ValueError, match=r"SpindlePlan: cols\[0\] = -1 is negative"):
        call(cols=np.array([-1]))
    with pytest.raises(ValueError, match=r"samples \(10, 3\) must have at most 16 rows .* "
                                         r"and column 3"):
        call(cols=np.array([3]))
    with pytest.raises(TypeError, match="samples must be a 2-D float64 array"):
        call(samples=np.zeros(10))
    with pytest.raises(TypeError, match="samples must be a 2-D float64 array"):
        call(samples=np.zeros((10, 3), dtype=np.float32))
    with pytest.raises(TypeError, match="samples must be a C-contiguous float64 array"):
        call(samples=np.zeros((10, 6))[:, ::2])
    with pytest.raises(ValueError, match=r"samples \(17, 3\) must have at most 16 rows"):
        call(samples=np.zeros((17, 3)))
    with pytest.raises(ValueError, match=r"work must have shape \(18 \* cap, 1\) with cap >= 1"):
        call(work=np.zeros((17 * 16, 1)))
    with pytest.raises(TypeError, match="work must have dtype float64"):
        call(work=np.zeros((18 * 16, 1), dtype=np.int64))
    with pytest.raises(ValueError, match="samples must not share memory with work"):
        call(samples=st.work[:10].reshape(10, 1), cols=np.array([0]))
    with pytest.raises(ValueError, match=r"iwork must have shape \(32, 1\)"):
        call(iwork=np.zeros((16, 1), dtype=np.int64))
    with pytest.raises(TypeError, match="iwork must have dtype int64"):
        call(iwork=np.zeros((32, 1)))
    with pytest.raises(TypeError, match="runstate must have dtype int64"):
        call(runstate=np.zeros((2, 1)))
    with pytest.raises(ValueError, match="xs_last must have shape"):
        call(xs_last=np.zeros(2))
    with pytest.raises(TypeError, match="xs_last must be a C-contiguous, writable"):
        ro = np.zeros(1)
        ro.flags.writeable = False
        call(xs_last=ro)
    with pytest.raises(ValueError, match=r"ring must be a float64 array of shape \(1, L\)"):
        call(ring=np.zeros((2, 8)))
    with pytest.raises(TypeError, match="pos must have dtype int64"):
        call(pos=np.zeros(1))
    with pytest.raises(ValueError, match=r"pos\[0\] = 64 is outside the ring"):
        call(pos=np.array([64]))
    with pytest.raises(ValueError, match="sd must have shape"):
        call(sd=np.zeros(2))
    # nothing ran and no bank is left busy: a good call still works, from the start
    assert st.count.sum() == 0 and np.isnan(st.work).all()
    assert call() == (0, 0)
    assert st.count.sum() == 2


def test_spindle_plan_does_not_leak_references() -> None:
    import sys

    from engramloop.decoders._filters import SpindlePlan

    st = _BlockSetup(500.0, 2, True, cap=16, cols=[1, 0])
    x = _spindle_signal(500.0, 10, 2, seed=1)
    objs = (x, st.cols, st.work, st.iwork, st.xs_last, st.runstate, st.ring, st.pos,
            st.count, st.excl, st.median, st.sd, st.broad, st.sigma, st.alpha, st.pm, st.env)
    before = [sys.getrefcount(o) for o in objs]
    plan = SpindlePlan(*st.args())
    for i in range(1000):
        plan.run(x, 10 * i, True)
        plan.run(x, 10 * i, False)
        st.pos[0] = 99
        with pytest.raises(ValueError):
            plan.run(x, 0, True)
        st.pos[0] = 0
        with pytest.raises(ValueError):
            plan.run(np.zeros((20, 2)), 0, True)
    del plan
    assert [sys.getrefcount(o) for o in objs] == before
    # no buffer is still exported (resizing would fail)
    for a in (st.work, st.iwork, st.xs_last, st.runstate, st.pos, st.count):
        a.resize(a.shape, refcheck=False)


def test_spindle_plan_checks_once_and_names_the_problem() -> None:
    from engramloop.decoders._filters import SpindlePlan

    st = _BlockSetup(500.0, 2, True, cap=16, cols=[1, 0])
    args = list(st.args())
    plan = SpindlePlan(*args)
    x = _spindle_signal(500.0, 10, 2, seed=1)
    assert plan.run(x, 0, False) is None
    # built: every buffer checked, the error names it
    with pytest.raises(TypeError, match="work must have dtype float64"):
        SpindlePlan(*args[:8], st.work.astype(np.float32), *args[9:])
    with pytest.raises(TypeError, match="pos must be a C-contiguous, writable int64"):
        ro = st.pos.copy()
        ro.setflags(write=False)
        SpindlePlan(*args[:13], ro, *args[14:])
    with pytest.raises(ValueError, match="SpindlePlan: work and iwork share memory"):
        SpindlePlan(*args[:9], st.work[:32].view(np.int64), *args[10:])
    with pytest.raises(ValueError, match="SpindlePlan: sigma must be a bank of 2 channels"):
        SpindlePlan(*args[:2], st.pm, *args[3:])
    with pytest.raises(TypeError, match="takes 27 arguments"):
        SpindlePlan(*args[:-1])
    # per run: only the chunk (and the ring positions)
    with pytest.raises(ValueError, match=r"at most 16 rows \(the plan's work\) and column 1"):
        plan.run(np.zeros((17, 2)), 0, True)
    with pytest.raises(ValueError, match="and column 1"):
        plan.run(np.zeros((10, 1)), 0, True)
    with pytest.raises(TypeError, match="samples must be a 2-D float64"):
        plan.run(x.astype(np.float32), 0, True)
    with pytest.raises(ValueError, match="first must be >= 0"):
        plan.run(x, -1, True)
    st.pos[0] = 10 ** 6
    with pytest.raises(ValueError, match=r"pos\[0\] = 1000000 is outside the ring"):
        plan.run(x, 0, True)
    st.pos[0] = 0
    assert plan.run(x, 0, True) == (0, 0)
    with pytest.raises(RuntimeError, match="__init__ was not called"):
        SpindlePlan.__new__(SpindlePlan).run(x, 0, True)
    # a bound bank re-initialised with another channel count: refused, not read past its
    # arrays (and a bank cannot be re-initialised while a kernel runs on it)
    from engramloop.decoders._filters import FilterBank

    FilterBank.__init__(st.pm, np.zeros((0, 6)), 4, 8)
    with pytest.raises(RuntimeError, match="SpindlePlan.run: a bound bank .* re-initialised"):
        plan.run(x, 0, True)
