"""Kernels of ``decoders._filters`` against their NumPy twins (tests/twins.py) on the same
random input, fed in pieces of 1, 7, 64 samples and whole; the twins are written from the
kernels' documented steps, so these pin the C code to what its docstring says.

Covered here: the FilterBank's pick_rms, baseline_runs, RipplePlan, ripple_candidate,
first_at_or_after, median_mad and EchtPlan (push and estimate). The other kernels meet
their twins in test_filters.py (FilterBank), test_filters_detect.py (threshold_runs,
spindle_runs, quadrature_sums, rearm_index, SpindlePlan) and
test_filters_so_block.py (SoPlan); test_plan_twins.py runs the detectors with each plan
and with its twin plan.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.signal as ss
import twins

from engramloop.decoders._filters import (
    EchtPlan,
    FilterBank,
    RipplePlan,
    baseline_runs,
    first_at_or_after,
    median_mad,
    ripple_candidate,
)

SIZES = (1, 7, 64, None)            # None: the whole signal in one call
FS = 2000.0


def _pieces(n: int, size: int | None) -> list[tuple[int, int]]:
    size = size or n
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def _sos(lo: float, hi: float, fs: float = FS, order: int = 2) -> np.ndarray:
    return ss.butter(order, (lo, hi), btype="bandpass", fs=fs, output="sos")


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("weights", [(), (0.7, -0.3)])
def test_pick_rms_matches_twin(size: int | None, weights: tuple) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((700, 5))
    cols = np.array([4, 1, 2] if weights else [4, 2], dtype=np.int64)
    w = np.array(weights, dtype=np.float64)
    sos = _sos(150.0, 250.0)
    bank, twin = FilterBank(sos, 2, 48), twins.NumpyFilterBank(sos, 2, 48)
    for a, b in _pieces(len(x), size):
        f, e = np.empty((b - a, 2)), np.empty((b - a, 2))
        bank.pick_rms(x[a:b], cols, w, f, e)
        tf, te = twin.pick_rms(x[a:b], cols, w)
        np.testing.assert_allclose(f, tf, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(e, te, rtol=1e-9, atol=1e-15)


def _baseline_state(c: int, length: int, rng) -> dict:
    return dict(ring=rng.standard_normal((c, length)),
                pos=rng.integers(0, length, c).astype(np.int64),
                count=rng.integers(0, 3 * length, c).astype(np.int64),
                excl=np.array([np.inf, 1.0, 0.5][:c]),
                median=rng.uniform(0.2, 0.4, c), sd=rng.uniform(0.1, 0.2, c))


def _copy(d: dict) -> dict:
    return {k: v.copy() for k, v in d.items()}


@pytest.mark.parametrize("size", SIZES)
def test_baseline_runs_matches_twin(size: int | None) -> None:
    rng = np.random.default_rng(2)
    n, c, first, step, k_sd = 500, 3, 1003, 4, 1.5
    f = np.abs(rng.standard_normal((n, c)))
    f[rng.random((n, c)) < 0.02] = np.nan
    st, tw = _baseline_state(c, 23, rng), None
    tw = _copy(st)
    carry, tcarry = np.zeros(c, dtype=np.int64), np.zeros(c, dtype=np.int64)
    for a, b in _pieces(n, size):
        mo, so, thr = np.empty((b - a, c)), np.empty((b - a, c)), np.empty((b - a, c))
        runs = np.empty((b - a, c), dtype=np.int64)
        got = baseline_runs(f[a:b], first + a, step, st["ring"], st["pos"], st["count"],
                            st["excl"], st["median"], st["sd"], k_sd, carry, mo, so, thr, runs)
        want = twins.baseline_runs(f[a:b], first + a, step, tw["ring"], tw["pos"], tw["count"],
                                   tw["excl"], tw["median"], tw["sd"], k_sd, tcarry)
        assert got == want[0]
        for arr, ref in zip((mo, so, thr, runs), want[1:], strict=True):
            np.testing.assert_array_equal(arr, ref)
    for key in ("ring", "pos", "count"):
        np.testing.assert_array_equal(st[key], tw[key], err_msg=key)
    np.testing.assert_array_equal(carry, tcarry)


def _front_signal(n: int, seed: int) -> np.ndarray:
    """(n, 6) noise with 180 Hz bursts on columns 0 and 1 and an artefact on column 0."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)) * 1e-5
    t = np.arange(n) / FS
    for on in range(100, n - 100, 600):
        x[on:on + 80, :2] += 8e-5 * np.sin(2 * np.pi * 180.0 * t[on:on + 80, None])
    x[n // 2:n // 2 + 15, 0] += 5e-2
    return x


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("pooled", [False, True])
@pytest.mark.parametrize("gate_col", [2, -1])
def test_ripple_plan_matches_twin(size: int | None, pooled: bool, gate_col: int) -> None:
    n, n_det = 2400, 1
    x = _front_signal(n, 3)
    t = 50.0 + np.arange(n) / FS
    k = n_det + 1                              # the detection column and a reference
    cols = np.array([0, 1, 3] if pooled else [0, 3], dtype=np.int64)
    w = np.array([0.6, 0.4]) if pooled else np.empty(0)
    sos_b, sos_t, sos_d = _sos(150.0, 250.0), _sos(6.0, 10.0), _sos(1.0, 4.0)
    band, tband = FilterBank(sos_b, k, 48), twins.NumpyFilterBank(sos_b, k, 48)
    theta, ttheta = FilterBank(sos_t, 1, 400), twins.NumpyFilterBank(sos_t, 1, 400)
    delta, tdelta = FilterBank(sos_d, 1, 400), twins.NumpyFilterBank(sos_d, 1, 400)
    rng = np.random.default_rng(4)
    st = _baseline_state(k, 31, rng)
    st["median"], st["sd"] = np.full(k, 2e-5), np.full(k, 5e-6)
    tw = _copy(st)
    step, k_sd, k_art, first0 = 5, 3.0, 300.0, 12
    carry, tcarry = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    hold, thold = np.zeros(1), np.zeros(1)
    times, ttimes = np.zeros(37), twins.TimeRingTwin(37)
    index = 0
    artefacts = best = gated = 0
    cap = size or n
    work = np.full(cap * (5 * k + 3), np.nan)
    runs = np.full((cap, k), -1, dtype=np.int64)
    plan = RipplePlan(times, cols, w, band, work, runs, step, st["ring"], st["pos"],
                      st["count"], st["excl"], st["median"], st["sd"], k_sd, carry, n_det,
                      k_art, gate_col, theta if gate_col >= 0 else None,
                      delta if gate_col >= 0 else None, hold if gate_col >= 0 else None)
    for a, b in _pieces(n, size):
        m = b - a
        work.fill(np.nan)
        runs.fill(-1)
        longest, art = plan.run(x[a:b], first0 + a, t[a:b], index)
        index += m
        want = twins.ripple_front(
            x[a:b], first0 + a, t[a:b], ttimes, cols, w, tband, step, tw["ring"], tw["pos"],
            tw["count"], tw["excl"], tw["median"], tw["sd"], k_sd, tcarry, n_det, k_art,
            gate_col, ttheta, tdelta, thold)
        assert (longest, art) == (want["longest"], want["artefact"]), a
        artefacts += art
        best = max(best, longest)
        gated += "th" in want
        blk = {key: work[i * cap * k:(i + 1) * cap * k].reshape(cap, k)[:m]
               for i, key in enumerate("femst")}
        g0 = 5 * cap * k
        blk.update({key: work[g0 + i * cap:g0 + (i + 1) * cap, None][:m]
                    for i, key in enumerate(("gf", "th", "de"))})
        # the envelope: the C bank keeps a running sum of squares (re-summed when its ring
        # wraps), so after the 5e-2 artefact leaves the window its envelopes near 1e-6
        # carry ~1e-9 relative rounding until the next re-sum
        np.testing.assert_allclose(blk["f"], want["f"], rtol=1e-9, atol=1e-18)
        np.testing.assert_allclose(blk["e"], want["e"], rtol=1e-8, atol=1e-18)
        for key in ("m", "s", "t"):
            np.testing.assert_array_equal(blk[key], want[key], err_msg=key)
        np.testing.assert_array_equal(runs[:m], want["runs"])
        for key in ("gf", "th", "de"):
            if key in want:
                np.testing.assert_allclose(blk[key], want[key], rtol=1e-9, atol=1e-18,
                                           err_msg=key)
            else:                               # no gate update: the block is untouched
                assert np.isnan(blk[key]).all(), key
    assert artefacts > 0                        # the artefact path was taken
    np.testing.assert_allclose(st["ring"], tw["ring"], rtol=1e-8, atol=1e-18)
    for key in ("pos", "count"):
        np.testing.assert_array_equal(st[key], tw[key], err_msg=key)
    np.testing.assert_array_equal(carry, tcarry)
    np.testing.assert_array_equal(times, ttimes.values)
    np.testing.assert_array_equal(hold, thold)
    assert best > 0                             # the bursts made runs
    assert gated > 0 or gate_col < 0 or size is None  # whole: the artefact skips the gate


def test_ripple_candidate_first_at_or_after_and_median_mad_match_twins() -> None:
    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 40))
        runs = rng.integers(0, 12, size=(n, 2)).astype(np.int64)
        th, de = rng.random((n, 1)), rng.random((n, 1))
        th[rng.random(n) < 0.1] = np.nan
        start = int(rng.integers(-1, n + 2))
        for gated in (True, False):
            args = (runs, th if gated else None, de if gated else None, 8, 0.9, start)
            assert ripple_candidate(*args) == twins.ripple_candidate(*args)
        tt = np.sort(rng.uniform(0, 1, n))
        tt[rng.random(n) < 0.1] = np.nan
        at = float(rng.uniform(-0.1, 1.1))
        assert first_at_or_after(tt, at, start) == twins.first_at_or_after(tt, at, start)
        length = int(rng.integers(1, 30))
        ring = np.round(rng.standard_normal((3, length)), int(rng.integers(0, 3)))
        counts = rng.integers(0, 2 * length + 1, 3).astype(np.int64)
        med, mad = np.empty(3), np.empty(3)
        median_mad(ring, counts, 2, np.empty(length), med, mad)
        tmed, tmad = twins.median_mad(ring, counts, 2)
        np.testing.assert_array_equal(med, tmed)
        np.testing.assert_array_equal(mad, tmad)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("q,anti_alias", [(1, False), (4, True), (3, False)])
