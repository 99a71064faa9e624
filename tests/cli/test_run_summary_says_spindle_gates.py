"""A night whose spindle gates hold everything back is not a quiet night: the spindle
detector's alpha veto (``alpha_ratio_max``) and artefact hold (``artefact_sd`` /
``artefact_hold_s``) used to pass over candidates inside the C kernel without a trace, so
a replay with few or no spindle triggers ended with exit 0 and a summary like a night
without spindles.

Real EEG we did not record: the first 300 s of DREAMS excerpt 1 (C3-A1, 100 Hz, Devuyst et
al. 2011), whose wake/light-sleep alpha trips the veto, with five electrode pops added
(a 2 mV step decaying over 0.3 s, every 40 s from 60 s; the size of the pops in
tests/decoders/test_detect_spindle_real.py's sense: far beyond any spindle in the sigma
band) to trip the artefact hold. Written to EDF+ with pyedflib (physical range widened to
hold the pops) and replayed by a real ``engramloop`` process; the recording is read back
with pyxdf, and the live view's snapshots come from the same replay built in-process with
a status board.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from gate_runs import AUDITORY_SHAM, replay_watched
from gate_runs import cli as _cli
from shared_data import DATA, require_data  # noqa: E402

EXCERPT = DATA / "dreams_dev" / "excerpt1.edf"
LENGTH_S = 300.0
POPS_S = (60.0, 100.0, 140.0, 180.0, 220.0)
POP_UV, POP_TAU_S = 2000.0, 0.3

CONFIG = """
name = "spindle-gates"
[source]
kind = "file"
chunk_samples = 10
[detectors.ripple]
enabled = false
[detectors.so]
enabled = false
[detectors.spindle]
channels = ["C3-A1"]
[policy]
target = "spindle"
""" + AUDITORY_SHAM




@pytest.fixture(scope="module")
def popped(tmp_path_factory) -> Path:
    """Excerpt 1's first 300 s with the pops, as an EDF+ file, and the config."""
    pyedflib = pytest.importorskip("pyedflib")
    require_data(EXCERPT)
    with pyedflib.EdfReader(str(EXCERPT)) as r:
        fs = float(r.getSampleFrequency(0))
        head = r.getSignalHeader(0)
        x = r.readSignal(0)[:int(LENGTH_S * fs)]
    t = np.arange(x.size) / fs
    for t0 in POPS_S:
        after = t >= t0
        x[after] += POP_UV * np.exp(-(t[after] - t0) / POP_TAU_S)
    d = tmp_path_factory.mktemp("spindle_gates")
    with pyedflib.EdfWriter(str(d / "popped.edf"), 1, pyedflib.FILETYPE_EDFPLUS) as w:
        w.setSignalHeaders([{"label": head["label"], "dimension": head["dimension"],
                             "physical_min": -3000.0, "physical_max": 3000.0,
                             "digital_min": -32768, "digital_max": 32767,
                             "sample_frequency": fs}])
        w.writeSamples([x])
    (d / "sp.toml").write_text(CONFIG, encoding="utf-8")
    return d


def test_replay_counts_what_the_spindle_gates_passed_over(popped) -> None:
    p = _cli("replay", "sp.toml", "popped.edf", "--speed", "max", "--quiet", "--record",
             "r.xdf", cwd=popped)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    m_alpha = re.search(r"spindle: .*?(\d+) candidate spindles passed over by the alpha veto",
                        p.stdout)
    m_art = re.search(r"spindle: .*?(\d+) artefact stretches held", p.stdout)
    assert m_alpha and m_art, p.stdout
    alpha, art = int(m_alpha.group(1)), int(m_art.group(1))
    assert alpha >= 1, p.stdout
    # each pop is one stretch (its ringing stays inside the hold)
    assert art == len(POPS_S), p.stdout
    streams, _ = pyxdf.load_xdf(str(popped / "r.xdf"), synchronize_clocks=False,
                                dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    logs = [json.loads(v[0]) for v in by["engramloop.log"]["time_series"]]
    skips = [r for r in logs if r.get("kind") == "detector_skips"
             and r["detector"] == "spindle"]
    assert len(skips) == 1, skips
    # the gates held back some, not all: spindles still fired
    events = [json.loads(v[0]) for v in by["engramloop.events"]["time_series"]]
    assert any(e["kind"] == "spindle" for e in events), events
    # at the defaults nothing is taken back (confirm_duration_s is off): no count, no line
    assert skips[0]["counts"] == {"alpha_veto": alpha, "artefact_hold": art}, skips
    assert "taken back" not in p.stdout, p.stdout


def test_replay_counts_the_spindles_the_confirmation_took_back(popped) -> None:
    """With the optional confirmation on (``confirm_duration_s = 0.4``), the released
    spindles it took back are counted in the run summary and the recording's log, as many
    as the recording has spindle_rejected events shorter than 0.4 s."""
    cfg = CONFIG.replace('channels = ["C3-A1"]\n',
                         'channels = ["C3-A1"]\nconfirm_duration_s = 0.4\n')
    assert cfg != CONFIG
    (popped / "confirm.toml").write_text(cfg, encoding="utf-8")
    p = _cli("replay", "confirm.toml", "popped.edf", "--speed", "max", "--quiet", "--record",
             "c.xdf", cwd=popped)
    assert p.returncode == 0, p.stderr
    streams, _ = pyxdf.load_xdf(str(popped / "c.xdf"), synchronize_clocks=False,
                                dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    events = [json.loads(v[0]) for v in by["engramloop.events"]["time_series"]]
    short = [e for e in events if e["kind"] == "spindle_rejected"
             and e["detect_s"] - e["onset_s"] < 0.4]
    assert short, events
    logs = [json.loads(v[0]) for v in by["engramloop.log"]["time_series"]]
    skips = [r["counts"] for r in logs if r.get("kind") == "detector_skips"
             and r["detector"] == "spindle"]
    assert skips and skips[0]["unconfirmed"] == len(short), skips
    assert f"{len(short)} released spindles taken back" in p.stdout, p.stdout


def test_live_view_shows_the_spindle_gates(popped, monkeypatch) -> None:
    res, seen = replay_watched(popped / "sp.toml", popped / "popped.edf", monkeypatch)
    counts = res.detector_skips["spindle"]
    assert counts["artefact_hold"] == len(POPS_S) and counts["alpha_veto"] >= 1, counts
    lines = [line for st in seen for line in st.detector_states]
    assert any("spindle artefact hold on C3-A1" in line for line in lines), lines
    assert any("spindle alpha veto passing over candidates on C3-A1" in line
               for line in lines), lines
    # before the first pop and the first vetoed candidate nothing was shown
    assert seen[0].detector_states == ()
    # the hold is shown while it lasts, not for the rest of the night: a snapshot between
    # two pops (after the hold ended) shows no artefact hold
    assert not all("artefact hold" in " ".join(st.detector_states) for st in seen[-40:])
