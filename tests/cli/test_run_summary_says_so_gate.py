"""A night whose slow-wave-sleep gate stays closed is not a quiet night (issue 20): the
slow-oscillation detector's gate (``sws_gate_ratio``) used to pass over every down state
outside slow-wave sleep without a trace, so a replay with no SO trigger ended with exit 0
and a summary like a night without slow waves.

Real EEG we did not record: 430 s of DREAMS excerpt 7 (C3-A1, 200 Hz, Devuyst et al.
2011) from 325 s, a stretch whose 0.5-2 Hz / 4-30 Hz power ratio stays below the default
2.5 (lighter sleep), written to EDF+ with pyedflib and replayed by a real ``engramloop``
process; the recording is read back with pyxdf, and the live view's snapshot comes from
the same replay built in-process with a status board.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import pyxdf
from gate_runs import AUDITORY_SHAM, replay_watched
from gate_runs import cli as _cli
from shared_data import DATA, require_data  # noqa: E402

EXCERPT = DATA / "dreams_dev" / "excerpt7.edf"
START_S, LENGTH_S = 325.0, 430.0

CONFIG = """
name = "so-gate"
[source]
kind = "file"
chunk_samples = 10
[detectors.ripple]
enabled = false
[detectors.spindle]
enabled = false
[detectors.so]
channels = ["C3-A1"]
[policy]
target = "so_upstate"
""" + AUDITORY_SHAM




@pytest.fixture(scope="module")
def stretch(tmp_path_factory) -> Path:
    """The light-sleep stretch of excerpt 7 as an EDF+ file, and the config."""
    pyedflib = pytest.importorskip("pyedflib")
    require_data(EXCERPT)
    with pyedflib.EdfReader(str(EXCERPT)) as r:
        fs = float(r.getSampleFrequency(0))
        head = r.getSignalHeader(0)
        x = r.readSignal(0)[int(START_S * fs):int((START_S + LENGTH_S) * fs)]
    d = tmp_path_factory.mktemp("so_gate")
    with pyedflib.EdfWriter(str(d / "light.edf"), 1, pyedflib.FILETYPE_EDFPLUS) as w:
        head = {k: head[k] for k in ("label", "dimension", "physical_min", "physical_max",
                                     "digital_min", "digital_max")}
        w.setSignalHeaders([{**head, "sample_frequency": fs}])
        w.writeSamples([x])
    (d / "so.toml").write_text(CONFIG, encoding="utf-8")
    return d


def test_replay_counts_what_the_closed_gate_passed_over(stretch) -> None:
    p = _cli("replay", "so.toml", "light.edf", "--speed", "max", "--quiet", "--record",
             "r.xdf", cwd=stretch)
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    # no trigger at all: before, this was the whole story
    assert re.search(r"\bsent 0\b", p.stdout), p.stdout
    m = re.search(r"so: (\d+) down states passed over outside slow-wave sleep", p.stdout)
    assert m, p.stdout
    printed = int(m.group(1))
    assert printed >= 3, p.stdout
    streams, _ = pyxdf.load_xdf(str(stretch / "r.xdf"), synchronize_clocks=False,
                                dejitter_timestamps=False)
    by = {s["info"]["name"][0]: s for s in streams}
    import json

    logs = [json.loads(v[0]) for v in by["engramloop.log"]["time_series"]]
    skips = [r for r in logs if r.get("kind") == "detector_skips" and r["detector"] == "so"]
    assert len(skips) == 1 and skips[0]["counts"]["sws_gate"] == printed, skips
    events = [json.loads(v[0]) for v in by["engramloop.events"]["time_series"]]
    kinds = [e["kind"] for e in events]
    # the gate's closing is an event in the recording, at a down state it passed over
    closed = [e for e in events if e["kind"] == "so_gate_closed"]
    assert closed and all(e["score"] < e["threshold"] == 2.5 for e in closed), closed
    opened = [e for e in events if e["kind"] == "so_gate_open"]
    # each reopening carries how many it passed over while closed; those still closed
    # at the end are in the summary's count only
    assert sum(int(e["amplitude"]) for e in opened) <= printed
    assert kinds.count("so") == 0 or all(
        not np.isfinite(e["predicted_s"]) for e in events if e["kind"] == "so"), events


def test_live_view_shows_the_closed_gate(stretch, monkeypatch) -> None:
    from engramloop.controller.dashboard import render_status

    res, seen = replay_watched(stretch / "so.toml", stretch / "light.edf", monkeypatch)
    n = res.detector_skips["so"]["sws_gate"]
    last = seen[-1]
    assert any(line.startswith("SO gate closed") for line in last.detector_states), last
    assert f"{n} down states passed over in all" in " ".join(last.detector_states)
    # earlier, before the first down state was passed over, nothing was shown
    assert seen[0].detector_states == ()
    import io

    from rich.console import Console

    buf = io.StringIO()
    Console(file=buf, width=200, color_system=None).print(render_status(last))
    assert "SO gate closed" in buf.getvalue()
