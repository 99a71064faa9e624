"""Recordings written before issue 21 call the forecast's P(below-median consolidation)
``p_decay``: the report still reads them, under the current name."""
from __future__ import annotations

import numpy as np
import pyxdf

from engramloop.analysis.report import load_recording, write_report
from engramloop.controller.recorder import Recorder
from engramloop.core.chunk import Chunk
from engramloop.recording.schema import upgrade_forecast

FS = 250.0
T0 = 100.0


def _old_file(path):
    n = int(60 * FS)
    t = T0 + np.arange(n) / FS
    x = np.zeros((n, 1))
    with Recorder(path, "name = \"old\"\nseed = 1\n[forecaster]\nenabled = true\n"
                  "gate_threshold = 0.5\n", flush_interval_s=0.5) as rec:
        rec.add_signal_stream(name="engramloop.raw", channels=("CA1",), rate_hz=FS)
        for i in range(0, n, 250):
            rec.write_chunk(Chunk(np.ascontiguousarray(x[i:i + 250]), t[i:i + 250].copy(),
                                  FS, ("CA1",), arrival_s=float(t[min(i + 249, n - 1)])))
        for s in range(10, 60, 10):
            # the record as Forecast.to_dict() wrote it before the rename
            rec.write_marker("forecasts", T0 + s, {
                "time_s": T0 + s, "horizon_s": 300.0, "p_decay": s / 100,
                "delta_strength": -0.01, "model_version": "old", "per_memory": []})


def test_a_recording_with_p_decay_reports_p_below_median(tmp_path):
    xdf = tmp_path / "old.xdf"
    _old_file(xdf)
    # the file really carries the old name (read back by pyxdf, not by us)
    streams, _ = pyxdf.load_xdf(str(xdf), synchronize_clocks=False,
                                dejitter_timestamps=False)
    fc = next(s for s in streams if s["info"]["name"][0] == "engramloop.forecasts")
    assert all('"p_decay"' in str(m[0]) for m in fc["time_series"])
    rec = load_recording(xdf)
    rows = rec.markers["forecasts"]
    assert [d["p_below_median"] for _, d in rows] == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert all("p_decay" not in d for _, d in rows)
    html = write_report(xdf, tmp_path / "report").index.read_text(encoding="utf-8")
    assert "p_below_median" in html and "0.100 to 0.500" in html


def test_upgrade_keeps_new_records_and_prefers_the_new_name():
    new = {"time_s": 1.0, "p_below_median": 0.2}
    assert upgrade_forecast(new) is new
    assert upgrade_forecast({"p_decay": 0.3, "p_below_median": 0.4}) == {"p_below_median": 0.4}
