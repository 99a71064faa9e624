"""The incremental running median/MAD (``running_median_mad``, issue 23) against NumPy's
median of the ring's contents (an independent reference) and against the quickselect
kernel it replaces (``median_mad``), bit for bit: at the kernel on random rings written
the way RobustBaseline writes them, inside RobustBaseline at every update point (lengths,
steps, update intervals, chunkings 1/7/64/whole, ties, constants, NaN bursts, resets,
exclusion), and through the spindle and slow-oscillation detectors on real sleep EEG
(the DREAMS excerpts) where the events must equal those of the quickselect path."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from shared_data import DATA, require_data

import engramloop.decoders.baseline as baseline_mod
from engramloop.decoders._filters import baseline_push, median_mad, running_median_mad
from engramloop.decoders.baseline import RobustBaseline


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64).view(np.int64)


def _assert_bit_equal(got: np.ndarray, ref: np.ndarray) -> None:
    """Equal bit patterns (so 0.0 vs -0.0 differ), with any NaN equal to any NaN."""
    nan = np.isnan(ref)
    assert np.array_equal(np.isnan(got), nan)
    np.testing.assert_array_equal(_bits(got)[~nan], _bits(ref)[~nan])


def _numpy_reference(ring: np.ndarray, counts: np.ndarray, min_count: int):
    """numpy.median of each row's kept values and of their absolute deviations, and which
    rows it defines: numpy answers NaN where an infinite median meets an infinite value
    (inf - inf), where quickselect (and so median_mad) answers from its own order -- those
    rows are compared with median_mad only."""
    c, length = ring.shape
    med, mad = np.full(c, np.nan), np.full(c, np.nan)
    for j in range(c):
        k = min(int(counts[j]), length)
        if k >= max(min_count, 1):
            x = ring[j, :k]
            with np.errstate(all="ignore"):              # overflow, inf - inf
                med[j] = np.median(x)
                mad[j] = np.median(np.abs(x - med[j]))
    defined = ~(np.isnan(med) ^ np.isnan(mad)) & ~np.isinf(med)
    return med, mad, defined


def _assert_numpy_equal(med, mad, ring, counts, min_count) -> None:
    np_med, np_mad, ok = _numpy_reference(ring, counts, min_count)
    np.testing.assert_array_equal(med[ok], np_med[ok])   # == (0.0 == -0.0), NaN == NaN
    np.testing.assert_array_equal(mad[ok], np_mad[ok])


class _Kernel:
    """A ring written as RobustBaseline writes it, and the running kernel's state."""

    def __init__(self, c: int, length: int) -> None:
        self.ring = np.zeros((c, length))
        self.pos = np.zeros(c, dtype=np.int64)
        self.count = np.zeros(c, dtype=np.int64)
        self.prev = np.zeros((c, length))
        self.sorted = np.zeros((c, length))
        self.synced = np.zeros(c, dtype=np.int64)
        self.scratch = np.empty(2 * length)
        self.index = np.empty(2 * length, dtype=np.int64)

    def push(self, ch: int, v: float) -> None:
        self.ring[ch, self.pos[ch]] = v
        self.pos[ch] = (self.pos[ch] + 1) % self.ring.shape[1]
        self.count[ch] += 1

    def reset(self) -> None:
        self.ring.fill(0.0)
        self.pos.fill(0)
        self.count.fill(0)
        self.synced.fill(0)

    def stats(self, min_count: int) -> tuple[np.ndarray, np.ndarray]:
        c = self.ring.shape[0]
        med, mad = np.empty(c), np.empty(c)
        running_median_mad(self.ring, self.pos, self.count, min_count, self.prev,
                           self.sorted, self.synced, self.scratch, self.index, med, mad)
        return med, mad


def _value(rng: np.random.Generator, kind: str) -> float:
    if kind == "normal":
        return float(rng.standard_normal())
    if kind == "ties":                    # few distinct values: long runs of equal ones
        return float(rng.integers(0, 3)) * 0.25
    if kind == "constant":
        return 1.5e-6
    # awkward values: both zeros, infinities, subnormals, huge values whose sum overflows
    if rng.random() < 0.4:
        return float(rng.choice([0.0, -0.0, np.inf, -np.inf, 5e-324, -5e-324, 1.7e308,
                                 -1.7e308]))
    return float(rng.standard_normal())


