"""The C filter bank against scipy and an independent NumPy twin."""
from __future__ import annotations

import gc
import threading
import time
import tracemalloc

import numpy as np
import pytest
import scipy.signal as ss
from hypothesis import given, settings
from hypothesis import strategies as st
from twins import NumpySosFilter, moving_rms

from engramloop.decoders.filters import (
    BandEnvelope,
    MovingRms,
    SosFilter,
    butter_bandpass,
    butter_highpass,
    butter_lowpass,
    notch,
)

FS = 2000.0
SOS_BP = butter_bandpass(150.0, 250.0, FS, order=4)  # 4 sections, the ripple band


def _signal(n: int, c: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, c)) * 1e-4 + 5e-5  # volts, with an offset


def _chunked(filt, x: np.ndarray, sizes) -> np.ndarray:
    out, i = [], 0
    for size in sizes:
        out.append(filt.process(np.ascontiguousarray(x[i:i + size])))
        i += size
    assert i == x.shape[0]
    return np.vstack(out)


def _relerr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


IMPLS = {"c": SosFilter, "numpy": NumpySosFilter}


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_chunking_matches_scipy_one_pass(impl: str, chunk: int | None) -> None:
    n = 700 if impl == "numpy" else 5000
    x = _signal(n, 3)
    ref = ss.sosfilt(SOS_BP, x, axis=0)
    filt = IMPLS[impl](SOS_BP, 3)
    sizes = [n] if chunk is None else [chunk] * (n // chunk) + ([n % chunk] if n % chunk else [])
    assert _relerr(_chunked(filt, x, sizes), ref) <= 1e-12


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(0, 2000), max_size=25), n_ch=st.integers(1, 9),
       seed=st.integers(0, 2**31 - 1))
def test_random_splits_match_scipy(cuts: list[int], n_ch: int, seed: int) -> None:
    x = _signal(2000, n_ch, seed)
    edges = sorted(set([0, 2000] + cuts))
    sizes = [b - a for a, b in zip(edges[:-1], edges[1:], strict=True)]
    ref = ss.sosfilt(SOS_BP, x, axis=0)
    assert _relerr(_chunked(SosFilter(SOS_BP, n_ch), x, sizes), ref) <= 1e-12


def test_c_and_numpy_twin_agree_on_state() -> None:
    x = _signal(300, 4)
    c, py = SosFilter(SOS_BP, 4), NumpySosFilter(SOS_BP, 4)
    np.testing.assert_allclose(c.process(x), py.process(x), rtol=1e-12, atol=0)
    np.testing.assert_allclose(c.zi, py.z, rtol=1e-12, atol=1e-30)


def test_in_place_and_out_argument() -> None:
    x = _signal(1000, 8)
    ref = ss.sosfilt(SOS_BP, x, axis=0)
    y = x.copy()
    got = SosFilter(SOS_BP, 8).process(y, out=y)
    assert got is y
    assert _relerr(y, ref) <= 1e-12
    out = np.empty_like(x)
    assert SosFilter(SOS_BP, 8).process(x, out) is out
    assert _relerr(out, ref) <= 1e-12


def test_zi_matches_scipy_state() -> None:
    x = _signal(500, 2)
    f = SosFilter(SOS_BP, 2)
    f.process(x)
    _, zf = ss.sosfilt(SOS_BP, x, axis=0, zi=np.zeros((4, 2, 2)))
    np.testing.assert_allclose(f.zi, zf, rtol=1e-12, atol=1e-30)


def test_reset_from_first_sample_has_no_step_transient() -> None:
    sos = butter_lowpass(30.0, FS, order=4)
    x = np.full((400, 2), [1e-3, -2e-3])
    f = SosFilter(sos, 2)
    f.reset(x[0])
    ref, _ = ss.sosfilt(sos, x, axis=0, zi=ss.sosfilt_zi(sos)[:, :, None] * x[0])
    y = f.process(x)
    np.testing.assert_allclose(y, ref, rtol=1e-12)
    np.testing.assert_allclose(y, x, rtol=1e-9)  # a constant passes a low-pass unchanged
    f.reset()
    assert not f.zi.any()


