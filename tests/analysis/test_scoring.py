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
    # the file's hypnogram gives densities per sleep stage, counted here by hand
    from engramloop.sim.truth import Truth

    with np.load(path) as z:
        tr = Truth.from_json(str(z["truth"]))
    per = out["ripple"]["per_stage"]
    lo = out["calibration_end_s"]
    hi = lo + out["duration_s"]
    minutes: dict = {}
    counts: dict = {}
    for on, off, st in zip(tr.seg_start, tr.seg_end, tr.seg_stage, strict=True):
        a, b = max(on + tr.t0_s, lo), min(off + tr.t0_s, hi)
        if b > a:
            minutes[st] = minutes.get(st, 0.0) + (b - a) / 60.0
            counts[st] = counts.get(st, 0) + sum(a <= e.onset_s < b
                                                 for e in tr.events("ripple"))
    assert minutes and set(per) == set(minutes)
    for st, m in minutes.items():
        assert per[st]["minutes"] == pytest.approx(m)
        assert per[st]["truth_per_min"] == pytest.approx(counts[st] / m)
    assert main(["score", str(path)]) == 0
    assert "per sleep stage" in capsys.readouterr().out


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


def _expert_csv(ex: int, k: int):
    from shared_data import DATA, require_data

    path = DATA / "dreams_dev" / f"excerpt{ex}_expert{k}.csv"
    require_data(path)
    return path


def _hand_f1(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> float:
    """F1 of intervals ``a`` (detections) against ``b`` (reference) by hand: every pair
    that overlaps, then the largest one-to-one pairing by augmenting paths (Kuhn's
    algorithm), F1 = 2 * pairs / (len(a) + len(b))."""
    adj = [[j for j, (c, d) in enumerate(b) if s <= d and e >= c] for s, e in a]
    owner: dict[int, int] = {}

    def augment(i: int, seen: set) -> bool:
        for j in adj[i]:
            if j not in seen:
                seen.add(j)
                if j not in owner or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    pairs = sum(augment(i, set()) for i in range(len(a)))
    return 2 * pairs / (len(a) + len(b))


@pytest.mark.parametrize("ex", [1, 3, 5])
def test_expert_agreement_on_dreams_matches_a_hand_count(ex: int, tmp_path, capsys) -> None:
    """Expert 2 scored as if it were a detector against expert 1 (DREAMS development
    excerpts, expert 1's first 1000 s only): the scoring module and ``engramloop score`` on
    a recording carrying expert 2's spindles as events give the F1 counted by hand."""
    from engramloop.analysis.scoring import read_annotations_csv, score_kind
    from engramloop.cli import main
    from engramloop.core.events import Event

    e1 = read_annotations_csv(_expert_csv(ex, 1))
    e2 = [r for r in read_annotations_csv(_expert_csv(ex, 2)) if r["onset_s"] < 1000.0]
    assert all(r["onset_s"] < 1000.0 for r in e1)
    hand = _hand_f1([(r["onset_s"], r["offset_s"]) for r in e2],
                    [(r["onset_s"], r["offset_s"]) for r in e1])
    assert 0.3 < hand < 0.9                  # the README: experts agree at about 0.6
    det = [dict(Event("spindle", "C3-A1", r["onset_s"], r["offset_s"]).to_dict(),
                offset_s=r["offset_s"]) for r in e2]
    sc = score_kind("spindle", det, e1, 1000.0)
    assert sc.f1 == pytest.approx(hand, abs=1e-12)
    assert sc.truth_per_min == pytest.approx(len(e1) / (1000.0 / 60.0))
    # latency from expert onset: detection (expert 2's end) minus expert 1's onset
    assert sc.latency_onset_median_s > 0
    path = tmp_path / "e2.xdf"
    _record(path, det, [], duration_s=1000.0)
    assert main(["score", str(path), "--truth", str(_expert_csv(ex, 1)), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["spindle"]
    assert out["f1"] == pytest.approx(hand, abs=1e-12)
    assert (out["n_truth"], out["n_detected"]) == (len(e1), len(e2))


def test_interval_overlap_and_per_stage_density() -> None:
    """A detection (onset to decision) matches an event it overlaps even when it decides
    after the event ended; densities per stage count detections and truth in each
    hypnogram segment inside the span."""
    from engramloop.analysis.scoring import score_recording

    truth = [{"kind": "spindle", "onset_s": 10.0, "offset_s": 11.0},
             {"kind": "spindle", "onset_s": 70.0, "offset_s": 71.0}]
    det = [{"kind": "spindle", "onset_s": 10.5, "detect_s": 11.4},   # decides after offset
           {"kind": "spindle", "onset_s": 30.0, "detect_s": 30.3},
           {"kind": "spindle", "onset_s": 71.5, "detect_s": 71.8}]   # misses by 0.5 s
    stages = [(0.0, 60.0, "N2"), (60.0, 120.0, "N3")]
    out = score_recording(det, truth, 120.0, stages=stages, span=(0.0, 120.0))["spindle"]
    assert (out["true_positives"], out["false_positives"], out["false_negatives"]) == (1, 2, 1)
    assert out["latency_onset_median_s"] == pytest.approx(1.4)
    assert out["per_stage"]["N2"] == {"minutes": 1.0, "detected_per_min": 2.0,
                                      "truth_per_min": 1.0}
    assert out["per_stage"]["N3"]["detected_per_min"] == 1.0


def test_bad_annotation_csv_is_a_one_line_error(tmp_path, capsys) -> None:
    from engramloop.cli import main
    from engramloop.core.events import Event

    path = tmp_path / "r.xdf"
    _record(path, [Event("spindle", "Cz", 10.0, 10.3).to_dict()], [], duration_s=20.0)
    csv = tmp_path / "bad.csv"
    csv.write_text("onset,duration\n1.0,0.5\n2.0,-1\n")
    assert main(["score", str(path), "--truth", str(csv)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.csv: line 3" in err[0] and "duration >= 0" in err[0], err


def test_session_span_starts_at_the_signal_not_the_first_annotation():
    """Annotations that begin after the first sample (an expert's ripples, unlike the
    simulator's truth, which has an event at 0 s) score over the same span as the full
    truth when the signal's start is given."""
    from engramloop.analysis.scoring import score_session

    dets = [{"kind": "calibration_done", "detect_s": 5.0},
            {"kind": "ripple", "detect_s": 10.0}, {"kind": "ripple", "detect_s": 20.0}]
    ripple = {"kind": "ripple", "onset_s": 9.95, "offset_s": 10.05, "peak_s": 10.0}
    full = [{"kind": "so", "onset_s": 0.0, "offset_s": 1.0, "peak_s": 0.5}, ripple]
    a = score_session(dets, full, 40.0)
    b = score_session(dets, [ripple], 40.0, start_s=0.0)
    assert a["duration_s"] == b["duration_s"] == 35.0
    assert a["ripple"]["fp_per_min"] == b["ripple"]["fp_per_min"] > 0
    # without start_s the start is the earliest of the first annotation and the end of
    # calibration: here 5 s, so the calibration period is not taken off the span
    assert score_session(dets, [ripple], 40.0)["duration_s"] == 40.0
