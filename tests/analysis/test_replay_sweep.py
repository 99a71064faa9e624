"""`engramloop replay` at --speed max shows progress with ETA (plain lines off a terminal,
nothing with --quiet), and `--sweep` replays a file once per setting: one row per value,
each equal to a separate single replay with that setting scored by `engramloop score`."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from engramloop.analysis.sweep import (
    SweepError,
    Truth,
    config_with,
    grid,
    parse_sweep,
    parse_value,
    split_values,
)
from engramloop.cli import main
from engramloop.controller.config import SHIPPED_DIR
from engramloop.core.schema import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CFG = SHIPPED_DIR / "sim-ripple.toml"
DUR = 40


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> dict:
    """A simulated N3 recording with ground truth, as .xdf and .npz (same seed)."""
    d = tmp_path_factory.mktemp("night")
    out = {}
    for ext in ("xdf", "npz"):
        path = d / f"night.{ext}"
        assert main(["sim", "--config", str(CFG), "--duration", str(DUR), "--out",
                     str(path)]) == 0
        out[ext] = path
    out["dir"] = d
    return out


def _progress_lines(err: str, what: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith(f"{what}")]


def test_replay_at_max_speed_shows_progress_lines_and_quiet_shows_none(night, capsys):
    capsys.readouterr()
    assert main(["replay", str(CFG), str(night["xdf"]), "--speed", "max"]) == 0
    cap = capsys.readouterr()
    lines = _progress_lines(cap.err, "replay:")
    assert lines[0] == f"replay: 0% (0/{DUR} s), elapsed 0:00:00, ETA -:--:--"
    assert re.fullmatch(rf"replay: 100% \({DUR}/{DUR} s\), elapsed \d:\d\d:\d\d", lines[-1])
    assert "\x1b[" not in cap.err                       # plain text, no terminal codes
    assert "replay:" not in cap.out                     # results only on stdout
    assert main(["replay", str(CFG), str(night["xdf"]), "--speed", "max", "--quiet"]) == 0
    cap = capsys.readouterr()
    assert cap.err == "" and "sham / ripple" in cap.out


def test_simulated_trial_and_its_twin_share_one_progress(tmp_path, capsys):
    assert main(["run", str(CFG), "--duration", "15", "--speed", "max", "--report",
                 str(tmp_path / "r")]) == 0
    lines = _progress_lines(capsys.readouterr().err, "run")
    assert lines[0].startswith("run: 0% (0/30 s)")
    assert lines[-1].startswith("run + sham twin: 100% (30/30 s)")
    # in real time the run has the dashboard; its twin (at max speed) gets the progress
    assert main(["run", str(CFG), "--duration", "2", "--report", str(tmp_path / "rt")]) == 0
    err = capsys.readouterr().err
    assert "engramloop" in err.split("sham twin: 0%")[0]          # the dashboard's snapshot
    assert _progress_lines(err, "sham twin: 100% (")  # as long as the run was (about 2 s)


def _single_replay_score(night: dict, tmp_path: Path, threshold: float) -> tuple[dict, Path]:
    """What a lab would do by hand: edit the config, replay, score."""
    text = CFG.read_text(encoding="utf-8").replace(
        "[detectors.ripple]\n", f"[detectors.ripple]\nthreshold_sd = {threshold}\n")
    cfg = tmp_path / f"t{threshold}.toml"
    cfg.write_text(text, encoding="utf-8")
    rec = tmp_path / f"t{threshold}.xdf"
    assert main(["replay", str(cfg), str(night["xdf"]), "--speed", "max", "--record",
                 str(rec), "--quiet"]) == 0
    return rec, cfg


def test_sweep_has_one_row_per_value_equal_to_single_replays(night, tmp_path, capsys):
    values = ["3", "4.5", "6"]
    capsys.readouterr()
    assert main(["replay", str(CFG), str(night["xdf"]), "--sweep",
                 "detectors.ripple.threshold_sd=" + ",".join(values)]) == 0
    cap = capsys.readouterr()
    table = cap.out.splitlines()
    assert table[0].startswith(f"# sweep of {night['xdf']} ({DUR:.1f} s per replay, 3 ")
    assert table[1].split() == ["threshold_sd", "ripple", "det", "prec", "recall", "F1",
                                "FP/min", "det/min", "lat", "ms"]
    rows = [r.split() for r in table[2:]]
    assert [r[0] for r in rows] == values               # one row per value, in order
    assert _progress_lines(cap.err, "sweep 3/3: 100%")  # one bar over the whole sweep
    assert main(["replay", str(CFG), str(night["xdf"]), "--quiet", "--json", "--sweep",
                 "detectors.ripple.threshold_sd=" + ",".join(values)]) == 0
    points = [json.loads(ln) for ln in capsys.readouterr().out.splitlines()]
    assert [p["setting"] for p in points] == [{"detectors.ripple.threshold_sd": v}
                                              for v in values]
    f1 = []
    for v, p, row in zip(values, points, rows, strict=True):
        rec, _ = _single_replay_score(night, tmp_path, float(v))
        capsys.readouterr()                             # its summary
        assert main(["score", str(rec), "--truth", str(night["xdf"]), "--json"]) == 0
        single = json.loads(capsys.readouterr().out)
        assert p["score"] == single                     # the same numbers, exactly
        r = single["ripple"]
        assert row[1:8] == [str(r["n_detected"]), f"{r['precision']:.3f}",
                            f"{r['recall']:.3f}", f"{r['f1']:.3f}",
                            f"{r['fp_per_min']:.2f}", f"{r['detected_per_min']:.2f}",
                            f"{r['latency_onset_median_s'] * 1e3:.1f}"]
        f1.append(r["f1"])
    # the setting matters (a sweep of identical rows would prove nothing)
    assert len({p["counts"]["ripple"] for p in points}) == 3
    # without truth (a replay recording carries none): counts and rates, equal to the
    # single replay's own detections
    assert main(["replay", str(CFG), str(rec), "--quiet", "--sweep",
                 "detectors.ripple.threshold_sd=6"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert "no truth" in out[0] and out[1].split() == ["threshold_sd", "ripple", "det",
                                                       "per", "min"]
    assert out[2].split()[:2] == ["6", str(points[-1]["counts"]["ripple"])]


def test_sweep_scores_against_annotations_and_any_time_base(night, tmp_path, capsys):
    """CSV annotations count from the start of the file; a file whose clock starts at
    500 s scores exactly like the same file starting at 0."""
    from engramloop.sim.truth import Truth as SimTruth

    with np.load(night["npz"], allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    doc = json.loads(str(arrays["truth"]))
    assert doc["t0_s"] == 0.0 and arrays["timestamps"][0] == 0.0
    ripples = SimTruth.from_json(str(arrays["truth"])).events("ripple")
    csv = tmp_path / "expert.csv"
    csv.write_text("onset,duration\n" + "".join(f"{e.onset_s},{e.offset_s - e.onset_s}\n"
                                                 for e in ripples), encoding="utf-8")
    doc["t0_s"] = 500.0
    shifted = tmp_path / "shifted.npz"
    np.savez(shifted, **{**arrays, "timestamps": arrays["timestamps"] + 500.0,
                         "truth": json.dumps(doc)})

    def sweep(path: Path, *extra: str) -> dict:
        assert main(["replay", str(CFG), str(path), "--quiet", "--json", "--sweep",
                     "detectors.ripple.threshold_sd=4", *extra]) == 0
        return json.loads(capsys.readouterr().out)["score"]

    def flat(d: dict, prefix: str = "") -> dict:
        out = {}
        for k, v in d.items():
            out.update(flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k: v})
        return out

    base = sweep(night["npz"])
    moved = flat(sweep(shifted))
    assert moved.keys() == flat(base).keys()
    for k, v in flat(base).items():                     # equal up to float rounding
        want = v if v is None else pytest.approx(v, rel=1e-9, abs=1e-9, nan_ok=True)
        assert moved[k] == want, k
    ann = sweep(shifted, "--truth", str(csv), "--kind", "ripple")["ripple"]
    for key in ("n_truth", "n_detected", "true_positives", "precision", "recall", "f1",
                "fp_per_min", "latency_onset_median_s"):
        assert ann[key] == pytest.approx(base["ripple"][key], rel=1e-9), key


def test_sweep_arguments_and_errors(tmp_path, capsys):
    assert split_values("3,4,[1.0, 2.0],'a,b'") == ["3", "4", "[1.0, 2.0]", "'a,b'"]
    assert parse_value("3") == 3 and parse_value("[150.0, 250.0]") == [150.0, 250.0]
    assert parse_value("sham") == "sham" and parse_value("true") is True
    axes = parse_sweep(["a.b=1,2", "c=x,y,z"])
    assert [pt["c"][0] for pt in grid(axes)] == ["x", "y", "z"] * 2
    assert [pt["a.b"][1] for pt in grid(axes)] == [1, 1, 1, 2, 2, 2]
    for bad in ("threshold_sd", "=3", "a.b=", "a.b=1,,2"):
        with pytest.raises(SweepError, match="expected KEY=V1,V2"):
            parse_sweep([bad])
    with pytest.raises(SweepError, match="given twice"):
        parse_sweep(["a=1", "a=2"])
    cfg = config_with(CFG, {"detectors.ripple.threshold_sd": 4, "policy.condition": "sham"})
    assert cfg.detectors.ripple.threshold_sd == 4.0 and cfg.policy.condition == "sham"
    with pytest.raises(ConfigError, match=r"detectors\.ripple\.threshold_sd: must be"):
        config_with(CFG, {"detectors.ripple.threshold_sd": "x"})
    with pytest.raises(ConfigError, match=r"detectors\.ripple\.thresh: unknown key"):
        config_with(CFG, {"detectors.ripple.thresh": 3})
    with pytest.raises(ConfigError, match=r"seed: is a value, not a table"):
        config_with(CFG, {"seed.x": 3})
    t = Truth([{"kind": "ripple", "onset_s": 10.0, "offset_s": 10.1, "peak_s": None}])
    assert t.shifted(0.0, 10.0)[0]["onset_s"] == 0.0
    assert Truth(t.records, file_based=False).shifted(5.0, 10.0)[0]["offset_s"] == 15.1
    # one-line errors from the command
    f = tmp_path / "x.npz"
    assert main(["replay", str(CFG), str(f), "--sweep", "detectors.ripple.threshold_sd",
                 "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: --sweep")
    assert main(["replay", str(CFG), str(f), "--sweep", "detectors.ripple.threshold_sd=3",
                 "--record", str(tmp_path / "r.xdf")]) == 2
    assert "--record cannot be used with --sweep" in capsys.readouterr().err
    assert main(["replay", str(CFG), str(f), "--json"]) == 2
    assert "--json goes with --sweep" in capsys.readouterr().err


def test_sweep_on_a_local_dask_pool_equals_the_in_order_sweep(night, capsys):
    """--workers 2 runs the settings on a real 2-process Dask pool: the same JSON rows."""
    sweep = ["replay", str(CFG), str(night["xdf"]), "--quiet", "--json", "--sweep",
             "detectors.ripple.threshold_sd=3,6"]
    capsys.readouterr()
    assert main(sweep) == 0
    in_order = capsys.readouterr().out
    assert main(sweep + ["--workers", "2"]) == 0
    assert capsys.readouterr().out == in_order
    # a pool never drives stimulators
    assert main(sweep + ["--workers", "2", "--stimulate"]) == 2
    assert "--stimulate cannot be used with --workers" in capsys.readouterr().err