@pytest.mark.parametrize("kind", ["normal", "ties", "constant", "awkward"])
def test_kernel_equals_numpy_and_quickselect_bit_for_bit(kind: str) -> None:
    """Random rings of 1-41 slots, 1-3 channels, 0 to 2 L + 1 values pushed between calls
    (so filling, steady state and a whole ring replaced at once), resets and min_count 1-4:
    every call equals median_mad bit for bit and numpy.median (+ its MAD) of the ring."""
    rng = np.random.default_rng(["normal", "ties", "constant", "awkward"].index(kind))
    calls = 0
    for _ in range(300):
        c, length = int(rng.integers(1, 4)), int(rng.integers(1, 42))
        k = _Kernel(c, length)
        for _ in range(25):
            for ch in range(c):
                n = (int(rng.integers(0, 2 * length + 2)) if rng.random() < 0.15
                     else int(rng.integers(0, max(2, length // 3))))
                for _ in range(n):
                    k.push(ch, _value(rng, kind))
            if rng.random() < 0.04:
                k.reset()
            min_count = int(rng.integers(1, 5))
            med, mad = k.stats(min_count)
            ref_med, ref_mad = np.empty(c), np.empty(c)
            median_mad(k.ring, k.count, min_count, np.empty(length), ref_med, ref_mad)
            _assert_bit_equal(med, ref_med)
            _assert_bit_equal(mad, ref_mad)
            _assert_numpy_equal(med, mad, k.ring, k.count, min_count)
            calls += 1
    assert calls == 300 * 25


def test_kernel_rebuilds_from_a_state_it_did_not_write() -> None:
    """A sorted copy that does not match the ring (state corrupted, or a caller that moved
    the ring itself) is rebuilt, not trusted: the statistics still equal median_mad."""
    rng = np.random.default_rng(7)
    k = _Kernel(2, 30)
    for _ in range(45):
        k.push(0, rng.standard_normal())
        k.push(1, rng.standard_normal())
    k.stats(1)
    k.sorted[:] = rng.standard_normal(k.sorted.shape)     # garbage, not even sorted
    for _ in range(5):
        k.push(0, rng.standard_normal())
        k.push(1, rng.standard_normal())
    med, mad = k.stats(1)
    ref_med, ref_mad = np.empty(2), np.empty(2)
    median_mad(k.ring, k.count, 1, np.empty(30), ref_med, ref_mad)
    # a leaving value is not in the garbage copy, so both rows were rebuilt
    _assert_bit_equal(med, ref_med)
    _assert_bit_equal(mad, ref_mad)
    k.synced[0] = 10 ** 6                                  # a count ahead of the ring's
    k.push(0, 3.0)
    med, mad = k.stats(1)
    median_mad(k.ring, k.count, 1, np.empty(30), ref_med, ref_mad)
    _assert_bit_equal(med, ref_med)
    _assert_bit_equal(mad, ref_mad)


def test_kernel_with_a_nan_in_the_ring_answers_as_quickselect() -> None:
    """RobustBaseline never keeps NaN (it fails ``v <= exclusion``), but a NaN written into
    the ring by hand gives median_mad's answer (quickselect on the row), not a wrong sort."""
    k = _Kernel(1, 9)
    for v in (1.0, 2.0, 3.0, 4.0, 5.0):
        k.push(0, v)
    k.stats(1)
    k.push(0, np.nan)
    med, mad = k.stats(1)
    ref_med, ref_mad = np.empty(1), np.empty(1)
    median_mad(k.ring, k.count, 1, np.empty(9), ref_med, ref_mad)
    _assert_bit_equal(med, ref_med)
    _assert_bit_equal(mad, ref_mad)


def test_kernel_refuses_wrong_buffers() -> None:
    k = _Kernel(2, 10)
    med, mad = np.empty(2), np.empty(2)
    with pytest.raises(ValueError, match="scratch must hold 2 L values"):
        running_median_mad(k.ring, k.pos, k.count, 1, k.prev, k.sorted, k.synced,
                           np.empty(15), k.index, med, mad)
    with pytest.raises(ValueError, match="sorted must have shape"):
        running_median_mad(k.ring, k.pos, k.count, 1, k.prev, np.zeros((2, 9)), k.synced,
                           k.scratch, k.index, med, mad)
    with pytest.raises(ValueError, match="index must have shape"):
        running_median_mad(k.ring, k.pos, k.count, 1, k.prev, k.sorted, k.synced,
                           k.scratch, np.zeros(10, dtype=np.int64), med, mad)
    with pytest.raises(ValueError, match="prev and ring must not share memory"):
        running_median_mad(k.ring, k.pos, k.count, 1, k.ring, k.sorted, k.synced,
                           k.scratch, k.index, med, mad)
    with pytest.raises(TypeError, match="synced must have dtype int64"):
        running_median_mad(k.ring, k.pos, k.count, 1, k.prev, k.sorted, np.zeros(2),
                           k.scratch, k.index, med, mad)


@pytest.mark.parametrize("absolute", [False, True])
@pytest.mark.parametrize("step", [1, 3, 7])
def test_baseline_push_equals_its_twin(absolute: bool, step: int) -> None:
    """baseline_push (RobustBaseline._push in C) against the NumPy twin written from its
    docstring, block after block of random lengths, with NaN, exclusion per channel and
    more points than the ring holds in one block."""
    import twins

    rng = np.random.default_rng(step)
    c, length = 3, 11
    got = [np.zeros((c, length)), np.zeros(c, dtype=np.int64), np.zeros(c, dtype=np.int64)]
    ref = [a.copy() for a in got]
    excl = np.array([np.inf, 0.5, 0.1])
    first = 0
    for _ in range(60):
        n = int(rng.integers(0, 90))
        f = rng.standard_normal((n, c))
        f[rng.random((n, c)) < 0.1] = np.nan
        baseline_push(f, first, step, absolute, *got, excl)
        twins.baseline_push(f, first, step, absolute, *ref, excl)
        first += n
        for g, r in zip(got, ref, strict=True):
            np.testing.assert_array_equal(g, r)
    assert got[2][0] > length and got[2][2] > 0


# ----------------------------------------------------------------- inside RobustBaseline


@pytest.fixture
def checked(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every recomputation of every RobustBaseline checks the running kernel's result
    against median_mad and numpy.median of the ring at that moment; returns the list that
    counts the checked calls."""
    calls = [0]
    real = baseline_mod.running_median_mad

    def check(ring, pos, counts, min_count, prev, sorted_, synced, scratch, index, med, mad):
        real(ring, pos, counts, min_count, prev, sorted_, synced, scratch, index, med, mad)
        ref_med, ref_mad = np.empty_like(med), np.empty_like(mad)
        median_mad(ring, counts, min_count, np.empty(ring.shape[1]), ref_med, ref_mad)
        _assert_bit_equal(med, ref_med)
        _assert_bit_equal(mad, ref_mad)
        _assert_numpy_equal(med, mad, ring, counts, min_count)
        calls[0] += 1

    monkeypatch.setattr(baseline_mod, "running_median_mad", check)
    return calls


def _quickselect_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The recomputation as it was before issue 23: median_mad over the whole ring."""

    def old(ring, pos, counts, min_count, prev, sorted_, synced, scratch, index, med, mad):
        median_mad(ring, counts, min_count, scratch[:ring.shape[1]], med, mad)

    monkeypatch.setattr(baseline_mod, "running_median_mad", old)


def _signal(kind: str, n: int, c: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.abs(rng.standard_normal((n, c))) * 1e-5
    if kind == "events":                       # bursts the exclusion keeps out
        x[n // 3:n // 2:3] += 5e-4
    elif kind == "constant":                   # a flat channel beside a live one
        x[:, 0] = 2e-6
    elif kind == "ties":
        x = np.round(x * 1e5) * 1e-5
    elif kind == "nan":                        # NaN bursts: never kept
        x[n // 4:n // 4 + 300, :] = np.nan
        x[n // 2:n // 2 + 7, -1] = np.nan
    elif kind == "signed":                     # tracked with absolute=True
        x = rng.standard_normal((n, c)) * 1e-5
    return x


CASES = [  # (signal, fs, history_s, step_s, update_s, exclude_sd, update_phase, hold_s)
    ("events", 200.0, 4.0, 0.01, 0.5, 2.0, 0.0, 0.0),
    ("constant", 100.0, 3.0, 0.02, 0.25, 3.0, 0.3, 0.0),
    ("ties", 250.0, 2.0, 0.004, 0.1, 2.5, 0.67, 0.0),
    ("nan", 100.0, 5.0, 0.05, 1.0, 2.0, 0.1, 0.0),
    ("signed", 250.0, 6.0, 0.02, 0.5, np.inf, 0.67, 0.0),
    ("events", 100.0, 2.0, 0.01, 3.0, 2.0, 0.5, 10.0),    # update interval > history
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] + f"-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_baseline_statistics_equal_the_quickselect_path(
        case: tuple, chunk: int | None, checked: list[int],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The statistics in force at every sample, fed in chunks of 1, 7, 64 or whole, with a
    reset in the middle, equal those of the quickselect path fed whole -- bit for bit --
    and every update point's statistics equal numpy.median of the ring (``checked``)."""
    kind, fs, history_s, step_s, update_s, exclude_sd, phase, hold_s = case
    n, c = 6000, 3
    x = _signal(kind, n, c, seed=len(kind))
    absolute = kind == "signed"
    kw = dict(history_s=history_s, step_s=step_s, update_s=update_s, exclude_sd=exclude_sd,
              update_phase=phase, hold_s=hold_s, absolute=absolute)
    half = n // 2

    def run(b: RobustBaseline, step: int) -> tuple[np.ndarray, np.ndarray]:
        m, s = np.empty_like(x), np.empty_like(x)
        for lo, hi in ((0, half), (half, n)):
            if lo:
                b.reset()
            for i in range(lo, hi, step):
                j = min(i + step, hi)
                b.process(x[i:j], m[i:j], s[i:j])
        return m, s

    got_m, got_s = run(RobustBaseline(c, fs, **kw), chunk or n)
    assert checked[0] > 10
    with monkeypatch.context() as mp:
        _quickselect_path(mp)
        ref_m, ref_s = run(RobustBaseline(c, fs, **kw), n)
    _assert_bit_equal(got_m, ref_m)
    _assert_bit_equal(got_s, ref_s)
    assert np.isfinite(got_m[half - 1]).all() or kind == "nan"


def test_process_runs_kernel_path_keeps_the_sorted_copy_in_step(checked: list[int]) -> None:
    """``process_runs`` pushes through the C kernel ``baseline_runs`` between update points
    (the ring is written without RobustBaseline._push); every update still sees exactly
    the ring's contents (``checked``)."""
    fs, n, c = 250.0, 20000, 2
    x = _signal("events", n, c, seed=3)
    b = RobustBaseline(c, fs, history_s=8.0, step_s=0.02, update_s=0.5, exclude_sd=2.0)
    med, sd, thr = np.empty((64, c)), np.empty((64, c)), np.empty((64, c))
    carry, runs = np.zeros(c, dtype=np.int64), np.empty((64, c), dtype=np.int64)
    for i in range(0, n, 64):
        m = min(64, n - i)
        b.process_runs(x[i:i + m], med[:m], sd[:m], 3.0, carry, runs[:m], thr[:m])
    assert checked[0] == b.n_updates > 50


# ----------------------------------------------------------------- detectors, real EEG

DREAMS = DATA / "dreams_dev"


def _dreams(n: int) -> tuple[np.ndarray, np.ndarray, float, tuple[str, ...]]:
    from engramloop.drivers.files import load_file

    d = load_file(require_data(DREAMS / f"excerpt{n}.edf"))
    return d.samples, d.timestamps, d.rate_hz, d.channels


@pytest.mark.parametrize("excerpt", [1, 5])
def test_detector_events_on_real_eeg_equal_the_quickselect_path(
        excerpt: int, checked: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    """Spindle and slow-oscillation detectors over a whole DREAMS excerpt (expert-scored
    human sleep EEG, 1800 s): the same events, field for field, as with the quickselect
    recomputation; each update point checked against numpy.median of the ring."""
    from engramloop.analysis.scoring import replay
    from engramloop.decoders.slow_osc import SlowOscDetector, SlowOscSettings
    from engramloop.decoders.spindle import SpindleDetector, SpindleSettings

    x, t, fs, names = _dreams(excerpt)

    def events() -> list:
        stages = [SpindleDetector(dataclasses.replace(SpindleSettings(), channels=names)),
                  SlowOscDetector(dataclasses.replace(SlowOscSettings(), channels=names))]
        return replay(stages, x, t, fs, names, 64)

    got = events()
    assert checked[0] > 1000
    with monkeypatch.context() as mp:
        _quickselect_path(mp)
        ref = events()
    kinds = {e.kind for e in ref}
    assert len(ref) > 50 and len(kinds) >= 2, kinds
    assert got == ref
