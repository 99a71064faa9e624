"""What the spindle and ripple gates pass over is counted the same whatever the chunk
size (1, 7, 64 and whole; the first test of every streaming stage, STYLE.md), on real
recordings we did not make: DREAMS excerpt 1 with electrode pops added (the alpha veto and
the artefact hold, counted in the C kernel's run state -- both the fused path and the
baseline-update path run) and the rat CA1 running LFP (the theta gate). The counts must
also not change the events.
"""
from __future__ import annotations

import numpy as np
import pytest
from shared_data import DATA, require_data  # noqa: E402

from engramloop.core.chunk import Chunk
from engramloop.decoders.ripple import RippleDetector, RippleSettings
from engramloop.decoders.spindle import SpindleDetector, SpindleSettings

CHUNKS = (1, 7, 64, None)


def _run(det, x: np.ndarray, fs: float, name: str, size: int | None):
    t = np.arange(x.size) / fs
    size = size or x.size
    events = []
    for i in range(0, x.size, size):
        events += det.process(Chunk(samples=np.ascontiguousarray(x[i:i + size, None]),
                                    timestamps=t[i:i + size], channels=(name,), rate_hz=fs,
                                    arrival_s=0.0))
    return [(e.kind, e.detect_s) for e in events], dict(det.passed_over)


def test_spindle_gate_counts_do_not_depend_on_chunking() -> None:
    pyedflib = pytest.importorskip("pyedflib")
    path = DATA / "dreams_dev" / "excerpt1.edf"
    require_data(path)
    with pyedflib.EdfReader(str(path)) as r:
        fs = float(r.getSampleFrequency(0))
        x = r.readSignal(0)[:int(200 * fs)]
    t = np.arange(x.size) / fs
    for t0 in (60.0, 100.0, 140.0):
        x[t >= t0] += 2000.0 * np.exp(-(t[t >= t0] - t0) / 0.3)
    runs = [_run(SpindleDetector(SpindleSettings(channels=("C3-A1",))), x, fs, "C3-A1", n)
            for n in CHUNKS]
    for got in runs[1:]:
        assert got == runs[0]
    counts = runs[0][1]
    assert counts["artefact_hold"] == 3 and counts["alpha_veto"] >= 1, counts
    # the alpha veto off: nothing is counted under it, and no fewer spindles fire
    off = _run(SpindleDetector(SpindleSettings(channels=("C3-A1",), alpha_ratio_max=0.0)),
               x, fs, "C3-A1", 64)
    assert off[1]["alpha_veto"] == 0
    assert (sum(k == "spindle" for k, _ in off[0])
            >= sum(k == "spindle" for k, _ in runs[0][0]))


def test_ripple_gate_counts_do_not_depend_on_chunking() -> None:
    path = DATA / "rat_ca1_theta_1000hz.npy"
    require_data(path)
    x = np.load(path).astype(np.float64)[:60_000]
    runs = [_run(RippleDetector(RippleSettings(channels=("CA1",))), x, 1000.0, "CA1", n)
            for n in CHUNKS]
    for got in runs[1:]:
        assert got == runs[0]
    assert runs[0][1]["theta_gate"] >= 5, runs[0][1]
    assert not any(k == "ripple" for k, _ in runs[0][0])


def _gate_counts_twin(env, eb, es, pm, ea, med, sd, rules) -> np.ndarray:
    """What spindle_runs counts, written out from the NumPy twin of its rules
    (twins.spindle_rules): per channel the runs that met every firing rule but the alpha
    veto at some sample and never all of them (counted when the run ends), the stretches
    of held samples and the held samples. Returns (3, c)."""
    import twins

    k_lo, k_hi, rel, corr, amax, min_n, max_n, k_art, hold_n = rules
    runs, fire = twins.spindle_rules(env, eb, es, pm, ea, med, sd, *rules)
    _, pre = twins.spindle_rules(env, eb, es, pm, None, med, sd, *rules)
    vetoed = pre.astype(bool) & ~fire.astype(bool)
    n, c = env.shape
    art = env > med + k_art * sd
    idx = np.arange(n)[:, None]
    until = np.maximum.accumulate(np.where(art, idx + hold_n, -1), axis=0)
    held = art | (idx <= until)
    out = np.zeros((3, c), dtype=np.int64)
    for j in range(c):
        seen_veto = seen_fire = False
        for i in range(n):
            if runs[i, j] == 0 and i > 0 and runs[i - 1, j] > 0:
                out[0, j] += seen_veto and not seen_fire
                seen_veto = seen_fire = False
            seen_veto |= bool(vetoed[i, j])
            seen_fire |= bool(fire[i, j])
        out[1, j] = int(held[0, j]) + int(np.count_nonzero(held[1:, j] & ~held[:-1, j]))
        out[2, j] = int(held[:, j].sum())
    return out


@pytest.mark.parametrize("piece", CHUNKS)
def test_spindle_runs_counts_match_numpy(piece: int | None) -> None:
    from engramloop.decoders._filters import spindle_runs

    rng = np.random.default_rng(2)
    n, c = 600, 2
    env = np.abs(np.cumsum(rng.normal(size=(n, c)), axis=0)) * 0.1 + 0.1
    es = env * rng.uniform(0.8, 1.2, size=(n, c))
    eb = env * rng.uniform(1.0, 1.6, size=(n, c))
    pm = np.abs(rng.normal(size=(n, 4 * c))) + np.tile(env, 4)
    ea = env * rng.uniform(0.0, 1.2, size=(n, c))
    med, sd = np.full((n, c), 0.2), np.full((n, c), 0.05)
    env[[100, 101, 300, 330], [0, 0, 1, 1]] = 50.0
    rules = (1.0, 3.0, 0.1, 0.4, 0.6, 4, 40, 100.0, 25)
    ref = _gate_counts_twin(env, eb, es, pm, ea, med, sd, rules)
    assert ref[0].sum() > 0 and (ref[1] > 0).all(), ref   # the test exercises both
    state = np.zeros((5, c), dtype=np.int64)     # hold, then the counts' rows
    runs = np.empty((n, c), dtype=np.int64)
    fire = np.empty((n, c), dtype=np.int64)
    carry = np.zeros(c, dtype=np.int64)
    size = piece or n
    for a in range(0, n, size):
        b = min(n, a + size)
        spindle_runs(env[a:b], eb[a:b], es[a:b], pm[a:b], ea[a:b], med[a:b], sd[a:b], *rules,
                     carry, state, runs[a:b], fire[a:b])
    np.testing.assert_array_equal(state[2:], ref)
    # and counting changes nothing: the same runs and fire as without the counts
    runs1, fire1 = np.empty_like(runs), np.empty_like(fire)
    spindle_runs(env, eb, es, pm, ea, med, sd, *rules, np.zeros(c, dtype=np.int64),
                 np.zeros(c, dtype=np.int64), runs1, fire1)
    np.testing.assert_array_equal(runs, runs1)
    np.testing.assert_array_equal(fire, fire1)
