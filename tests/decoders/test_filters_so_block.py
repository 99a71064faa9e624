"""``decoders._filters.SoPlan`` (the slow-oscillation detector's fused block kernel, bound
once, run per block) against its NumPy twin in tests/twins.py: the plain-NumPy SOS recurrence,
a cumulative-sum moving RMS, the decimated absolute-value baseline push, ``np.minimum`` for
the adaptive threshold, and the down-state machine written with ``np.flatnonzero`` /
``np.argmin`` over whole stretches of samples (the C kernel steps sample by sample).
Blocks are fed in pieces of 1, 7, 64 samples and whole; the rejections name the argument.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest
import twins

from engramloop.decoders._filters import FilterBank, SoPlan
from engramloop.decoders.baseline import MAD_TO_SD
from engramloop.decoders.filters import BandEnvelope, SosFilter, butter_bandpass

FS = 100.0                        # Hz: small arrays, slow waves still many samples long
SOS = butter_bandpass(0.2, 1.5, FS)
SOS_SLOW = butter_bandpass(0.5, 2.0, FS)
SOS_FAST = butter_bandpass(4.0, 30.0, FS)
GATE_WINDOW = 50                  # samples
COLS = np.array([2, 0, 2], dtype=np.int64)   # channel 2 repeats channel 0: same samples
REFRACTORY_S = 0.25
SCALE = -1.5 * MAD_TO_SD
FLOOR_V = -30e-6
THRESHOLD_V = -40e-6
STEP = 3
FIRST = 1000                      # absolute index of the first sample (not a step multiple)


def _signal(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, 4) volts: slow waves of wandering amplitude and frequency plus faster noise;
    (n,) seconds."""
    rng = np.random.default_rng(seed)
    t = 20.0 + np.arange(n) / FS
    x = np.empty((n, 4))
    for c in range(4):
        f = 0.8 + 0.3 * np.sin(2 * np.pi * t / 7.0 + c)
        amp = 60e-6 * (1.0 + 0.6 * np.sin(2 * np.pi * t / 11.0 + 2 * c))
        x[:, c] = amp * np.sin(2 * np.pi * np.cumsum(f) / FS) + rng.normal(0, 8e-6, n)
    return x, t


def _twin(x: np.ndarray, t: np.ndarray, pieces: list[int], adaptive: bool) -> dict:
    return twins.so_block(x, t, pieces, adaptive, _base(len(COLS)), cols=COLS, sos=SOS,
                          sos_slow=SOS_SLOW, sos_fast=SOS_FAST, gate_window=GATE_WINDOW,
                          first=FIRST, step=STEP, scale=SCALE, floor_v=FLOOR_V,
                          threshold_v=THRESHOLD_V, refractory_s=REFRACTORY_S)


def _base(k: int) -> dict:
    return dict(ring=np.zeros((k, 37)), pos=np.array([5, 36, 0], dtype=np.int64),
                count=np.array([5, 100, 0], dtype=np.int64),
                excl=np.array([np.inf, 60e-6, np.inf]),   # channel 2 is channel 0's twin
                median=np.array([30e-6, 15e-6, 30e-6]))


def _run_c(x: np.ndarray, t: np.ndarray, pieces: list[int], adaptive: bool, gated: bool,
           base: dict) -> dict:
    k = len(COLS)
    filt = SosFilter(SOS, k)
    gates = ((BandEnvelope(SOS_SLOW, k, GATE_WINDOW), BandEnvelope(SOS_FAST, k, GATE_WINDOW))
             if gated else (None, None))
    cap = max(pieces)
    work = np.full((6, cap, k), np.nan)
    st = twins.so_initial_state(k)
    ring, pos, count = base["ring"].copy(), base["pos"].copy(), base["count"].copy()
    out = {p: np.empty((len(t), k)) for p in ("x", "y", "gs", "gh", "thr")}
    found: list = []
    a = 0
    plan = SoPlan(COLS, filt, *gates, work, st, ring if adaptive else None, pos, count,
                  base["excl"], base["median"], STEP, THRESHOLD_V, SCALE, FLOOR_V, REFRACTORY_S)
    assert plan.cap == cap
    for p in pieces:
        got = plan.run(x[a:a + p], FIRST + a, t[a:a + p], True)
        assert isinstance(got, tuple)
        found.extend((a + j, ch, on, v, tt) for j, ch, on, v, tt in got)
        for plane, name in ((0, "x"), (1, "y"), (3, "gs"), (4, "gh"), (5, "thr")):
            out[name][a:a + p] = work[plane, :p]
        a += p
    return dict(out, ring=ring, pos=pos, count=count, state=st, found=found)


