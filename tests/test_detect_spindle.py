"""Spindle detector: real human N2 (YASA's reference spindles) and N3 (no spindles),
chunk-size independence, the max-duration rule, and the simulator's truth."""
from __future__ import annotations

import numpy as np
import pytest
from shared_data import DATA  # noqa: E402

from decoders.scoring import intervals, replay, score_detections
from decoders.spindle import SpindleDetector, SpindleSettings

# The excerpts are 15 s and 30 s long: the detector's 10 s default calibration would eat
# most of them, so these tests calibrate for 2 s and refresh the baseline every 0.5 s
# (settings, documented in the report).
SHORT = dict(channels=("EEG",), calibration_s=2.0, baseline_update_s=0.5)


def load(name: str) -> tuple[np.ndarray, np.ndarray, float]:
    path = DATA / name
    if not path.is_file():
        pytest.skip(f"{path} missing")
    fs = 200.0 if "200Hz" in name else 100.0
    x = np.loadtxt(path)[:, None] * 1e-6          # microvolts -> volts
    return np.ascontiguousarray(x), np.arange(x.shape[0]) / fs, fs


def spindles(ev: list) -> list:
    return [e for e in ev if e.kind == "spindle"]


def test_real_n2_finds_the_reference_spindles() -> None:
    """YASA (offline) puts spindles near 3.3 s and 13.3 s in this excerpt."""
    x, t, fs = load("data_N2_spindles_15sec_200Hz.txt")
    sp = spindles(replay([SpindleDetector(SpindleSettings(**SHORT))], x, t, fs, ("EEG",), 10))
    for ref in (3.3, 13.3):
        assert any(abs(e.onset_s - ref) <= 0.5 for e in sp), (ref, sp)
    assert len(sp) <= 3
    for e in sp:  # online: decided within a few hundred ms of the run's start
        assert 0 < e.detect_s - e.onset_s <= 0.2


def test_real_n3_at_most_one_false_spindle() -> None:
    x, t, fs = load("data_N3_no-spindles_30sec_100Hz.txt")
    sp = spindles(replay([SpindleDetector(SpindleSettings(**SHORT))], x, t, fs, ("EEG",), 10))
    assert len(sp) <= 1


@pytest.mark.parametrize("chunk", [1, 7, 64, None])
def test_chunk_size_independent(chunk: int | None) -> None:
    x, t, fs = load("data_N2_spindles_15sec_200Hz.txt")
    s = SpindleSettings(**SHORT)
    ref = replay([SpindleDetector(s)], x, t, fs, ("EEG",), x.shape[0])
    got = replay([SpindleDetector(s)], x, t, fs, ("EEG",), chunk or x.shape[0])
    assert len(spindles(ref)) >= 2 and got == ref


def test_too_long_sigma_run_is_rejected() -> None:
    """A 5 s sigma tone (e.g. alpha/artefact) fires once, then spindle_rejected."""
    fs = 200.0
    rng = np.random.default_rng(2)
    t = np.arange(int(20 * fs)) / fs
    x = rng.standard_normal(t.size) * 5e-6
    on = (t >= 10) & (t < 15)
    x[on] += 30e-6 * np.sin(2 * np.pi * 13 * t[on])
    ev = replay([SpindleDetector(SpindleSettings(channels=("Cz",), calibration_s=3.0))],
                np.ascontiguousarray(x[:, None]), t, fs, ("Cz",), 10)
    kinds = [(e.kind, round(e.onset_s, 1)) for e in ev
             if e.kind.startswith("spindle") and e.detect_s >= 9.5]
    assert [k for k, _ in kinds] == ["spindle", "spindle_rejected"]
    assert kinds[0][1] == kinds[1][1]
    rej = ev[[e.kind for e in ev].index("spindle_rejected")]
    assert rej.detect_s - rej.onset_s == pytest.approx(2.5, abs=0.01)


def test_simulator_ground_truth() -> None:
    from sim.generate import simulate

    x, t, truth = simulate(seed=4, duration_s=200.0)
    names = tuple(truth.channels)
    ev = replay([SpindleDetector()], x, t, truth.rate_hz, names, x.shape[0])
    cal = next(e.detect_s for e in ev if e.kind == "calibration_done")
    tr = [e for e in truth.events("spindle") if e.onset_s >= cal]
    sc = score_detections([e.detect_s for e in spindles(ev)], intervals(tr), t[-1] - cal)
    assert sc.f1 >= 0.8 and sc.latency_onset_median_s <= 0.6, sc