def test_design_helpers_match_scipy() -> None:
    np.testing.assert_array_equal(butter_highpass(0.3, 250.0, order=2),
                                  ss.butter(2, 0.3, "highpass", fs=250.0, output="sos"))
    b, a = ss.iirnotch(50.0, 30.0, fs=FS)
    w = np.linspace(1, 999, 500)
    _, h_ref = ss.freqz(b, a, worN=w, fs=FS)
    _, h = ss.sosfreqz(notch(50.0, FS), worN=w, fs=FS)
    np.testing.assert_allclose(h, h_ref, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("call, message", [
    (lambda: butter_bandpass(250.0, 150.0, FS), "low_hz"),
    (lambda: butter_bandpass(150.0, 1200.0, FS), "high_hz"),
    (lambda: butter_lowpass(30.0, -1.0), "fs_hz"),
    (lambda: notch(50.0, FS, quality=0), "quality"),
])
def test_design_helpers_name_the_bad_argument(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_constructor_validation_names_the_argument() -> None:
    with pytest.raises(ValueError, match="sos"):
        SosFilter(np.zeros((2, 5)), 1)
    bad = SOS_BP.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="finite"):
        SosFilter(bad, 1)
    with pytest.raises(TypeError, match="sos"):
        SosFilter(np.array([["a"] * 6]), 1)
    with pytest.raises(ValueError, match="n_channels"):
        SosFilter(SOS_BP, 0)
    with pytest.raises(TypeError, match="n_channels"):
        SosFilter(SOS_BP, 2.0)
    with pytest.raises(ValueError, match="window"):
        BandEnvelope(SOS_BP, 2, 0)


def test_process_validation_names_the_argument() -> None:
    f = SosFilter(SOS_BP, 4)
    with pytest.raises(TypeError, match="float64"):
        f.process(np.zeros((10, 4), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\(n_samples, 4\)"):
        f.process(np.zeros((10, 3)))
    with pytest.raises(TypeError, match="C-contiguous"):
        f.process(np.zeros((4, 10)).T)
    with pytest.raises(ValueError, match="2-D"):
        f.process(np.zeros(10), np.zeros(10))
    with pytest.raises(TypeError, match="out"):
        ro = np.zeros((10, 4))
        ro.flags.writeable = False
        f.process(np.zeros((10, 4)), ro)
    with pytest.raises(ValueError, match="samples"):
        f.process(np.zeros((10, 4)), np.zeros((9, 4)))


def test_empty_block_is_fine() -> None:
    assert SosFilter(SOS_BP, 2).process(np.zeros((0, 2))).shape == (0, 2)


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_band_envelope_matches_numpy_reference(chunk: int | None) -> None:
    x = _signal(3000, 5)
    window = 40
    filt_ref = ss.sosfilt(SOS_BP, x, axis=0)
    env_ref = moving_rms(filt_ref, window)
    be = BandEnvelope(SOS_BP, 5, window)
    step = chunk or x.shape[0]
    parts = [be.process_envelope(np.ascontiguousarray(x[i:i + step]))
             for i in range(0, x.shape[0], step)]
    filt = np.vstack([p[0] for p in parts])
    env = np.vstack([p[1] for p in parts])
    assert _relerr(filt, filt_ref) <= 1e-12
    np.testing.assert_allclose(env, env_ref, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
@pytest.mark.parametrize("weights", [None, (0.6, 0.4), (1.0, -0.5, 0.25)])
def test_pick_rms_matches_picking_then_filtering(chunk: int | None, weights) -> None:
    """pick_rms = pick (or pool with weights, reference columns after) + sosfilt + moving
    RMS, against a NumPy pick/pool and scipy; the chunk's other columns (NaN here) are
    never read."""
    x = _signal(3000, 6)
    x[:, 5] = np.nan                               # a column nobody picked
    if weights is None:
        cols, w = np.array([4, 0, 2]), np.empty(0)
        picked = x[:, cols]
    else:
        w = np.asarray(weights)
        cols = np.array([3, 1, 0, 4])              # pooled columns, then references
        pool = x[:, cols[:len(w)]] @ w
        picked = np.column_stack([pool, x[:, cols[len(w):]]])
    k = picked.shape[1]
    window = 40
    filt_ref = ss.sosfilt(SOS_BP, picked, axis=0)
    env_ref = moving_rms(filt_ref, window)
    be = BandEnvelope(SOS_BP, k, window)
    step = chunk or x.shape[0]
    filt, env = np.empty(filt_ref.shape), np.empty(filt_ref.shape)
    for i in range(0, x.shape[0], step):
        out = be.pick_rms(np.ascontiguousarray(x[i:i + step]), cols.astype(np.int64), w,
                          filt[i:i + step], env[i:i + step])
        assert out is not None
    assert _relerr(filt, filt_ref) <= 1e-12
    np.testing.assert_allclose(env, env_ref, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("cols, weights, message", [
    ([0, 9], None, "column indices below 6"),
    ([0], None, "2 column indices"),
    ([0, 1, 2], (1.0,), "2 column indices"),
    ([-1, 0], None, "column indices"),
])
def test_pick_rms_names_bad_columns(cols, weights, message) -> None:
    be = BandEnvelope(SOS_BP, 2, 10)
    x = _signal(10, 6)
    w = np.asarray(weights if weights else (), dtype=float)
    with pytest.raises(ValueError, match=message):
        be.pick_rms(x, np.asarray(cols, dtype=np.int64), w, np.empty((10, 2)),
                    np.empty((10, 2)))
    with pytest.raises(TypeError, match="cols"):
        be.pick_rms(x, np.asarray([0, 1], dtype=np.int32), w, np.empty((10, 2)),
                    np.empty((10, 2)))


def test_pick_rms_refuses_outputs_sharing_memory_with_the_input() -> None:
    be = BandEnvelope(SOS_BP, 2, 10)
    x = _signal(10, 4)
    cols, w = np.array([1, 0], dtype=np.int64), np.empty(0)
    inside = x.reshape(-1)[:20].reshape(10, 2)       # contiguous, in the samples' memory
    for filt, env in ((inside, np.empty((10, 2))), (np.empty((10, 2)), inside)):
        with pytest.raises(ValueError, match="share memory"):
            be.pick_rms(x, cols, w, filt, env)


def test_moving_rms_of_raw_signal_and_reset() -> None:
    x = _signal(1000, 3)
    mr = MovingRms(3, 25)
    np.testing.assert_allclose(mr.process(x), moving_rms(x, 25), rtol=1e-9, atol=1e-15)
    mr.reset()
    np.testing.assert_allclose(mr.process(x[:10].copy()), moving_rms(x[:10], 25), rtol=1e-9)


def test_running_sum_does_not_drift_over_1e7_samples() -> None:
    """Ten million samples with a huge burst early on: the envelope at the end must equal a
    fresh computation over the final window (an incremental add/subtract sum would keep
    the rounding debris of the burst forever)."""
    n, window, block = 10_000_000, 50, 100_000
    rng = np.random.default_rng(1)
    mr = MovingRms(1, window)
    out = np.empty((block, 1))
    last = None
    for i in range(n // block):
        x = rng.standard_normal((block, 1)) * 1e-6
        if i == 0:
            x[1000:1100] *= 1e6  # a 1 V artefact among microvolts
        mr.process(x, out)
        last = x
    exact = np.sqrt(np.mean(last[-window:, 0] ** 2))
    assert abs(out[-1, 0] - exact) / exact < 1e-12


def test_no_memory_growth_over_1e5_calls() -> None:
    f = BandEnvelope(SOS_BP, 8, 20)
    x, y, e = _signal(10, 8), np.empty((10, 8)), np.empty((10, 8))
    for _ in range(1000):  # warm up allocator caches
        f.process(x, y)
        f.process_rms(x, y, e)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for _ in range(100_000):
        f.process(x, y)
        f.process_rms(x, y, e)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    growth = sum(s.size_diff for s in after.compare_to(before, "filename"))
    assert growth < 10_000, f"memory grew by {growth} bytes over 1e5 calls"


def test_buffers_are_released_every_call() -> None:
    """A numpy array whose buffer is still exported cannot be resized: if the C code leaked
    a Py_buffer (on success or on an error path) resize() would raise."""
    f = SosFilter(SOS_BP, 2)
    x, out = np.zeros((4, 2)), np.zeros((4, 2))
    f.process(x, out)
    with pytest.raises(ValueError):
        f.process(x, np.zeros((3, 2)))  # error path after both buffers were taken
    for arr in (x, out):
        arr.resize((8, 2), refcheck=False)


def test_refcounts_unchanged() -> None:
    import sys

    f = SosFilter(SOS_BP, 2)
    x, out = np.zeros((4, 2)), np.zeros((4, 2))
    rx, ro = sys.getrefcount(x), sys.getrefcount(out)
    for _ in range(1000):
        f.process(x, out)
    assert (sys.getrefcount(x), sys.getrefcount(out)) == (rx, ro)


def test_gil_is_released_and_concurrent_use_is_refused() -> None:
    """Two banks filter in parallel threads and still match scipy; one bank used from two
    threads at once is refused rather than corrupting its state."""
    x = _signal(200_000, 8)
    ref = ss.sosfilt(SOS_BP, x, axis=0)
    results = {}

    def work(k: int) -> None:
        results[k] = SosFilter(SOS_BP, 8).process(x)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        assert _relerr(results[k], ref) <= 1e-12

    shared = SosFilter(SOS_BP, 8)
    errors: list[Exception] = []

    def hammer() -> None:
        for _ in range(20):
            try:
                shared.process(x)
            except RuntimeError as exc:
                errors.append(exc)

    threads = [threading.Thread(target=hammer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all("another thread" in str(e) for e in errors)


def test_missing_extension_is_a_loud_import_error(monkeypatch) -> None:
    import importlib
    import sys

    import engramloop.decoders.filters as filters_mod

    monkeypatch.setitem(sys.modules, "engramloop.decoders._filters", None)
    with pytest.raises(ImportError, match="C filter bank"):
        importlib.reload(filters_mod)
    monkeypatch.undo()
    importlib.reload(filters_mod)


def test_index_arrays_changed_by_another_thread_mid_call_are_not_used() -> None:
    """pick_rms and baseline_runs run without the GIL; they index memory only with the
    copies of ``cols`` / ``pos`` they checked before releasing it. Another thread setting
    an index far out of range mid-call must neither crash the process (an out-of-bounds
    access would) nor change what the call computes."""
    from engramloop.decoders._filters import FilterBank, baseline_runs

    n = 2_000_000
    x = np.zeros((n, 2))
    x[:, 0] = 1.0                                  # column 0 = 1, column 1 = 0
    cols = np.array([1], np.int64)                 # valid: the zero column
    filt, env = np.empty((n, 1)), np.empty((n, 1))

    def flip(arr):
        time.sleep(0.002)                          # while the call runs without the GIL
        arr[0] = 1 << 40

    # on a loaded machine the other thread can flip before the call has copied and checked
    # cols: the call then refuses the index, and the attempt is repeated
    for _attempt in range(5):
        cols[0] = 1
        t = threading.Thread(target=flip, args=(cols,))
        t.start()
        try:
            FilterBank(np.zeros((0, 6)), 1, 4).pick_rms(x, cols, np.empty(0), filt, env)
        except ValueError as exc:
            assert "cols must hold" in str(exc)
            continue
        finally:
            t.join()
        break
    else:
        pytest.fail("the other thread flipped cols before every call")
    assert not filt.any()                          # every row picked column 1

    ring, pos = np.zeros((1, 8)), np.zeros(1, np.int64)
    feat = np.ones((n, 1))
    outs = [np.empty((n, 1)) for _ in range(3)]
    runs = np.empty((n, 1), np.int64)
    t = threading.Thread(target=flip, args=(pos,))
    t.start()
    baseline_runs(feat, 0, 1, ring, pos, np.zeros(1, np.int64), np.full(1, np.inf),
                  np.zeros(1), np.ones(1), 3.0, np.zeros(1, np.int64), *outs, runs)
    t.join()
    # the checked copy is written back at the end (unless the other thread was later)
    assert pos[0] in (n % 8, 1 << 40) and ring.sum() == 8.0
