"""Scoring: matching, precision/recall/F1, FP per minute, latencies, circular statistics
(against scipy.stats), and ``engramloop score`` on a real XDF written by the recorder."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from engramloop.analysis.scoring import (
    Interval,
    circular_mean_sd,
    match_events,
    score_detections,
    score_phase,
    so_phase_from_events,
)


def test_matching_is_one_to_one_in_time_order() -> None:
    truth = [Interval(1.0, 1.1, 1.05), Interval(2.0, 2.1, 2.05), Interval(2.12, 2.2, 2.16)]
    # two detections in the first event: only one counts; one inside the tolerance of the
    # second; one far away
    det = [1.02, 1.06, 2.13, 5.0]
    pairs = match_events(det, truth, tol_before_s=0.05, tol_after_s=0.05)
    assert pairs == [(0, 0), (2, 1)]
    sc = score_detections(det, truth, duration_s=120.0)
    assert (sc.true_positives, sc.false_positives, sc.false_negatives) == (2, 2, 1)
    assert sc.precision == 0.5 and sc.recall == pytest.approx(2 / 3)
    assert sc.f1 == pytest.approx(2 * 2 / (4 + 3))
    assert sc.fp_per_min == pytest.approx(1.0)
    assert sc.latency_onset_median_s == pytest.approx(np.median([0.02, 0.13]))
    assert sc.latency_peak_p90_s == pytest.approx(np.percentile([-0.03, 0.08], 90))


def test_empty_inputs_give_nan_not_errors() -> None:
    sc = score_detections([], [], 60.0)
    assert math.isnan(sc.f1) and sc.fp_per_min == 0.0
    sc = score_detections([1.0], [], 60.0)
    assert sc.false_positives == 1 and math.isnan(sc.recall)


def test_circular_statistics_match_scipy() -> None:
    rng = np.random.default_rng(0)
    a = rng.vonmises(0.4, 3.0, 500)
    deg = np.degrees(a)
    mean, sd, r = circular_mean_sd(deg)
    assert math.radians(mean) == pytest.approx(
        (stats.circmean(a, high=np.pi, low=-np.pi) + np.pi) % (2 * np.pi) - np.pi, abs=1e-9)
    assert math.radians(sd) == pytest.approx(stats.circstd(a, high=np.pi, low=-np.pi),
                                             rel=1e-9)
    assert 0 < r < 1


def test_phase_score_target_half_cycle() -> None:
    true = np.array([-10.0, 10.0, 80.0, -100.0, 170.0, np.nan])
    ph = score_phase(true, 0.0)
    assert ph.n == 5
    assert ph.fraction_in_target_half == pytest.approx(3 / 5)
    # estimated 0 everywhere: error = -true
    assert score_phase([20.0, 20.0], 0.0).mean_error_deg == pytest.approx(-20.0)
    assert score_phase([20.0], 0.0, estimated_deg=[25.0]).mean_error_deg == pytest.approx(5.0)


def test_so_phase_from_truth_landmarks_matches_simulator() -> None:
    from engramloop.sim.generate import simulate

    _, _, truth = simulate(seed=1, duration_s=90.0)
    t = np.linspace(0, 90, 5000)
    ours = so_phase_from_events([e.to_dict() for e in truth.events("so")], t)
    ref = truth.phase("so", t)
    assert np.array_equal(np.isfinite(ours), np.isfinite(ref))
    ok = np.isfinite(ref)
    assert ok.sum() > 100
    assert np.max(np.abs((ours[ok] - ref[ok] + 180) % 360 - 180)) < 1e-6


def _record(path, events, truth, duration_s=60.0, t0_s=0.0) -> None:
    from engramloop.controller.recorder import Recorder
    from engramloop.core.chunk import Chunk

    rec = Recorder(path, "# test\n")
    rec.add_signal_stream(Chunk(np.zeros((1, 1)), np.zeros(1), 100.0, ("Cz",), 0.0))
    rec.start()
    n = int(duration_s * 100)
    t = t0_s + np.arange(n) / 100.0
    rec.write_chunk(Chunk(np.zeros((n, 1)), t, 100.0, ("Cz",), 0.0))
    for e in events:
        rec.write_marker("events", e["detect_s"], e)
    for e in truth:
        rec.write_marker("truth", e["onset_s"], e)
    rec.close()


def test_score_command_on_an_xdf(tmp_path, capsys) -> None:
    from engramloop.cli import main
    from engramloop.core.events import Event

    events = [Event("calibration_done", "spindle", 0.0, 5.0).to_dict()]
    events += [Event("spindle", "Cz", o, o + 0.3).to_dict() for o in (10.0, 20.0, 30.0, 45.0)]
    events.append(Event("so", "Fz", 50.0, 50.2).to_dict())   # NaNs travel as JSON null
    truth = [{"kind": "spindle", "channel": "Cz", "onset_s": o, "peak_s": o + 0.5,
              "offset_s": o + 1.0, "meta": {}} for o in (2.0, 10.0, 20.0, 30.0, 40.0)]
    path = tmp_path / "run.xdf"
    _record(path, events, truth)
    assert main(["score", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sp = out["spindle"]
    # the truth event at 2 s lies in the calibration period and is not scored
    assert (sp["n_truth"], sp["true_positives"], sp["false_positives"]) == (4, 3, 1)
    assert sp["latency_onset_median_s"] == pytest.approx(0.3)
    assert "so_phase" not in out          # the SO event has no prediction (NaN -> null)
    assert out["calibration_end_s"] == 5.0
    assert main(["score", str(path)]) == 0
    assert "spindle" in capsys.readouterr().out
    # expert annotations as CSV of onset,duration replace the recording's truth
    csv = tmp_path / "expert.csv"
    csv.write_text("onset,duration\n10.1,0.8\n45.1,0.6\n")
    assert main(["score", str(path), "--truth", str(csv), "--json"]) == 0
    sp = json.loads(capsys.readouterr().out)["spindle"]
    assert (sp["n_truth"], sp["true_positives"]) == (2, 2)


def test_score_command_runs_detectors_on_sim_npz(tmp_path, capsys) -> None:
    from engramloop.cli import main

    path = tmp_path / "night.npz"
    assert main(["sim", "--duration", "40", "--out", str(path), "--seed", "2"]) == 0
    capsys.readouterr()
    assert main(["score", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ripple"]["n_truth"] > 10 and out["ripple"]["f1"] > 0.8


def test_score_command_errors_are_one_line(tmp_path, capsys) -> None:
    from engramloop.cli import main

    assert main(["score", str(tmp_path / "nope.xdf")]) == 2
    assert "nope.xdf: file not found" in capsys.readouterr().err
    bad = tmp_path / "x.txt"
    bad.write_text("1")
    assert main(["score", str(bad)]) == 2
    assert "use an .xdf" in capsys.readouterr().err


def test_circular_statistics_of_identical_angles() -> None:
    """Rounding can make R a hair above 1 for identical angles: SD 0, no math error."""
    mean, sd, r = circular_mean_sd([33.3] * 7)
    assert abs(mean - 33.3) < 1e-9 and sd == 0.0 and r == 1.0


def test_score_aligns_csv_annotations_and_other_truth_files_with_the_recording(
        tmp_path, capsys) -> None:
    """A recording on a live rig's host clock (first sample at 5000 s): CSV onsets count
    from its first sample, and truth from another recording (e.g. the file it replayed)
    is aligned at the first samples -- the same scores as on a recording starting at 0."""
    from engramloop.cli import main
    from engramloop.core.events import Event

    def events(t0):
        ev = [Event("calibration_done", "spindle", t0, t0 + 5.0).to_dict()]
        return ev + [Event("spindle", "Cz", t0 + o, t0 + o + 0.3).to_dict()
                     for o in (10.0, 20.0, 30.0, 45.0)]

    def truth(t0):
        return [{"kind": "spindle", "channel": "Cz", "onset_s": t0 + o, "peak_s": t0 + o + .5,
                 "offset_s": t0 + o + 1.0, "meta": {}} for o in (2.0, 10.0, 20.0, 30.0)]

    at0, late = tmp_path / "at0.xdf", tmp_path / "late.xdf"
    _record(at0, events(0.0), truth(0.0))
    _record(late, events(5000.0), [], t0_s=5000.0)
    csv = tmp_path / "expert.csv"
    csv.write_text("onset,duration\n10.1,0.8\n45.1,0.6\n")
    got = {}
    for rec in (at0, late):
        assert main(["score", str(rec), "--truth", str(csv), "--json"]) == 0
        got[rec.name, "csv"] = json.loads(capsys.readouterr().out)["spindle"]
        assert main(["score", str(rec), "--truth", str(at0), "--json"]) == 0
        got[rec.name, "xdf"] = json.loads(capsys.readouterr().out)["spindle"]
    assert (got["late.xdf", "csv"]["n_truth"], got["late.xdf", "csv"]["true_positives"]) == (2, 2)
    assert got["late.xdf", "csv"] == pytest.approx(got["at0.xdf", "csv"], abs=1e-9)
    assert got["late.xdf", "xdf"]["true_positives"] == 3
    assert got["late.xdf", "xdf"] == pytest.approx(got["at0.xdf", "xdf"], abs=1e-9)