def _pieces(n: int, size: int) -> list[int]:
    return [min(size, n - a) for a in range(0, n, size)]


@pytest.mark.parametrize("adaptive", (False, True))
@pytest.mark.parametrize("size", (1, 7, 64, 3000))
def test_so_plan_matches_numpy(size: int, adaptive: bool) -> None:
    x, t = _signal(3000, seed=3)
    pieces = _pieces(len(t), size)
    ref = _twin(x, t, pieces, adaptive)
    got = _run_c(x, t, pieces, adaptive, True, _base(len(COLS)))
    np.testing.assert_array_equal(got["x"], ref["x"])
    # the same recurrence in the same order: exact
    np.testing.assert_array_equal(got["y"], ref["y"])
    np.testing.assert_allclose(got["gs"], ref["gs"], rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(got["gh"], ref["gh"], rtol=1e-9, atol=1e-15)
    np.testing.assert_array_equal(got["thr"], ref["thr"])
    for key in ("ring", "pos", "count", "state"):
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    assert got["found"] == ref["found"]
    # enough happened to mean something: events on every channel, the repeated channel's
    # at the same samples (ordered by channel there), and some samples not pushed
    assert len(got["found"]) >= 3 * 12
    assert {f[1] for f in got["found"]} == {0, 1, 2}
    assert [f[0] for f in got["found"] if f[1] == 0] == [f[0] for f in got["found"]
                                                         if f[1] == 2]
    if adaptive:
        assert ref["count"][1] - 100 < len(range(FIRST + 2, FIRST + 3000, STEP))


def test_so_plan_is_chunk_size_independent() -> None:
    x, t = _signal(3000, seed=4)
    runs = [_run_c(x, t, _pieces(len(t), s), True, True, _base(len(COLS)))
            for s in (1, 7, 64, 3000)]
    for r in runs[1:]:
        assert r["found"] == runs[0]["found"]
        np.testing.assert_array_equal(r["state"], runs[0]["state"])
        np.testing.assert_array_equal(r["ring"], runs[0]["ring"])


@pytest.mark.parametrize("size", (1, 7, 64))
def test_so_plan_nan_in_a_down_state_follows_argmin(size: int) -> None:
    """A NaN in a stretch the scan looks at makes np.argmin return it, and NaN < trough is
    false: the stretch leaves the trough as it was. The C kernel keeps that rule, so the
    trough depends on where the block boundaries fall, exactly as before."""
    x, t = _signal(1500, seed=5)
    x[715:, 0] = np.nan                 # channel 1 of the picked block, in a down state
    pieces = _pieces(len(t), size)
    ref = _twin(x, t, pieces, False)
    got = _run_c(x, t, pieces, False, False, _base(len(COLS)))
    assert got["found"] == ref["found"]
    np.testing.assert_array_equal(got["state"], ref["state"])
    assert got["state"][1, 0] == 1 and np.isfinite(got["state"][1, 2])   # stuck below


def test_so_plan_without_gate_leaves_gate_planes() -> None:
    x, t = _signal(200, seed=6)
    k = len(COLS)
    work = np.full((6, 200, k), 7.0)
    SoPlan(COLS, SosFilter(SOS, k), None, None, work, twins.so_initial_state(k), None,
           np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64), np.zeros(k),
           np.zeros(k), STEP, THRESHOLD_V, SCALE, FLOOR_V, REFRACTORY_S).run(x, 0, t, True)
    assert np.all(work[2:5] == 7.0)
    assert np.all(work[5] == THRESHOLD_V)