def test_echt_plan_matches_twins(size: int | None, q: int, anti_alias: bool) -> None:
    """EchtPlan.push into the doubled ring, then EchtPlan.estimate after every chunk (with
    and without the filter compensation), against EchtPush and echt_estimate; a NaN sample
    gives no estimate while it is in the window."""
    rng = np.random.default_rng(6 + q)
    n_win, n, rate, lag, lo, hi = 50, 1500, FS / q, 3, 2.0, 40.0
    x = rng.standard_normal((n, 3)).cumsum(axis=0) * 1e-6
    if not anti_alias:           # (through the anti-alias filter a NaN stays in its state)
        x[902, 1] = np.nan       # a sample that is kept at q = 1 and q = 3
    aa_sos = ss.butter(4, 0.4 * rate, btype="lowpass", fs=FS, output="sos") if anti_alias \
        else None
    aa = FilterBank(aa_sos, 1) if anti_alias else None
    twin = twins.EchtPush(aa_sos, q, n_win)
    ring, state = np.zeros(2 * n_win), np.zeros(3, dtype=np.int64)
    kernels = rng.standard_normal((5, n_win))
    kernels[4] = 1.0 / n_win
    grid_phase, grid_gain = rng.uniform(-1, 1, 9), rng.uniform(0.5, 1.5, 9)
    estimates = nan_seen = 0
    plans = [EchtPlan(1, aa, q, state, ring, kernels, rate, lag, lo, hi, pr, g)
             for pr, g in ((None, None), (grid_phase, grid_gain))]
    for a, b in _pieces(n, size):
        last = plans[0].push(x[a:b])
        assert last == twin.push(x[a:b], 1)
        np.testing.assert_array_equal(state, twin.state)
        np.testing.assert_allclose(ring, twin.ring, rtol=1e-12, atol=1e-21)
        if state[2] < n_win:
            continue
        window = ring[state[1]:state[1] + n_win]
        for comp in (False, True):
            pr, g = (grid_phase, grid_gain) if comp else (None, None)
            got = plans[comp].estimate()
            want = twins.echt_estimate(window, kernels, rate, lag, lo, hi, pr, g)
            if math.isnan(want[0]):
                assert math.isnan(got[0]) and math.isnan(got[1]) and got[3] == 0.0
                nan_seen += 1
                continue
            assert abs(twins.wrap_deg(got[0] - want[0])) < 1e-9
            assert got[1:3] == pytest.approx(want[1:3], rel=1e-12)
            assert got[3] == pytest.approx(want[3], rel=1e-9)
            estimates += 1
    assert estimates > 0
    # chunks of 1 and 7 end while the NaN is in the window; larger ones may not
    assert nan_seen > 0 or anti_alias or size not in (1, 7)
