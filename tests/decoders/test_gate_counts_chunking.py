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