_RUN = ("samples", "first", "t")
_SHARED = np.zeros(3, dtype=np.int64)


def _args(**over) -> tuple[list, list]:
    """Valid SoPlan arguments (adaptive, gated) and run arguments for 10 samples, with some
    replaced: (plan arguments, run arguments without scan)."""
    k = 2
    a = dict(samples=np.zeros((10, 3)), cols=np.array([0, 2], dtype=np.int64),
             t=np.arange(10) / FS, first=0, filt=SosFilter(SOS, k),
             gate_slow=BandEnvelope(SOS_SLOW, k, 5), gate_fast=BandEnvelope(SOS_FAST, k, 5),
             work=np.zeros((6, 16, k)), state=twins.so_initial_state(k), ring=np.zeros((k, 8)),
             pos=np.zeros(k, dtype=np.int64), count=np.zeros(k, dtype=np.int64),
             excl=np.full(k, np.inf), median=np.ones(k), step=2, threshold_v=-1.0,
             scale=-1.0, floor_v=-1.0, refractory_s=0.1)
    a.update(over)
    return [v for key, v in a.items() if key not in _RUN], [a[key] for key in _RUN]


def _call(args: tuple[list, list]):
    plan_args, run_args = args
    return SoPlan(*plan_args).run(*run_args, True)


