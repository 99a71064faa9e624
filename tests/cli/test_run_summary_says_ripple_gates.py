"""A session whose ripple gates hold everything back is not a quiet session: the ripple
detector's theta gate (theta/delta power ratio above ``theta_delta_max``) used to pass
over candidates without a trace, so a replay of a running animal ended with exit 0 and a
summary like a session without sharp-wave ripples.

Real LFP we did not record: the 150 s of rat CA1 LFP in /work/shared/data
(``rat_ca1_theta_1000hz.npy``, neurodsp sample data from CRCNS hc-2, Mizuseki et al.
2012), theta-dominated running with no ripples, whose theta-nested gamma and spikes make
ripple-band candidates the gate must hold back. Written to EDF+ with pyedflib and replayed
by a real ``engramloop`` process; the recording is read back with pyxdf, and the live
view's snapshots come from the same replay built in-process with a status board. The
same replay with the gate off gives the reference: those candidates then fire.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from gate_runs import cli as _cli
from gate_runs import replay_watched
from shared_data import DATA, require_data  # noqa: E402

LFP = DATA / "rat_ca1_theta_1000hz.npy"
FS = 1000.0

CONFIG = """
name = "ripple-gates"
[source]
kind = "file"
chunk_samples = 10
[detectors.ripple]
channels = ["CA1"]
theta_gate = {gate}
[detectors.spindle]
enabled = false
[detectors.so]
enabled = false
[policy]
target = "ripple"
[policy.pulse]
modality = "ttl"
shape = "monophasic"
amplitude = 5.0
phase_width_s = 0.001
channel = 1
[safety]
arm_on_start = true
modalities = ["ttl"]
[stimulators]
kinds = ["sham"]
"""




@pytest.fixture(scope="module")
def running(tmp_path_factory) -> Path:
    """The rat LFP as an EDF+ file (ADC units, labelled uV), and both configs."""
    pyedflib = pytest.importorskip("pyedflib")
    require_data(LFP)
    x = np.load(LFP).astype(np.float64)
    d = tmp_path_factory.mktemp("ripple_gates")
    lim = float(np.ceil(np.abs(x).max())) + 1.0
    with pyedflib.EdfWriter(str(d / "run.edf"), 1, pyedflib.FILETYPE_EDFPLUS) as w:
        w.setSignalHeaders([{"label": "CA1", "dimension": "uV", "physical_min": -lim,
                             "physical_max": lim, "digital_min": -32768,
                             "digital_max": 32767, "sample_frequency": FS}])
        w.writeSamples([x])
    (d / "gate.toml").write_text(CONFIG.format(gate="true"), encoding="utf-8")
    (d / "open.toml").write_text(CONFIG.format(gate="false"), encoding="utf-8")
    return d


def _ripples(path: Path) -> tuple[list[dict], list[dict]]:
    streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False,
                                dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    logs = [json.loads(v[0]) for v in by["engramloop.log"]["time_series"]]
    events = [json.loads(v[0]) for v in by["engramloop.events"]["time_series"]]
    return logs, [e for e in events if e["kind"] == "ripple"]


def test_replay_counts_what_the_theta_gate_passed_over(running) -> None:
    p = _cli("replay", "gate.toml", "run.edf", "--speed", "max", "--quiet", "--record",
             "gate.xdf", cwd=running)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    m = re.search(r"ripple: (\d+) candidate ripples passed over by the theta gate", p.stdout)
    assert m, p.stdout
    printed = int(m.group(1))
    logs, ripples = _ripples(running / "gate.xdf")
    skips = [r for r in logs if r.get("kind") == "detector_skips"
             and r["detector"] == "ripple"]
    assert len(skips) == 1 and skips[0]["counts"] == {"theta_gate": printed}, skips
    # the reference: with the gate off, the candidates it held back fire
    q = _cli("replay", "open.toml", "run.edf", "--speed", "max", "--quiet", "--record",
             "open.xdf", cwd=running)
    assert q.returncode == 0, q.stderr
    logs_open, ripples_open = _ripples(running / "open.xdf")
    assert not [r for r in logs_open if r.get("kind") == "detector_skips"
                and r["detector"] == "ripple"]
    assert "candidate ripples passed over" not in q.stdout
    # the gate held back every ripple the open detector fired (each of those began as a
    # candidate), and no more than a few candidates besides: the open detector does not
    # fire on the candidates in an event's refractory time and re-arm hysteresis, which
    # the count cannot see when nothing fired
    assert not ripples
    assert len(ripples_open) >= 10
    assert len(ripples_open) <= printed <= 1.5 * len(ripples_open), (
        printed, len(ripples_open))


def test_live_view_shows_the_closed_theta_gate(running, monkeypatch) -> None:
    res, seen = replay_watched(running / "gate.toml", running / "run.edf", monkeypatch)
    n = res.detector_skips["ripple"]["theta_gate"]
    last = " ".join(seen[-1].detector_states)
    assert f"ripple theta gate closed: {n} candidates passed over in all" in last, last
    assert seen[0].detector_states == ()


def test_sweep_rows_count_what_the_theta_gate_passed_over(running) -> None:
    """``engramloop sweep`` over the gate on and off: each row says what the gate passed
    over (a column per detector and reason), so the quiet setting reads as held back."""
    import csv

    p = _cli("sweep", "gate.toml", "run.edf", "--set", "detectors.ripple.theta_gate=true,false",
             "--workers", 1, "--out", "sw.csv", "--quiet", cwd=running)
    assert p.returncode == 0, p.stdout + p.stderr
    with open(running / "sw.csv", encoding="utf-8") as f:
        rows = {r["detectors.ripple.theta_gate"]: r for r in csv.DictReader(f)
                if r["recording"] == "run.edf"}
    on, off = rows["true"], rows["false"]
    assert int(on["ripple.passed_over.theta_gate"]) >= 10, on
    assert off.get("ripple.passed_over.theta_gate") in ("", None), off
    assert int(off["ripple.detections"]) >= 10 and on.get("ripple.detections") in ("", None)
