"""Reports for whole nights: a 2-hour recording gets a density raster (events per 30 s
epoch, not tens of thousands of ticks), a spectrogram under the hypnogram, detections per
minute of each sleep stage (checked against a count made here), microvolts spelled one way,
and timing panels that say when they come from a simulated clock."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from engramloop.analysis.report import stage_densities, write_report
from engramloop.controller.recorder import Recorder
from engramloop.core.chunk import Chunk

FS = 100.0
HOURS = 2.0
#: (stage, start s, end s) from the start of the recording
STAGES = [("wake", 0, 600), ("N2", 600, 3600), ("N3", 3600, 6000), ("REM", 6000, 7200)]
#: spindles per minute of each stage in the synthetic night
RATE = {"wake": 0.0, "N2": 4.0, "N3": 1.0, "REM": 0.5}


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("night")
    path = d / "night.xdf"
    rng = np.random.default_rng(1)
    t0 = 1000.0
    n = int(HOURS * 3600 * FS)
    x = rng.normal(0, 20e-6, (n, 1))
    spindles = []
    for stage, a, b in STAGES:
        k = int(RATE[stage] * (b - a) / 60)
        spindles += sorted(rng.uniform(a + 1, b - 1, k).tolist())
    with Recorder(path, '[source]\nkind = "file"\n') as rec:
        for i in range(0, n, 3000):
            t = t0 + np.arange(i, min(i + 3000, n)) / FS
            rec.write_chunk(Chunk(np.ascontiguousarray(x[i:i + 3000]), t, FS, ("C3",),
                                  float(t[-1])))
        for stage, a, b in STAGES:
            rec.write_marker("truth", t0 + a, {"stage": stage, "onset_s": t0 + a,
                                               "offset_s": t0 + b})
        for s in spindles:
            rec.write_marker("events", t0 + s + 0.5, {
                "kind": "spindle", "channel": "C3", "onset_s": t0 + s,
                "detect_s": t0 + s + 0.5, "peak_s": t0 + s + 0.4, "offset_s": t0 + s + 1.0})
        # one pulse through a simulated clock: every stage of its path takes 0 s
        p = t0 + spindles[10] + 0.5
        for state in ("sent", "acked"):
            rec.write_marker("pulses", p, {
                "pulse_id": 1, "status": state, "condition": "stim", "target": "spindle",
                "detect_s": p, "intended_s": p, "sent_s": p, "ack_s": p,
                "device_edge_s": p, "fire_s": p, "delivered": True})
    return path, {"t0": t0, "spindles": spindles}


def test_a_whole_night_report(night, tmp_path):
    path, info = night
    res = write_report(path, tmp_path / "r")
    html = res.index.read_text(encoding="utf-8")
    names = {f.name for f in res.figures}
    assert {"raster.png", "spectrogram.png"} <= names
    assert "Events per 30 s epoch" in html            # not a barcode of 8000 ticks
    # detections per minute of each stage, counted here independently
    table = html[html.index("Detections per minute of each sleep stage"):]
    table = table[:table.index("</table>")]
    rows = {m.group(1): m.group(2) for m in re.finditer(
        r"<tr><td>(spindle|minutes in stage)</td>(.*?)</tr>", table)}
    assert "spindle" in rows, html
    cells = re.findall(r"<td>([^<]*)</td>", rows["spindle"])
    mins = re.findall(r"<td>([^<]*)</td>", rows["minutes in stage"])
    heads = re.findall(r"<th>([^<]*)</th>", table)[1:]
    assert sorted(heads) == sorted(st for st, _, _ in STAGES)
    span = {st: (a, b) for st, a, b in STAGES}
    want = [sum(span[st][0] <= s + 0.5 < span[st][1] for s in info["spindles"])
            / ((span[st][1] - span[st][0]) / 60) for st in heads]
    assert [float(c) for c in cells] == pytest.approx(want, abs=0.006)
    assert [float(c) for c in mins] == pytest.approx(
        [(span[st][1] - span[st][0]) / 60 for st in heads], abs=0.06)
    assert "Simulated clock" in html
    assert "uV" not in html


def test_stage_densities_by_hand():
    stages = [(0.0, 60.0, "N2"), (60.0, 180.0, "N3")]
    events = {"so": [{"detect_s": t} for t in (10.0, 70.0, 80.0, 90.0, 200.0)]}
    minutes, per = stage_densities(events, stages, 0.0, 180.0)
    assert minutes == {"N2": 1.0, "N3": 2.0}
    assert per["so"] == {"N2": 1.0, "N3": 1.5}
    assert not math.isnan(per["so"]["N3"])