def test_so_plan_rejects_bad_arguments() -> None:
    _call(_args())                                      # the valid call works
    cases = [
        (TypeError, "takes 16 arguments", (_args()[0][:-1], _args()[1])),
        (TypeError, "SoPlan: filt must be a FilterBank, got numpy.ndarray",
         _args(filt=np.zeros(3))),
        (TypeError, r"SoPlan: gate_fast must be a FilterBank, got NoneType",
         _args(gate_fast=None)),
        (ValueError, "SoPlan: gate_slow must be a FilterBank of 2 channels with a moving-RMS "
                     "window", _args(gate_slow=FilterBank(SOS, 2))),
        (ValueError, "SoPlan: gate_fast must be a FilterBank of 2 channels",
         _args(gate_fast=BandEnvelope(SOS_FAST, 3, 5))),
        (TypeError, "SoPlan.run: samples must be a 2-D float64",
         _args(samples=np.zeros((10, 3), int))),
        (TypeError, "SoPlan.run: samples must be a C-contiguous",
         _args(samples=np.zeros((10, 6))[:, ::2])),
        (TypeError, "cols must be a 1-D int64 array", _args(cols=np.array([0.0, 2.0]))),
        (ValueError, "SoPlan: cols must hold 2 column indices, got 3",
         _args(cols=np.array([0, 1, 2], dtype=np.int64))),
        (ValueError, r"SoPlan: cols\[1\] = -1 is negative",
         _args(cols=np.array([0, -1], dtype=np.int64))),
        (ValueError, r"SoPlan.run: samples \(10, 3\) must have at most 16 rows .* and "
                     r"column 3", _args(cols=np.array([0, 3], dtype=np.int64))),
        (ValueError, r"SoPlan.run: samples \(17, 3\)", _args(samples=np.zeros((17, 3)),
                                                             t=np.zeros(17))),
        (ValueError, "t must have shape", _args(t=np.zeros(9))),
        (TypeError, "t must have dtype float64", _args(t=np.zeros(10, dtype=np.float32))),
        (TypeError, "SoPlan.run: first must be an int, got float", _args(first=1.5)),
        (ValueError, "SoPlan.run: first must be >= 0, got -1", _args(first=-1)),
        (ValueError, r"SoPlan: work must be a float64 array of shape \(6, cap >= 1, 2\)",
         _args(work=np.zeros((6, 0, 2)))),
        (ValueError, r"SoPlan: work must be a float64 array of shape \(6, cap >= 1, 2\)",
         _args(work=np.zeros((5, 16, 2)))),
        (ValueError, "state must have shape", _args(state=np.zeros((2, 4)))),
        (TypeError, "state must be a C-contiguous, writable",
         _args(state=np.zeros((2, 10))[:, ::2])),
        (ValueError, r"SoPlan: ring must be a float64 array of shape \(2, L\)",
         _args(ring=np.zeros((3, 8)))),
        (TypeError, "pos must have dtype int64", _args(pos=np.zeros(2))),
        (ValueError, r"SoPlan.run: pos\[1\] = 8 is outside the ring \(0..7\)",
         _args(pos=np.array([0, 8], dtype=np.int64))),
        (ValueError, "count must have shape", _args(count=np.zeros(3, dtype=np.int64))),
        (ValueError, "median must have shape", _args(median=np.zeros(3))),
        (ValueError, "SoPlan: step must be >= 1, got 0", _args(step=0)),
        (TypeError, "SoPlan: threshold_v must be a number, got str", _args(threshold_v="x")),
        (TypeError, "SoPlan: refractory_s must be a number, got NoneType",
         _args(refractory_s=None)),
        (ValueError, "SoPlan: pos and count share memory",
         _args(pos=_SHARED[0:2], count=_SHARED[1:3])),
    ]
    for exc, msg, args in cases:
        with pytest.raises(exc, match=msg):
            _call(args)
    # a work array that is a view of the samples would be overwritten while read
    buf = np.zeros((6, 16, 3))
    with pytest.raises(ValueError, match="samples and t must not share memory with the plan"):
        _call(_args(samples=buf[0, :10], cols=np.array([0, 1, 2], dtype=np.int64),
                    work=buf, filt=SosFilter(SOS, 3), gate_slow=None, gate_fast=None,
                    state=twins.so_initial_state(3), ring=None))
    # read-only work
    ro = np.zeros((6, 16, 2))
    ro.flags.writeable = False
    with pytest.raises(TypeError, match="SoPlan: work must be a C-contiguous, writable"):
        _call(_args(work=ro))
    with pytest.raises(RuntimeError, match="SoPlan.__init__ was not called"):
        SoPlan.__new__(SoPlan).run(np.zeros((1, 3)), 0, np.zeros(1), True)


def test_so_plan_releases_buffers_and_banks() -> None:
    """No reference or buffer is kept after the plan is freed, on success or error, and a
    failed run leaves the filter banks usable (their busy flag cleared)."""
    plan_args, run_args = _args()
    arrays = [v for v in plan_args + run_args if isinstance(v, np.ndarray)]
    bad_pos = plan_args[7]
    before = [sys.getrefcount(v) for v in arrays]
    plan = SoPlan(*plan_args)
    for _ in range(500):
        assert plan.run(*run_args, True) == ()
        bad_pos[1] = 99
        with pytest.raises(ValueError):
            plan.run(*run_args, True)
        bad_pos[1] = 0
    del plan
    assert [sys.getrefcount(v) for v in arrays] == before
    filt = plan_args[1]
    y = np.empty((3, 2))
    filt.process(np.zeros((3, 2)), y)                # not left busy
    plan_args[4].resize((6, 16, 2), refcheck=False)  # no buffer still exported
    # events make tuples: one per down state, nothing left over
    x, t = _signal(3000, seed=7)
    k = len(COLS)
    st = twins.so_initial_state(k)
    got = SoPlan(COLS, SosFilter(SOS, k), None, None, np.empty((6, 3000, k)), st,
                 None, np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64),
                 np.zeros(k), np.zeros(k), STEP, THRESHOLD_V, SCALE, FLOOR_V,
                 REFRACTORY_S).run(x, 0, t, True)
    assert len(got) > 10 and all(sys.getrefcount(f) == 3 for f in got)


def test_so_plan_without_scan_runs_no_state_machine() -> None:
    """run with scan false (the detector calibrating): the same planes, no events, the
    state untouched, and the baseline still fed."""
    x, t = _signal(1000, seed=8)
    runs = []
    for scan in (True, False):
        base = _base(len(COLS))
        k = len(COLS)
        work = np.empty((6, 1000, k))
        st = twins.so_initial_state(k)
        got = SoPlan(COLS, SosFilter(SOS, k), BandEnvelope(SOS_SLOW, k, 9),
                     BandEnvelope(SOS_FAST, k, 9), work, st, base["ring"], base["pos"],
                     base["count"], base["excl"], base["median"], STEP, THRESHOLD_V,
                     SCALE, FLOOR_V, REFRACTORY_S).run(x, FIRST, t, scan)
        if not scan:
            np.testing.assert_array_equal(st, twins.so_initial_state(k))
        runs.append((got, work, base))
    assert len(runs[0][0]) > 5 and runs[1][0] == ()
    np.testing.assert_array_equal(runs[1][1][[0, 1, 3, 4, 5]], runs[0][1][[0, 1, 3, 4, 5]])
    for key in ("ring", "pos", "count"):
        np.testing.assert_array_equal(runs[1][2][key], runs[0][2][key])


@pytest.mark.parametrize("start", [0, 1, 137])
def test_so_plan_scan_matches_numpy_on_planes_filled_elsewhere(start: int) -> None:
    """``scan``: the down-state machine alone over rows start .. n of the planes as the
    Python path of a block with an update point fills them (here: a band-passed signal
    and a threshold that steps, as at an update point), against so_down_states; state
    carried into a second block; bad start / n / t are one-line errors."""
    k, n = len(COLS), 700
    x, t = _signal(2 * n, 5)
    y = np.empty((2 * n, k))
    SosFilter(SOS, k).process(np.ascontiguousarray(x[:, COLS]), y)
    thr = np.full((2 * n, k), -25e-6)
    thr[n // 2:] = -35e-6                           # the threshold moved mid-block
    work = np.full((6, n, k), np.nan)
    st = twins.so_initial_state(k)
    plan = SoPlan(COLS, SosFilter(SOS, k), None, None, work, st, None, np.zeros(k, np.int64),
                  np.zeros(k, np.int64), np.full(k, np.inf), np.full(k, np.nan), STEP,
                  THRESHOLD_V, SCALE, FLOOR_V, REFRACTORY_S)
    ref_st, got, want = twins.so_initial_state(k), [], []
    for b, s0 in ((0, start), (n, 0)):
        work[1], work[5] = y[b:b + n], thr[b:b + n]
        got += [(b + j, *rest) for j, *rest in plan.scan(t[b:b + n], s0, n)]
        found: list = []
        twins.so_down_states(y[b + s0:b + n], thr[b + s0:b + n], t[b + s0:b + n], ref_st,
                             b + s0, found, REFRACTORY_S)
        want += found
    assert len(want) >= 4
    assert [repr(f) for f in got] == [repr(tuple(f)) for f in want]
    np.testing.assert_array_equal(st, ref_st)
    with pytest.raises(ValueError, match=r"SoPlan.scan: need 0 <= start <= n <= cap"):
        plan.scan(t[:n], 5, 3)
    with pytest.raises(ValueError, match=r"SoPlan.scan: need 0 <= start <= n <= cap"):
        plan.scan(t[:n + 1], 0, n + 1)
    with pytest.raises(ValueError, match=r"t must have shape"):
        plan.scan(t[:n - 1], 0, n)
    with pytest.raises(TypeError, match=r"t must have dtype float64"):
        plan.scan(t[:n].astype(np.float32), 0, n)
